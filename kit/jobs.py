"""The job side of a run: what every architecture's entrypoint stands on.

A job reads its `JobSpec` from the dispatch metadata (`ctx.job.room.metadata`), loads its room,
says it is ready, waits for the run's start instant t0, then runs one task per participant it
serves. A failure inside one participant's task is logged as an `error` event and the others
carry on. The job ends (ctx.shutdown) when every participant it serves has left.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from livekit.agents import JobContext, JobProcess

from kit import scenario
from kit.config import RunConfig
from kit.events import EventLog
from kit.room import ConsoleRoom, RoomView
from kit.stt import load_whisper


@dataclass(frozen=True)
class JobRequest:
    """One job an architecture asks for: `participant` is set when the job serves only that one."""

    job: str
    participant: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """Everything a job process needs, carried as JSON in the dispatch metadata."""

    arch: str
    job: str
    participant: str | None
    mode: str  # "console" (live mode comes later)
    scenario: str  # path of scenario.json
    run_dir: str
    config: dict
    t_submit: float  # time.monotonic() when the runner submitted the job

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls(**json.loads(text))


@dataclass
class Job:
    """What an entrypoint works with: its spec, config, room and event log."""

    spec: JobSpec
    config: RunConfig
    room: RoomView
    log: EventLog


ParticipantHandler = Callable[[Job, str], Awaitable[None]]


def prewarm(proc: JobProcess, config: dict) -> None:
    """setup_fnc of every job process: load the shared Whisper model once, before any job."""
    cfg = RunConfig.from_dict(config)
    if cfg.stt == "whisper":
        load_whisper(cfg)


def ready_path(run_dir: Path, arch: str, job: str) -> Path:
    return Path(run_dir) / "ready" / f"{arch}-{job}"


def t0_path(run_dir: Path, arch: str) -> Path:
    return Path(run_dir) / "ready" / f"{arch}.t0"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def _wait_for_t0(spec: JobSpec) -> float:
    path = t0_path(Path(spec.run_dir), spec.arch)
    while not path.exists():
        await asyncio.sleep(0.01)
    return float(path.read_text())


async def run_job(ctx: JobContext, on_participant: ParticipantHandler) -> None:
    """The common body of every architecture's entrypoint."""
    entered = time.monotonic()
    spec = JobSpec.from_json(ctx.job.room.metadata)
    config = RunConfig.from_dict(spec.config)
    sc = scenario.load(spec.scenario)
    room = ConsoleRoom(sc, identities=[spec.participant] if spec.participant else None)
    write_atomically(ready_path(Path(spec.run_dir), spec.arch, spec.job), repr(time.monotonic()))
    room.t0 = await _wait_for_t0(spec)
    events = Path(spec.run_dir) / "events" / f"{spec.arch}-{spec.job}-{os.getpid()}.jsonl"
    log = EventLog(events, t0=room.t0, arch=spec.arch, job=spec.job)
    log.emit("job_start", t=entered - room.t0, cold_start_s=entered - spec.t_submit)
    job = Job(spec, config, room, log)
    try:
        tasks = []
        async for identity in room.joins():
            tasks.append(asyncio.create_task(_guarded(job, identity, on_participant), name=f"participant-{identity}"))
        await asyncio.gather(*tasks)
    except Exception as e:  # the job's own code failed: say so, then end the job
        log.emit("error", detail=f"{type(e).__name__}: {e}")
    finally:
        cpu = os.times()
        log.emit("job_end", proc_cpu_s=cpu.user + cpu.system)
        log.close()
        ctx.shutdown("room ended")


async def _guarded(job: Job, identity: str, on_participant: ParticipantHandler) -> None:
    try:
        if job.config.fault_participant == identity:
            raise RuntimeError(f"fault injected into {identity}'s pipeline")
        await on_participant(job, identity)
    except Exception as e:
        job.log.emit("error", participant=identity, detail=f"{type(e).__name__}: {e}")
        logging.getLogger("kit.jobs").exception("participant %s failed", identity)
