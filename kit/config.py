"""The one configuration object of a run: what the kit runs, on which room, with which settings."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SCENARIOS_DIR = DATA_DIR / "scenarios"
DEFAULT_SCENARIO = "standup-4"
DEFAULT_RESULTS_DIR = Path("results")


class KitError(Exception):
    """A user-facing error: the CLI prints its one-line message and exits with code 2."""


@dataclass(frozen=True)
class VADSettings:
    """Silero VAD parameters, identical for every participant and architecture."""

    min_silence_duration: float = 0.55
    min_speech_duration: float = 0.05
    prefix_padding_duration: float = 0.5
    activation_threshold: float = 0.5
    # --vad-gate: frames below this level (dBFS) are not given to silero once the participant has been
    # below it for longer than the silence threshold (None: every frame, the default)
    gate_dbfs: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers; recorded verbatim in run.json."""

    scenario: str = DEFAULT_SCENARIO
    archs: tuple[str, ...] = ("multi_session", "participant_entrypoint", "multi_dispatch")
    # "whisper" (faster-whisper) or "delay:SECONDS" (calibration STT answering after exactly that delay)
    stt: str = "whisper"
    model: str | None = None  # path or faster-whisper size name; None = the pinned bundled tiny.en
    compute_type: str = "int8"
    # Whisper inference per process: threads per turn and turns at once (None: the cores the process
    # may use, e.g. K with --cpus K; measured in docs/cost-and-scaling.md), and the most waiting
    # turns one CTranslate2 batch takes (1: no batching, what wins on this CPU)
    cpu_threads: int | None = None
    num_workers: int | None = None
    max_batch: int = 1
    # Whisper's input window, s: 30 (its standard, the default) pads every turn to 30 s; shorter pads to
    # max(window, the turn): a shortcut judged on real speech in tests/test_voices.py
    window_s: float = 30.0
    cpus: int | None = None  # pin the run (worker and every job process) to this many cores
    vad: VADSettings = field(default_factory=VADSettings)
    results_dir: Path = DEFAULT_RESULTS_DIR
    pricing: str | None = None  # pricing CSV for dollars (None: data/pricing.csv)
    stt_price: str | None = None  # --stt-price: the pricing row of the cloud STT the bill counts (None: not priced)
    # Test hook: "pipeline:<identity>" makes that participant's pipeline raise as it starts;
    # "model:<identity>" gives the job serving that participant a corrupt Whisper model.
    fault: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["archs"] = list(self.archs)
        d["results_dir"] = str(self.results_dir)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        d["archs"] = tuple(d["archs"])
        d["vad"] = VADSettings(**d["vad"])
        d["results_dir"] = Path(d["results_dir"])
        return cls(**d)


def pin_to_cores(cpus: int | None) -> list[int]:
    """Pin this process (and so every process it starts from now on) to the first `cpus` cores it
    may use; None leaves it as it is. Returns the cores it may use afterwards."""
    if cpus is not None:
        os.sched_setaffinity(0, check_cpus(cpus))
    return sorted(os.sched_getaffinity(0))


def check_cpus(cpus: int) -> list[int]:
    """The cores `--cpus cpus` pins to (the first ones this process may use), or a KitError."""
    allowed = sorted(os.sched_getaffinity(0))
    if not 1 <= cpus <= len(allowed):
        raise KitError(f"--cpus must be between 1 and {len(allowed)} (the cores this process may use), got {cpus}")
    return allowed[:cpus]
