"""The kit's STTs as livekit-agents STT plugins, one instance per participant: `FasterWhisperSTT`
(non-streaming, on a whole VAD turn; livekit wraps it in a `StreamAdapter` with the VAD), the
calibration `DelaySTT`, `ServiceSTT` (livekit-plugins-openai against the STT service) and
`StreamingSTT` (the service's WebSocket endpoint); `make_stt` picks the one an SttSpec names."""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import json
import logging
import os
import time
from dataclasses import dataclass

import aiohttp
import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, inference, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from kit.config import KitError, RunConfig
from kit.room.audio import resample, to_float32
from kit.run.events import EventLog
from kit.stt.engine import Transcript, load_whisper
from kit.stt.model import WHISPER_RATE


@dataclass(frozen=True)
class Recognition:
    """One STT call, in seconds since t0 (speech_end is when the VAD handed the turn over)."""

    speech_start: float
    speech_end: float
    done: float
    audio_s: float
    cpu_s: float
    infer_s: float  # wall time of the inference alone (no queueing)
    text: str


class FasterWhisperSTT(stt.STT):
    """faster-whisper behind livekit-agents' STT interface, for one participant."""

    def __init__(self, config: RunConfig, *, participant: str, log: EventLog) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self.participant = participant
        self.log = log
        self.last: Recognition | None = None
        self._called = 0.0  # time.monotonic() of the current recognize call
        self._whisper = load_whisper(config) if type(self) is FasterWhisperSTT else None

    @property
    def model(self) -> str:
        return "faster-whisper"

    @property
    def provider(self) -> str:
        return "kit"

    async def _transcribe(self, audio: np.ndarray) -> Transcript:
        return await self._whisper.transcribe_async(audio)

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        speech_end = self.log.now()
        self._called = time.monotonic()
        frame = rtc.combine_audio_frames(buffer) if isinstance(buffer, list) else buffer
        pcm = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels).mean(axis=1)
        audio = resample(to_float32(pcm), frame.sample_rate, WHISPER_RATE)
        result = await self._transcribe(audio)
        text, cpu_s, infer_s = result.text, result.cpu_s, result.infer_s
        done = self.log.now()
        audio_s = len(audio) / WHISPER_RATE
        self.last = Recognition(speech_end - audio_s, speech_end, done, audio_s, cpu_s, infer_s, text)
        # infer_s is the model's own time: waiting behind other speakers' turns is the design's cost,
        # seen in the latency, not part of the floor
        self.log.emit(
            "recognized", t=done, participant=self.participant, text=text, speech_start=speech_end - audio_s,
            speech_end=speech_end, stt_cpu_s=cpu_s, infer_s=infer_s, audio_s=audio_s, queue_s=result.queue_s,
            batch=result.batch,
        )  # fmt: skip
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language="en", text=text)],
        )


def calibration_text(audio_s: float) -> str:
    """What every calibration STT answers (delay:S, stream-delay:S, the service's --calibration-delay)."""
    return f"calibration turn of {audio_s:.1f} seconds"


class DelaySTT(FasterWhisperSTT):
    """Calibration STT: answers after exactly `delay` seconds, using no model."""

    def __init__(self, config: RunConfig, *, participant: str, log: EventLog, delay: float) -> None:
        super().__init__(config, participant=participant, log=log)
        self.delay = delay

    async def _transcribe(self, audio: np.ndarray) -> Transcript:
        # `delay` after the call, not after the audio's preparation (a few ms for a long turn, more on a busy loop)
        await asyncio.sleep(max(0.0, self._called + self.delay - time.monotonic()))
        return Transcript(calibration_text(len(audio) / WHISPER_RATE), 0.0, self.delay, 0.0, 1)


# --- the STT as a shared service (kit/stt/service.py, or any OpenAI-compatible transcription server) ---

SERVICE_PARTICIPANT_HEADER = "X-Kit-Participant"  # who a request is for: the service logs it
# the service's own numbers for one request, in its response headers
SERVICE_HEADERS = {"queue_s": "X-Kit-Queue-S", "infer_s": "X-Kit-Infer-S", "cpu_s": "X-Kit-CPU-S",
                   "batch": "X-Kit-Batch", "audio_s": "X-Kit-Audio-S"}  # fmt: skip
SERVICE_MODEL = "whisper-1"  # what the client asks for (the kit's service serves its one model under any name)
SERVICE_API_KEY = "kit-local"  # the kit's service checks none; the OpenAI client insists on one
_service_reply: contextvars.ContextVar[dict | None] = contextvars.ContextVar("kit_service_reply", default=None)


def load_service_client() -> None:
    """Import livekit-plugins-openai (a livekit plugin registers itself, on the main thread only):
    job processes do it in their prewarm, not on the event loop while the room plays."""
    import livekit.plugins.openai  # noqa: F401


async def _keep_service_numbers(response) -> None:
    """httpx response hook: the service's numbers for this request, for the recognize call awaiting it
    (the hook runs in that call's task, so the context variable is that call's)."""
    reply = _service_reply.get()
    if reply is not None:
        reply.update({k: response.headers.get(h) for k, h in SERVICE_HEADERS.items()})


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ServiceSTT(FasterWhisperSTT):
    """The STT placed in a shared service, for one participant: livekit-plugins-openai's STT (the
    code a user would ship: `openai.STT(base_url=URL, model="whisper-1")`) against the service's
    OpenAI transcription API. The plugin sends each VAD turn as a WAV (the room's rate) and the
    service resamples it with the kit's resampler, as in-process. The `recognized` event carries the
    service's own numbers for the request (response headers; None from a server that sends none)."""

    def __init__(self, config: RunConfig, *, participant: str, log: EventLog, url: str) -> None:
        super().__init__(config, participant=participant, log=log)
        import httpx
        import openai
        from livekit.plugins import openai as lk_openai

        self.url = url
        http = httpx.AsyncClient(  # the plugin's own client settings, plus the hook that keeps the service's numbers
            timeout=httpx.Timeout(connect=15.0, read=30.0, write=5.0, pool=5.0), follow_redirects=True,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=50, keepalive_expiry=120),
            event_hooks={"response": [_keep_service_numbers]},
        )  # fmt: skip
        client = openai.AsyncClient(api_key=SERVICE_API_KEY, base_url=url, max_retries=0, http_client=http,
                                    default_headers={SERVICE_PARTICIPANT_HEADER: participant})  # fmt: skip
        self._client = client  # given to the plugin, so ours to close
        self.plugin = lk_openai.STT(model=SERVICE_MODEL, language="en", client=client)

    @property
    def model(self) -> str:
        return SERVICE_MODEL

    @property
    def provider(self) -> str:
        return self.url

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        speech_end = self.log.now()
        frame = rtc.combine_audio_frames(buffer) if isinstance(buffer, list) else buffer
        audio_s = frame.samples_per_channel / frame.sample_rate
        reply: dict = {}
        token = _service_reply.set(reply)
        try:  # retries are this STT's (the caller's conn_options), not the plugin's as well
            event = await self.plugin.recognize(
                frame, language=language, conn_options=APIConnectOptions(max_retry=0, timeout=conn_options.timeout)
            )
        finally:
            _service_reply.reset(token)
        done = self.log.now()
        text = event.alternatives[0].text if event.alternatives else ""
        cpu_s, infer_s, queue_s = (_number(reply.get(k)) for k in ("cpu_s", "infer_s", "queue_s"))
        batch = _number(reply.get("batch"))
        self.last = Recognition(speech_end - audio_s, speech_end, done, audio_s, cpu_s, infer_s, text)  # type: ignore[arg-type]
        self.log.emit(
            "recognized", t=done, participant=self.participant, text=text, speech_start=speech_end - audio_s,
            speech_end=speech_end, stt_cpu_s=cpu_s, infer_s=infer_s, audio_s=audio_s, queue_s=queue_s,
            batch=int(batch) if batch is not None else None,
        )  # fmt: skip
        return event

    async def aclose(self) -> None:
        await self.plugin.aclose()
        await self._client.close()
        await super().aclose()


# --- streaming: the STT service's WebSocket endpoint (kit/stt/stream.py) ---------------------------

STREAM_PATH = "/v1/audio/stream"  # the service's streaming endpoint (a WebSocket)
STREAM_RATE = 16_000  # what the client streams (the base class resamples the room's 48 kHz to it)


class StreamingSTT(stt.STT):
    """A streaming STT for one participant (`--stt stream`): every frame it is given goes to the STT
    service's streaming endpoint, which finds the turns itself (server-side endpointing) and sends
    interims while a turn grows and a final at its endpoint, as the common cloud streaming STTs do.
    Used natively by AgentSession (no StreamAdapter) and directly by participant_entrypoint.

    Counts the audio it sends (an `stt_sent` event as each stream closes: what a per-minute
    streaming bill counts), logs each interim (`interim` event) and, for each final, a
    `recognized` event with the service's numbers for the turn (its CPU includes its interims)."""

    def __init__(self, config: RunConfig, *, participant: str, log: EventLog, url: str) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True, offline_recognize=False))
        self.participant, self.log, self.url = participant, log, url
        self.last: Recognition | None = None

    @property
    def model(self) -> str:
        return SERVICE_MODEL

    @property
    def provider(self) -> str:
        return self.url

    def stream_url(self) -> str:
        base = self.url.rstrip("/").removesuffix("/v1")
        return base.replace("http", "ws", 1) + STREAM_PATH + f"?sample_rate={STREAM_RATE}&interim_results=true"

    async def _recognize_impl(self, buffer, *, language=NOT_GIVEN, conn_options=DEFAULT_API_CONNECT_OPTIONS):
        raise NotImplementedError("the kit's streaming STT only streams (stream())")

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> ServiceSpeechStream:  # fmt: skip
        return ServiceSpeechStream(self, conn_options)


class ServiceSpeechStream(stt.RecognizeStream):
    """One stream of a StreamingSTT: frames out over the WebSocket, the service's messages back as
    SpeechEvents. Sample positions in the messages become the times their samples were sent."""

    def __init__(self, owner: StreamingSTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=owner, conn_options=conn_options, sample_rate=STREAM_RATE)
        self.owner = owner
        self._sent_ends: list[int] = []  # cumulative samples after each chunk sent
        self._sent_at: list[float] = []  # the log time each chunk was sent

    def time_of(self, sample: int) -> float:
        """When the chunk holding this sample of the stream was sent (seconds since t0)."""
        i = min(bisect.bisect_left(self._sent_ends, sample), len(self._sent_at) - 1)
        return self._sent_at[i] if i >= 0 else self.owner.log.now()

    async def _run(self) -> None:
        from livekit.agents import APIConnectionError

        owner = self.owner
        sent = 0
        try:
            async with aiohttp.ClientSession() as http:
                try:
                    ws = await http.ws_connect(owner.stream_url(), headers={SERVICE_PARTICIPANT_HEADER: owner.participant})
                except aiohttp.ClientError as e:
                    raise APIConnectionError(f"cannot open the STT stream at {owner.stream_url()}: {e}") from e

                async def send() -> None:
                    nonlocal sent
                    async for item in self._input_ch:
                        if isinstance(item, self._FlushSentinel):
                            continue  # the service finds the turns itself
                        data = item.data.tobytes()
                        sent += item.samples_per_channel
                        self._sent_ends.append(sent)
                        self._sent_at.append(owner.log.now())
                        await ws.send_bytes(data)
                    await ws.send_str('{"type": "CloseStream"}')

                sender = asyncio.create_task(send(), name=f"stt-send-{owner.participant}")
                try:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._on_message(json.loads(msg.data))
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
                    await sender
                finally:
                    sender.cancel()
        finally:
            owner.log.emit("stt_sent", participant=owner.participant, audio_s=sent / STREAM_RATE)

    def _on_message(self, m: dict) -> None:
        owner, log = self.owner, self.owner.log
        kind = m.get("type")
        if kind == "SpeechStarted":
            self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH))
        elif kind == "UtteranceEnd":
            self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH))
        elif kind == "Results" and not m["is_final"]:
            log.emit("interim", participant=owner.participant, text=m["text"], speech_start=self.time_of(m["start_sample"]))
            self._event_ch.send_nowait(stt.SpeechEvent(
                type=stt.SpeechEventType.INTERIM_TRANSCRIPT, alternatives=[stt.SpeechData(language="en", text=m["text"])]))
        elif kind == "Results":
            done = log.now()
            start, end = self.time_of(m["start_sample"]), self.time_of(m["endpoint_sample"])
            owner.last = Recognition(start, end, done, m["audio_s"], m["cpu_s"], m["infer_s"], m["text"])
            log.emit("recognized", t=done, participant=owner.participant, text=m["text"], speech_start=start,
                     speech_end=end, stt_cpu_s=m["cpu_s"], infer_s=m["infer_s"], audio_s=m["audio_s"],
                     queue_s=m["queue_s"], batch=1)  # fmt: skip
            self._event_ch.send_nowait(stt.SpeechEvent(
                type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[stt.SpeechData(language="en", text=m["text"])]))
        elif kind == "Error":
            logging.getLogger("kit.stt").error("the STT stream of %s: %s", owner.participant, m.get("message"))


# --- LiveKit Inference: livekit-agents' own client against the service (kit/stt/inference_api.py) ---


CONSOLE_CREDENTIALS = ("kit-console", "kit-console-secret-not-a-livekit-secret")  # no LiveKit server, no key


def inference_credentials() -> tuple[str, str] | None:
    """The (key, secret) LiveKit Inference tokens are signed with, found as the client finds its own:
    LIVEKIT_INFERENCE_API_KEY/SECRET, else LIVEKIT_API_KEY/SECRET; None if neither pair is set
    (then the kit's clients sign with CONSOLE_CREDENTIALS and the service accepts any token)."""
    for prefix in ("LIVEKIT_INFERENCE_API_", "LIVEKIT_API_"):
        key, secret = os.environ.get(prefix + "KEY"), os.environ.get(prefix + "SECRET")
        if key and secret:
            return key, secret
    return None


class InferenceSTT(inference.STT):
    """`inference.STT(model)`, livekit-agents' own LiveKit Inference client exactly as LiveKit's examples
    build it, pointed at the run's STT service (`--stt inference[:MODEL]`), for one participant. It
    knows nothing of the calls behind its finals (`last` stays None: no VAD span, no STT CPU per
    turn; the service log has them), as with an agent measured unmodified. Its HTTP session names
    the participant (X-Kit-Participant), so the service log attributes each stream to its speaker."""

    def __init__(self, config: RunConfig, *, participant: str, log: EventLog) -> None:
        key, secret = inference_credentials() or CONSOLE_CREDENTIALS
        self._http = aiohttp.ClientSession(headers={SERVICE_PARTICIPANT_HEADER: participant})
        super().__init__(config.stt.model, base_url=config.stt.url, api_key=key, api_secret=secret, http_session=self._http)
        self.participant, self.log = participant, log
        self.last: Recognition | None = None

    async def aclose(self) -> None:
        await super().aclose()
        await self._http.close()


def make_stt(config: RunConfig, *, participant: str, log: EventLog) -> FasterWhisperSTT | StreamingSTT | InferenceSTT:
    """The STT a config asks for, for one participant: "whisper", "delay:SECONDS", "service:URL" or
    "stream:URL" ("service", "stream", "stream-delay:S" are resolved to a URL by the run that starts
    the service)."""
    spec = config.stt
    if spec.needs_service_start:
        raise KitError(f"--stt {spec}: no service URL here (a run starts the service and gives its jobs the URL); "
                       "start one with `python -m kit stt-service` and use --stt service:URL or stream:URL")  # fmt: skip
    if spec.kind == "inference":
        return InferenceSTT(config, participant=participant, log=log)
    if spec.kind == "stream":
        return StreamingSTT(config, participant=participant, log=log, url=spec.url)
    if spec.kind == "service":
        return ServiceSTT(config, participant=participant, log=log, url=spec.url)
    if spec.kind == "delay":
        return DelaySTT(config, participant=participant, log=log, delay=spec.delay)
    return FasterWhisperSTT(config, participant=participant, log=log)
