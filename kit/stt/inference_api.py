"""LiveKit Inference's STT WebSocket, served over the kit's Whisper: the stand-in an unmodified agent's
`inference.STT("deepgram/nova-3")` (or `AgentSession(stt="deepgram/nova-3")`) reaches when
LIVEKIT_INFERENCE_URL points at the kit's STT service.

The protocol is the client's (livekit-agents 1.8.9 `livekit/agents/inference/stt.py`, the same in
@livekit/agents 1.9.0 `dist/inference/stt.js`):

    GET {base}/stt?model=<model>                 a WebSocket; `Authorization: Bearer <JWT>` signed with
                                                 the API key and secret (claims: iss = key, exp,
                                                 inference.perform); X-LiveKit-Room-ID/-Job-ID/... in a job
    client -> {"type": "session.create", "settings": {"sample_rate": "16000", "encoding": "pcm_s16le",
                "language"?, "extra"}, "model"?}           first, then at once:
              {"type": "input_audio", "audio": <base64 PCM, 50 ms>}  the participant's audio, continuously
              {"type": "session.finalize"}                the turn under way is over (end of input, or
                                                          an openai/* model's client-side endpoint)
              {"type": "session.update", ...}             accepted, ignored (one model serves every name)
              {"type": "session.close"}                   the end
    server -> session.created, start_of_speech, interim_transcript, final_transcript (transcript,
              start, duration: s since the stream's first sample; confidence, language, words,
              request_id and session_id), session.finalized, session.closed, error

The turns are found by the service's one endpointing engine (`kit.stt.stream.StreamTurns`: silero
with the kit's VAD settings), as for the kit's own streaming endpoint: the client marks no turn
ends for deepgram/* models. One `final_transcript` per turn (the client ends the user's turn at
each). Any model name is accepted, recorded in the service log, and served by the one Whisper.

A token that does not verify against the run's key and secret is refused before the upgrade with
401, as the real gateway refuses it (the client gives up at once: a 4xx is not retried). A request
for anything LiveKit Inference serves but STT (TTS, an LLM, end-of-turn detection...: NOT_SERVED) is
a 404 whose message names what was asked for (`not_served`); the service logs every refusal.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets

from kit.stt.stream import MAX_MESSAGE_BYTES, STREAM_RATES, StreamTurns, send_json

INFERENCE_PATHS = ("/v1/stt", "/stt")  # the client appends /stt to LIVEKIT_INFERENCE_URL, which may end in /v1
ENCODING = "pcm_s16le"  # the only encoding the client sends
CREATE_TIMEOUT_S = 10.0  # the client sends session.create as soon as it is connected
JOB_HEADER = "X-LiveKit-Job-ID"  # sent by the client inside a job: which job a stream belongs to


MAX_BODY_BYTES = 64 * 1024  # read of a refused JSON body, for the model it names


class InferenceError(Exception):
    """A stream the stand-in refuses, with the error code it sends."""

    def __init__(self, message: str, code: int = 4000) -> None:
        super().__init__(message)
        self.code = code


def verify_token(authorization: str | None, api_key: str, api_secret: str) -> str | None:
    """None if `Authorization: Bearer <JWT>` is signed with this key and secret, unexpired, and grants
    inference; otherwise why not (the 401's message)."""
    import jwt

    if not authorization or not authorization.startswith("Bearer "):
        return "no bearer token: LiveKit Inference needs Authorization: Bearer <JWT>"
    try:
        claims = jwt.decode(authorization[len("Bearer "):], api_secret, algorithms=["HS256"], issuer=api_key,
                            options={"require": ["exp"]})  # fmt: skip
    except jwt.PyJWTError as e:
        return f"invalid token ({type(e).__name__}: {e}): is LIVEKIT_API_KEY/SECRET the run's?"
    if not (claims.get("inference") or {}).get("perform"):
        return "the token does not grant inference (inference.perform)"
    return None


def session_options(message: dict) -> tuple[int, str | None]:
    """(sample_rate, model) from a session.create message; InferenceError if it is not one."""
    if message.get("type") != "session.create":
        raise InferenceError(f"the first message must be session.create, got {str(message.get('type'))[:40]!r}")
    settings = message.get("settings") or {}
    encoding = settings.get("encoding", ENCODING)
    if encoding != ENCODING:
        raise InferenceError(f"encoding must be {ENCODING}, got {str(encoding)[:40]!r}")
    try:
        rate = int(settings.get("sample_rate", 16000))
    except (TypeError, ValueError):
        raise InferenceError(f"sample_rate must be an integer, got {settings.get('sample_rate')!r}") from None
    if not STREAM_RATES[0] <= rate <= STREAM_RATES[1]:
        raise InferenceError(f"sample_rate must be between {STREAM_RATES[0]} and {STREAM_RATES[1]}, got {rate}")
    return rate, message.get("model")


class InferenceWire:
    """The engine's messages (kit/stt/stream.py) as LiveKit Inference messages, out on one WebSocket."""

    def __init__(self, ws, rate: int, language: str) -> None:
        self.ws, self.rate, self.language = ws, rate, language
        self.session_id = "inference_" + secrets.token_hex(6)

    async def send(self, message: dict) -> None:
        await send_json(self.ws, message)

    async def engine(self, message: dict) -> None:
        """One message of the engine (SpeechStarted, Results, UtteranceEnd, Metadata)."""
        kind = message["type"]
        if kind == "SpeechStarted":
            await self.send({"type": "start_of_speech", "session_id": self.session_id})
        elif kind == "Results" and message["text"]:
            await self.send(self.transcript("final_transcript" if message["is_final"] else "interim_transcript", message))

    def transcript(self, kind: str, result: dict) -> dict:
        start = result["start_sample"] / self.rate
        return {"type": kind, "transcript": result["text"], "start": start,
                "duration": (result["end_sample"] - result["start_sample"]) / self.rate, "confidence": 1.0,
                "language": self.language, "words": [], "request_id": self.session_id,
                "session_id": self.session_id}  # fmt: skip


def inference_handler(vad, whisper, delay: float | None, log, credentials: tuple[str, str] | None):
    """The aiohttp handler of INFERENCE_PATHS: one StreamTurns per WebSocket. `credentials`: the
    (key, secret) tokens must be signed with; None accepts any token (a service without a run's key)."""
    from aiohttp import WSMsgType, web

    async def handle(request):
        if credentials is not None:
            problem = verify_token(request.headers.get("Authorization"), *credentials)
            if problem:
                return web.json_response({"error": {"message": problem, "code": 401}}, status=401)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        try:
            first = await ws.receive(timeout=CREATE_TIMEOUT_S)
            message = json.loads(first.data) if first.type == WSMsgType.TEXT else {}
            rate, model = session_options(message if isinstance(message, dict) else {})
        except (asyncio.TimeoutError, json.JSONDecodeError, InferenceError) as e:
            text = str(e) if isinstance(e, InferenceError) else "the first message must be session.create (JSON)"
            await ws.send_str(json.dumps({"type": "error", "message": text, "code": getattr(e, "code", 4000)}))
            await ws.close(code=1008)
            return ws
        settings = message.get("settings") or {}
        wire = InferenceWire(ws, rate, str(settings.get("language") or "en"))
        await wire.send({"type": "session.created", "session_id": wire.session_id})
        turns = StreamTurns(vad, whisper, delay=delay, sample_rate=rate, interim=True, send=wire.engine,
                            log=log.write, participant=request.headers.get("X-Kit-Participant"),
                            model=model or request.query.get("model"), api="inference",
                            job=request.headers.get(JOB_HEADER))  # fmt: skip
        endpointing = asyncio.create_task(turns.run())
        problem = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    problem = "send JSON text messages (input_audio carries base64 audio)"
                    break
                try:
                    message = json.loads(msg.data)
                    kind = message.get("type")
                    if kind == "input_audio":
                        pcm = base64.b64decode(message["audio"], validate=True)
                        if len(pcm) % 2:
                            raise ValueError("odd byte count")
                        turns.push(pcm)
                    elif kind == "session.finalize":
                        await turns.flush()
                        await wire.send({"type": "session.finalized", "session_id": wire.session_id})
                    elif kind == "session.close":
                        break
                    elif kind != "session.update":
                        problem = f"unknown message type {str(kind)[:40]!r}"
                        break
                except (json.JSONDecodeError, AttributeError, KeyError, ValueError, binascii.Error) as e:
                    problem = f"a bad message ({type(e).__name__}): input_audio needs base64 16-bit PCM in 'audio'"
                    break
            turns.end_input()
            await endpointing
            await turns.finish()
            if problem:
                await wire.send({"type": "error", "message": problem, "code": 4000})
            else:
                await wire.send({"type": "session.closed", "session_id": wire.session_id})
        finally:  # a client gone without a goodbye still had its audio counted
            turns.log_stream_end()
            endpointing.cancel()
            await turns.aclose()
            await ws.close(code=1008 if problem else 1000)
        return ws

    return handle


# What an agent may ask LiveKit Inference (or an OpenAI-compatible base URL) for besides STT, by the
# path its client requests under the base URL (livekit-agents 1.8.9, livekit/agents/inference/).
NOT_SERVED = {
    "tts": "text-to-speech (inference.TTS)", "eot": "end-of-turn detection (the inference turn detector)",
    "bargein": "interruption detection", "decisions": "a decision model", "avatar": "an avatar",
    "chat/completions": "an LLM (inference.LLM, or an OpenAI LLM through OPENAI_BASE_URL)",
    "responses": "an LLM (the OpenAI Responses API)", "realtime": "a realtime model",
    "audio/speech": "text-to-speech (OpenAI TTS through OPENAI_BASE_URL)",
}  # fmt: skip


async def not_served(request) -> tuple[str, str | None] | None:
    """A request for a model the stand-in does not serve (NOT_SERVED): the message of the 404 the service
    answers (a 4xx, which livekit's clients do not retry), naming what was asked for, and the model the
    client named (query string, or a JSON body's "model"); None for any other unknown path."""
    tail = request.path.removeprefix("/v1").strip("/")
    name = next((n for n in NOT_SERVED if tail == n or tail.startswith(n + "/")), None)
    if name is None:
        return None
    model = request.query.get("model")
    if model is None and request.content_type == "application/json":
        with contextlib.suppress(Exception):
            body = json.loads(await request.content.read(MAX_BODY_BYTES))
            model = body.get("model") if isinstance(body, dict) else None
    what = NOT_SERVED[name] + (f", model {str(model)[:60]!r}" if model else "")
    return (f"the agent asked for {what} ({request.method} {request.path}): the kit's stand-in serves speech-to-text "
            f"only; give this agent a real endpoint for it, or measure it without", str(model)[:60] if model else None)
