"""A shared STT service: the kit's Whisper model behind the OpenAI transcription API, on loopback.

`python -m kit stt-service` loads the model once (`kit.stt.load_whisper`: its workers and, with
`--max-batch N`, its CTranslate2 batching of waiting turns) and serves every client from it, the
way LiveKit Inference or a self-hosted Whisper server serves many agents: the STT placement axis
(in each job process, or one service for all). `--stt service` makes a run start one and every
design reach it through livekit-plugins-openai's STT (kit/stt/plugins.py, `ServiceSTT`); `--stt
service:URL` uses one already running.

API (what livekit-plugins-openai's `STT(base_url=…)` and `@livekit/agents-plugin-openai` send):

    POST /v1/audio/transcriptions   multipart/form-data: file (audio soundfile decodes: WAV, FLAC,
                                    OGG), model (required, any name: one model serves them all),
                                    language (English only: the model is English), prompt
                                    (accepted, not used: the in-process STT uses none either),
                                    temperature (0..1, accepted, not used), response_format
                                    (json | verbose_json | text)
    GET  /v1/audio/stream           a WebSocket: streaming STT with server-side endpointing, interim
                                    and final results (kit/stt/stream.py has the protocol)
    GET  /v1/stt, /stt              a WebSocket: LiveKit Inference's STT protocol, what an unmodified
                                    agent's `inference.STT(...)` speaks with LIVEKIT_INFERENCE_URL set
                                    to the service's base URL (kit/stt/inference_api.py); the same
                                    endpointing; tokens verified against LIVEKIT_API_KEY/SECRET
    GET  /v1/listen, /listen        a WebSocket: Deepgram's live protocol, what `deepgram.STT(base_url=
                                    <this base URL>/listen)` speaks (kit/stt/deepgram_api.py)
    GET  /health, GET /v1/models    readiness

Errors are OpenAI-shaped JSON, `{"error": {"message", "type", "param", "code"}}`: 400 for a bad
field, 413 for an upload over MAX_UPLOAD_BYTES, 415 for a body that is not multipart or a file that
is not audio, 404/405 for other paths and methods, 500 (`server_error`, no traceback) for anything
unexpected. Each response carries the service's own numbers for the request in headers
(`X-Kit-Queue-S`, `X-Kit-Infer-S`, `X-Kit-CPU-S`, `X-Kit-Batch`, `X-Kit-Audio-S`; `x-request-id`).

The per-request log (`--log`): kit/stt/request_log.py.

The service binds loopback only (127.0.0.1, ::1, localhost); any other host is refused.
`ServiceProcess` starts it as a child process for a run (its CPU and memory are then in the
sampled process tree) and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import ipaddress
import json
import logging
import os
import secrets
import signal
import time
from pathlib import Path

import numpy as np

from kit import config as config_mod
from kit.config import KitError, RunConfig
from kit.stt.request_log import RequestLog

# kit.stt (livekit-agents, seconds to import) is imported where it is used: `python -m kit` builds
# this command's parser without it

TRANSCRIPTIONS = "/v1/audio/transcriptions"
MAX_UPLOAD_BYTES = 25 * 2**20  # OpenAI's limit for this endpoint
MAX_FIELD_BYTES = 64 * 1024  # any form field but the file
DRAIN_LIMIT_BYTES = 4 * MAX_UPLOAD_BYTES  # an oversized body is read (and dropped) this far, so the client gets its 413
RESPONSE_FORMATS = ("json", "verbose_json", "text")
SAMPLE_RATES = (8_000, 192_000)  # accepted range of an upload's sample rate
LOOPBACK_NAMES = ("localhost",)

logger = logging.getLogger("kit.stt.service")


class ApiError(Exception):
    """A request the service refuses: an OpenAI-shaped error response."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def check_loopback(host: str) -> str:
    """The host to bind, if it is a loopback address (or "localhost"); anything else is refused."""
    if host in LOOPBACK_NAMES:
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise KitError(f"the STT service binds loopback only (127.0.0.1, ::1 or localhost), not {host!r}")


# --- the request ------------------------------------------------------------------------------------


async def _read_form(request) -> dict:
    """The multipart form: field name -> str, and "file" -> bytes. Refuses a body that is not
    multipart (415), a file over MAX_UPLOAD_BYTES (413), a field over MAX_FIELD_BYTES (400)."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, f"the body must be multipart/form-data, not {request.content_type or 'empty'!r}",
                       code="unsupported_media_type")  # fmt: skip
    if (request.content_length or 0) > MAX_UPLOAD_BYTES + MAX_FIELD_BYTES:
        raise ApiError(413, f"the upload is larger than the limit of {MAX_UPLOAD_BYTES // 2**20} MB", "file", "file_too_large")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as e:  # a malformed Content-Type boundary
        raise ApiError(400, f"malformed multipart body: {e}", code="invalid_multipart") from None
    form: dict = {}
    while True:
        try:
            part = await reader.next()
        except (ValueError, AssertionError) as e:
            raise ApiError(400, f"malformed multipart body: {e}", code="invalid_multipart") from None
        if part is None:
            return form
        if not hasattr(part, "read_chunk"):  # a nested multipart
            raise ApiError(400, "nested multipart bodies are not supported", code="invalid_multipart")
        name = part.name or ""
        limit = MAX_UPLOAD_BYTES if name == "file" else MAX_FIELD_BYTES
        data = bytearray()
        while chunk := await part.read_chunk(65536):
            data += chunk
            if len(data) > limit:
                if name == "file":
                    raise ApiError(413, f"the file is larger than the limit of {MAX_UPLOAD_BYTES // 2**20} MB", "file",
                                   "file_too_large")  # fmt: skip
                raise ApiError(400, f"the field {name!r} is longer than {MAX_FIELD_BYTES} bytes", name, "field_too_long")
        if name == "file":
            form["file"] = bytes(data)
        elif name:
            try:
                form[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, f"the field {name!r} is not UTF-8 text", name) from None


def _validate(form: dict) -> dict:
    """The request's options, or a 400 naming the field."""
    if "file" not in form:
        raise ApiError(400, "you must provide a 'file' (the audio) in the multipart form", "file", "missing_file")
    if not form.get("model", "").strip():
        raise ApiError(400, "you must provide a 'model' (any name: this service serves one Whisper model)", "model",
                       "missing_model")  # fmt: skip
    fmt = form.get("response_format", "json") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format {fmt!r} is not supported: use one of {', '.join(RESPONSE_FORMATS)}",
                       "response_format", "unsupported_response_format")  # fmt: skip
    language = form.get("language", "").strip()
    if language and language.lower().replace("_", "-").split("-")[0] not in ("en", "eng", "english"):
        raise ApiError(400, f"language {language!r} is not supported: the model transcribes English only (language=en)",
                       "language", "unsupported_language")  # fmt: skip
    temperature = form.get("temperature", "").strip()
    if temperature:
        try:
            value = float(temperature)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise ApiError(400, f"temperature must be a number between 0 and 1, got {temperature!r}", "temperature")
    if form.get("stream", "false").strip().lower() not in ("", "false", "0"):
        raise ApiError(400, "streaming responses are not supported (stream=false)", "stream", "unsupported_stream")
    return {"response_format": fmt, "model": form["model"].strip()}


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate from an uploaded file; 415 when it is not audio, 400 when
    it is audio the service cannot use (empty, non-finite, an absurd sample rate)."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # soundfile raises LibsndfileError/RuntimeError/TypeError on anything not audio
        raise ApiError(415, "the file is not audio this service can decode (WAV, FLAC or OGG)", "file",
                       "invalid_file_format") from None  # fmt: skip
    if not SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
        raise ApiError(400, f"sample rate {rate} Hz is outside {SAMPLE_RATES[0]}-{SAMPLE_RATES[1]} Hz", "file", "invalid_audio")
    if samples.shape[0] == 0:
        raise ApiError(400, "the audio is empty", "file", "invalid_audio")
    if not np.isfinite(samples).all():
        raise ApiError(400, "the audio holds non-finite samples", "file", "invalid_audio")
    return samples.mean(axis=1), rate


def prepare_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decoded, downmixed, resampled to Whisper's 16 kHz with the kit's resampler (as in-process)."""
    from kit.room.audio import resample
    from kit.stt import WHISPER_RATE

    mono, rate = decode_audio(data)
    return resample(mono, rate, WHISPER_RATE), rate


def _response(web, fmt: str, text: str, audio_s: float, headers: dict):
    usage = {"type": "duration", "seconds": round(audio_s, 3)}
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain", headers=headers)
    if fmt == "verbose_json":
        # no segment timestamps: the model runs without them, as in-process (none are made up)
        body = {"task": "transcribe", "language": "english", "duration": round(audio_s, 3), "text": text,
                "segments": [], "usage": usage}  # fmt: skip
    else:
        body = {"text": text, "usage": usage}
    return web.json_response(body, headers=headers)


def make_app(whisper, log: RequestLog, vad=None, calibration_delay: float | None = None,
             credentials: tuple[str, str] | None = None):
    """The aiohttp application over a loaded `kit.stt.Whisper` (None with `calibration_delay`: no model,
    every answer a fixed text exactly that many seconds after the turn); with a silero `vad`, the
    streaming endpoints too (kit/stt/stream.py, and LiveKit Inference's, kit/stt/inference_api.py,
    whose tokens must be signed with `credentials`, (key, secret); None: any token)."""
    from aiohttp import web

    from kit.stt import (
        SERVICE_HEADERS,
        SERVICE_PARTICIPANT_HEADER,
        STREAM_PATH,
        WHISPER_RATE,
        Transcript,
        calibration_text,
    )
    from kit.stt.deepgram_api import DEEPGRAM_PATHS, deepgram_handler
    from kit.stt.inference_api import INFERENCE_PATHS, JOB_HEADER, inference_handler, not_served
    from kit.stt.stream import stream_handler

    kit_log = web.RequestKey("kit_log", dict)  # the request's log row, filled in as it is handled
    # which client API each route speaks (the service log's `api`); health and models: none
    apis = {TRANSCRIPTIONS: "openai", STREAM_PATH: "kit-stream", **dict.fromkeys(INFERENCE_PATHS, "inference"),
            **dict.fromkeys(DEEPGRAM_PATHS, "deepgram")}  # fmt: skip

    async def transcriptions(request):
        row = request[kit_log]
        form = await _read_form(request)
        opts = _validate(form)
        row.update(response_format=opts["response_format"], model=opts["model"], bytes=len(form["file"]))
        audio, rate = await asyncio.to_thread(prepare_audio, form["file"])
        audio_s = len(audio) / WHISPER_RATE
        row.update(sample_rate=rate, audio_s=audio_s)
        if whisper is None:  # calibration: no model
            await asyncio.sleep(calibration_delay)
            result = Transcript(calibration_text(audio_s), 0.0, calibration_delay, 0.0, 1)
        else:
            result = await whisper.transcribe_async(audio)
        row.update(queue_s=result.queue_s, infer_s=result.infer_s, cpu_s=result.cpu_s, batch=result.batch)
        headers = {
            SERVICE_HEADERS["queue_s"]: f"{result.queue_s:.6f}", SERVICE_HEADERS["infer_s"]: f"{result.infer_s:.6f}",
            SERVICE_HEADERS["cpu_s"]: f"{result.cpu_s:.6f}", SERVICE_HEADERS["batch"]: str(result.batch),
            SERVICE_HEADERS["audio_s"]: f"{audio_s:.6f}",
        }  # fmt: skip
        return _response(web, opts["response_format"], result.text, audio_s, headers)

    async def health(request):
        return web.json_response({"status": "ok"})

    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "whisper-1", "object": "model", "owned_by": "kit"}]})

    @web.middleware
    async def errors(request, handler):
        """Every answer is an OpenAI-shaped response; requests to the transcription route are logged, and
        so is every refused request of an agent's STT client or of a service the stand-in does not serve."""
        arrival, wall = time.monotonic(), time.time()
        rid = "req_" + secrets.token_hex(8)
        row = request[kit_log] = {"mono": arrival, "wall": wall, "request_id": rid, "api": apis.get(request.path),
                                  "participant": request.headers.get(SERVICE_PARTICIPANT_HEADER),
                                  "job": request.headers.get(JOB_HEADER)}  # fmt: skip
        try:
            response = await handler(request)
        except ApiError as e:
            response = _error(web, e)
        except web.HTTPException as e:  # the router's 404 and 405, aiohttp's own 413
            asked = await not_served(request) if e.status == 404 else None
            response = _error(web, ApiError(404, asked[0], code="not_served") if asked else _http_error(e, request))
            if "Allow" in e.headers:
                response.headers["Allow"] = e.headers["Allow"]
            if asked:
                row.update(api="inference", model=asked[1])
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("request %s failed", rid)
            response = _error(web, ApiError(500, "the server had an error processing the request", kind="server_error"))
        if request.path == TRANSCRIPTIONS or (response.status >= 400 and row["api"]):
            if request.path == TRANSCRIPTIONS and (request.method != "POST" or response.status >= 400):
                await _drain(request)
            error = row.get("error")
            if response.status >= 400 and response.content_type == "application/json":
                error = refusal_message(json.loads(response.body))
            log.write({**row, "status": response.status, "error": error, "handle_s": time.monotonic() - arrival})
        if not response.prepared:  # a WebSocket (the streaming endpoint) has sent its headers already
            response.headers["x-request-id"] = rid
        return response

    app = web.Application(middlewares=[errors], client_max_size=MAX_UPLOAD_BYTES + MAX_FIELD_BYTES)
    app.router.add_post(TRANSCRIPTIONS, transcriptions)
    if vad is not None:
        app.router.add_get(STREAM_PATH, stream_handler(vad, whisper, calibration_delay, log, SERVICE_PARTICIPANT_HEADER))
        inference = inference_handler(vad, whisper, calibration_delay, log, credentials)
        for path in INFERENCE_PATHS:
            app.router.add_get(path, inference)
        deepgram = deepgram_handler(vad, whisper, calibration_delay, log)
        for path in DEEPGRAM_PATHS:
            app.router.add_get(path, deepgram)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    return app


def refusal_message(body: dict) -> str | None:
    """The message of an error body, OpenAI-shaped or Deepgram-shaped (`err_msg`)."""
    error = body.get("error")
    if isinstance(error, dict):
        return error.get("message")
    return body.get("err_msg") or (str(error) if error else None)


def _error(web, e: ApiError):
    return web.json_response(e.body(), status=e.status)


def _http_error(e, request) -> ApiError:
    if e.status == 404:
        return ApiError(404, f"no such route: {request.method} {request.path}", code="not_found")
    if e.status == 405:  # (its Allow header is kept: see the middleware)
        return ApiError(405, f"method {request.method} is not allowed on {request.path}", code="method_not_allowed")
    if e.status == 413:
        return ApiError(413, f"the upload is larger than the limit of {MAX_UPLOAD_BYTES // 2**20} MB", "file", "file_too_large")
    return ApiError(e.status, e.reason or "bad request")


async def _drain(request) -> None:
    """Read what is left of a refused request's body (up to DRAIN_LIMIT_BYTES), so that a client
    still sending it reads the error instead of a reset connection."""
    read = 0
    with contextlib.suppress(Exception):
        while read < DRAIN_LIMIT_BYTES and (chunk := await request.content.readany()):
            read += len(chunk)


# --- the process ----------------------------------------------------------------------------------


def serve(config: RunConfig, *, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None,
          parent_pid: int | None = None, calibration_delay: float | None = None) -> int:  # fmt: skip
    """Load the model (none with `calibration_delay`) and the VAD of the streaming endpoint, bind,
    print the base URL (one line on stdout), serve until SIGTERM/SIGINT (or until `parent_pid` is
    gone: a service started for a run never outlives it)."""
    host = check_loopback(host)
    if not 0 <= port <= 65535:
        raise KitError(f"--port must be between 0 and 65535, got {port}")
    from kit.architectures.pipeline import load_vad
    from kit.stt import load_whisper

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    whisper = load_whisper(config) if calibration_delay is None else None
    vad = load_vad(config.vad)  # the streaming endpoint finds turns as the VAD-gated designs do
    log = RequestLog(log_path)
    try:
        from kit.stt.plugins import inference_credentials

        app = make_app(whisper, log, vad, calibration_delay, inference_credentials())
        asyncio.run(_serve(app, host, port, parent_pid))
    finally:
        log.close()
    return 0


async def _serve(app, host: str, port: int, parent_pid: int | None) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise KitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"http://{shown}:{bound_port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if parent_pid is not None and os.getppid() != parent_pid:
                break  # the run that started it is gone
    finally:
        await runner.cleanup()


def add_arguments(p) -> None:
    """The `python -m kit stt-service` options."""
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default: %(default)s; nothing else is accepted)")
    p.add_argument("--port", type=int, default=0, help="port (default: 0, a free one; the URL is printed)")
    p.add_argument("--log", type=Path, default=None, metavar="PATH", help="per-request JSONL log (default: none)")
    config_mod.add_model_arguments(p)
    config_mod.add_vad_arguments(p)  # the streaming endpoint's turns
    p.add_argument("--calibration-delay", type=float, default=None, metavar="S",
                   help="load no model: answer every turn with a fixed text exactly S after it ends (streaming: after "
                        "its endpoint); what --stt stream-delay:S starts")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)


def main(args) -> int:
    """`python -m kit stt-service`, from its parsed arguments."""
    if args.calibration_delay is not None and not 0 <= args.calibration_delay < float("inf"):
        raise KitError(f"--calibration-delay must be a number of seconds >= 0, got {args.calibration_delay}")
    return serve(service_config(args), host=args.host, port=args.port, log_path=args.log, parent_pid=args.parent_pid,
                 calibration_delay=args.calibration_delay)  # fmt: skip


def service_config(args) -> RunConfig:
    """The model settings of `python -m kit stt-service` (validated as any run's: kit.config)."""
    return RunConfig.from_args(args)


