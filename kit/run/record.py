"""The run record: `run.json`, one per run directory, the same for console and live runs.

It says what was run (config, scenario and its hash, model and its sha256, package versions,
machine, git sha, mode), how each design's run went (`ArchRun`), and whether the whole run is
complete. The runner and the live driver write it through `RunRecord.save` after each design, so
an interrupted run keeps what it measured; metrics, the lab and the report read it with
`RunRecord.load`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from kit.config import REPO_ROOT, RunConfig

PACKAGES = ("livekit", "livekit-agents", "livekit-plugins-silero", "livekit-plugins-openai", "faster-whisper", "ctranslate2", "onnxruntime", "numpy", "pandas")


@dataclass
class ArchRun:
    """How one design's run went."""

    arch: str
    t0_mono: float | None = None  # the run's start instant on the measuring machine's monotonic clock
    jobs: int = 0  # planned (console) or dispatched (live)
    complete: bool = False
    problems: list[str] = field(default_factory=list)
    cold_start_s: dict[str, float] | None = None  # job (or agent identity, live) -> seconds to ready
    interrupted: int | None = None  # the signal that stopped it
    failed_jobs: list[str] = field(default_factory=list)  # jobs already reported as failed
    # live: what the server reported (ListParticipants during the run, the dispatches)
    agent_participants: int | None = None
    server_jobs: int | None = None
    room: str | None = None
    agent_name: str | None = None
    command: str | None = None  # `kit live --agent CMD`: your own agent, measured only from outside
    worker_cores: list[int] | None = None  # live, --local-agents or --agent: the cores the agent worker(s) may use (/proc)
    worker_pids: list[int] | None = None  # live, --local-agents or --agent: the agent workers' pids (--workers K: K of them)
    worker_killed_s: float | None = None  # --kill-worker: when a worker was killed (seconds since t0)
    killed_worker: int | None = None  # --kill-worker: which (1..K, the order of worker_pids): the one with most jobs
    rejoined_after_s: list[float] | None = None  # --kill-worker: agents that joined after the kill, seconds after it
    room_cores: list[int] | None = None  # live, --local-agents --cpus K: the cores the room's side (publishers, listener, the run's own server) used (/proc)
    stt_api: str | None = None  # the protocol(s) its STT clients spoke to the run's STT service ("openai", "inference", ...)
    stt_model: str | None = None  # the model name(s) they asked for (as the client named them)

    @classmethod
    def from_dict(cls, d: dict) -> ArchRun:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["problems"] = list(d.get("problems") or [])
        return cls(**d)


@dataclass
class ScenarioRef:
    name: str
    path: str
    sha256: str
    duration_s: float


@dataclass
class RunRecord:
    run_id: str
    config: dict  # RunConfig.to_dict(), verbatim (as run.json holds it; typed: `run_config`)
    scenario: ScenarioRef
    mode: str = "console"  # or "live"
    model: dict | None = None  # kit.stt.ModelInfo as a dict; None for a calibration STT
    versions: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    git_sha: str | None = None
    started: str | None = None
    ended: str | None = None
    complete: bool = False
    interrupted: bool = False
    archs: dict[str, ArchRun] = field(default_factory=dict)
    live: dict | None = None  # live: server URL and version, agent names, rooms, dispatch path
    cores: list[int] | None = None  # the cores the run's processes could use (after --cpus pinning)
    # --stt service[:URL]: url, pid (the kit's own service, else None), started_by_kit, log (its per-request log)
    stt_service: dict | None = None

    @classmethod
    def new(cls, run_dir: Path, config: RunConfig, sc: Any, model: Any = None, mode: str = "console", live: dict | None = None) -> RunRecord:
        """The record of a run starting now in `run_dir`, on scenario `sc` (a kit.room.scenario.Scenario)."""
        ref = ScenarioRef(sc.name, str(sc.path), sc.content_hash(), sc.duration_s)
        return cls(run_id=Path(run_dir).name, config=config.to_dict(), scenario=ref, mode=mode,
                   model=asdict(model) if model else None, versions=versions(), machine=machine(), git_sha=git_sha(),
                   started=now(), live=live)  # fmt: skip

    @property
    def run_config(self) -> RunConfig:
        """The run's configuration, typed (parsed from run.json's form once per call)."""
        return RunConfig.from_dict(self.config)

    def save(self, run_dir: Path) -> None:
        write_atomically(Path(run_dir) / "run.json", json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        d = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["scenario"] = ScenarioRef(**d["scenario"])
        d["archs"] = {a: ArchRun.from_dict(info) for a, info in (d.get("archs") or {}).items()}
        return cls(**d)

    def finish(self, run_dir: Path, interrupted: bool = False) -> None:
        """Complete if every design asked for ran to the end without a problem; saved."""
        asked = self.config["archs"]
        self.interrupted = self.interrupted or interrupted
        self.complete = not self.interrupted and all(a in self.archs and self.archs[a].complete for a in asked)
        self.ended = now()
        self.save(run_dir)

    def problems(self) -> list[tuple[str, str]]:
        """(arch, problem) for everything that went wrong; designs that never ran too."""
        rows = [(a, p) for a, info in self.archs.items() for p in info.problems]
        rows += [(a, "did not run (the run was interrupted)") for a in self.config["archs"] if a not in self.archs]
        return rows


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def machine() -> dict:
    cpu_model = ""
    try:
        cpu_model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }  # fmt: skip


def git_sha() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def write_atomically(path: Path, text: str) -> None:
    """Readers never see half a file (run.json, the jobs' ready and t0 files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
