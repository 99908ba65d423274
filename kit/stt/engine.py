"""The inference engine: one loaded faster-whisper model per process and settings, its workers
(threads per turn, turns at once, batching, the shortened window), and the CPU each turn cost.
Shared by every STT instance of a process (kit.stt.plugins) and by the STT service."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kit.config import RunConfig
from kit.stt.model import (
    WHISPER_RATE,
    WHISPER_WINDOW_S,
    ModelError,
    ModelInfo,
    resolve_model,
)


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
        results = self.decode(self.model.encode(features))
        eot = self._tokenizer.eot
        texts = [self._tokenizer.decode([t for t in r.sequences_ids[0] if t < eot]).strip() for r in results]
        # faster-whisper's own test for a decoding stuck in a loop (its temperature fallback's trigger):
        # such a turn is decoded again the standard way, alone
        return [self._text_alone(a) if _looping(t) else t for a, t in zip(audios, texts)]

    def decode(self, encoded):
        """Greedy decoding, without timestamps, of a batch of encoder outputs (CTranslate2's results)."""
        prompt = self.model.get_prompt(self._tokenizer, [], without_timestamps=True)
        return self.model.model.generate(encoded, [prompt] * encoded.shape[0], beam_size=1, max_length=self.model.max_length,
                                         suppress_blank=True, suppress_tokens=[-1])  # fmt: skip

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
