"""Whisper's speed on a room's turns per (threads, workers, batch): `python -m kit stt-bench`; where a
turn's CPU goes: `python -m kit stt-bench --breakdown`."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from kit.config import KitError, RunConfig
from kit.room.audio import resample
from kit.stt.engine import Whisper
from kit.stt.model import WHISPER_RATE, resolve_model


def parse_settings(text: str) -> list[tuple[int, int, int]]:
    """--settings "2x1x4,1x1x1": (cpu_threads, num_workers, max_batch) items, or a KitError."""
    try:
        settings = [tuple(int(x) for x in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise KitError(f"--settings: expected THREADSxWORKERSxBATCH items like 2x1x4, got {text!r}") from None
    if any(len(s) != 3 or min(s) < 1 for s in settings):
        raise KitError(f"--settings: each item is three positive integers THREADSxWORKERSxBATCH, got {text!r}")
    return settings


def room_turns(sc) -> list[np.ndarray]:
    """Each utterance of a room (a kit.room.scenario.Scenario) as the VAD hands it to the STT, at 16 kHz:
    its prefix padding before, the closing silence after."""
    tracks = {p.identity: sc.read_audio(p.identity) for p in sc.participants}
    rate = sc.sample_rate
    return [resample(tracks[u.participant][max(0, round((u.start_s - 0.5) * rate)) : round((u.end_s + 0.55) * rate)],
                     rate, WHISPER_RATE) for u in sc.utterances]  # fmt: skip

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


def breakdown(config: RunConfig, turns: list[np.ndarray]) -> pd.DataFrame:
    """Where one turn's CPU goes, one thread, one turn at a time (ms of process CPU per turn, mean over
    the turns, after one untimed pass): `features` (log-mel), `encode` (the encoder's pass over the
    window: 30 s unless --window), `decode` (greedy, as the kit decodes), and `transcribe`, the whole
    call the kit makes (faster-whisper's own for one turn: the three and its bookkeeping)."""
    from faster_whisper.audio import pad_or_trim

    whisper = Whisper(resolve_model(config.model), config.compute_type, 1, 1, 1, config.window_s)
    model = whisper.model
    frames = int(config.window_s * 100)  # 100 feature frames per second

    def stages(audio: np.ndarray) -> dict[str, float]:
        cpu = {}
        start = time.process_time()
        features = model.feature_extractor(audio)[..., :-1]
        cpu["features"] = time.process_time() - start
        start = time.process_time()
        encoded = model.encode(pad_or_trim(features, max(frames, features.shape[-1]))[None])
        cpu["encode"] = time.process_time() - start
        start = time.process_time()
        whisper.decode(encoded)
        cpu["decode"] = time.process_time() - start
        start = time.process_time()
        whisper.texts([audio])
        cpu["transcribe"] = time.process_time() - start
        return cpu

    for audio in turns:  # warm
        stages(audio)
    table = pd.DataFrame([stages(audio) for audio in turns]) * 1000
    return pd.DataFrame([{"turns": len(turns), "turn_s": float(np.mean([len(a) for a in turns])) / WHISPER_RATE,
                          "window_s": config.window_s, **table.mean().round(1).to_dict()}])  # fmt: skip
