"""The job side of a run: what every architecture's entrypoint stands on.

A job reads its `JobSpec` from its metadata, opens its room, and runs one task per participant it
serves as each joins. A failure inside one participant's task is logged as an `error` event and
the others carry on. The job ends (ctx.shutdown) when every participant it serves has left.

Console: the spec is in the room's metadata (`simulate_job` cannot set a job's own), the room is the
replay, and the job says it is ready then waits for the runner's t0 (files in the run directory,
one machine, one monotonic clock). Live: the spec is the dispatch's metadata (`ctx.job.metadata`),
the room is the real one, and t0 comes as wall time in the room's metadata once every agent has
joined (kit/live/common.py, "The clock").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from livekit.agents import JobContext, JobProcess

from kit.config import KitError, RunConfig, pin_to_cores
from kit.live import common as live
from kit.room import scenario
from kit.room.console import ConsoleRoom, RoomView
from kit.run.events import EventLog
from kit.run.record import write_atomically
from kit.stt import load_service_client, load_whisper, loaded_models


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
    mode: str  # "console" or "live"
    scenario: str  # path of scenario.json (on the driver's machine)
    run_dir: str  # (on the driver's machine)
    config: dict
    t_submit: float  # when the job was submitted: time.monotonic() in console mode, time.time() live
    identities: list[str] | None = None  # live: the participants this job serves

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
    """setup_fnc of every job process: load the shared Whisper model once, before any job.

    A model that fails to load must not fail the process (livekit would retry, then give up with
    no reason): the job loads it again and records the real error."""
    cfg = RunConfig.from_dict(config)
    pin_to_cores(cfg.cpus)  # before the model sizes its workers to the cores; the runner pinned already
    if cfg.stt.kind == "whisper":
        with contextlib.suppress(Exception):
            load_whisper(cfg)
    elif cfg.stt.url:
        load_service_client()  # livekit-plugins-openai registers itself on the main thread, before any job


def _job_config(spec: JobSpec) -> RunConfig:
    """The run's config, with the test hook "model:<identity>" pointing this job at a corrupt model."""
    config = RunConfig.from_dict(spec.config)
    kind, _, who = (config.fault or "").partition(":")
    serves = [spec.participant] if spec.participant else (spec.identities or [])
    if kind == "model" and who in serves:
        broken = Path(spec.run_dir) / "fault-model"
        broken.mkdir(exist_ok=True)
        (broken / "model.bin").write_bytes(b"not a model")
        config = dataclasses.replace(config, model=str(broken))
    return config


def _load_model(config: RunConfig) -> str | None:
    """Load the Whisper model (a no-op after a successful prewarm); the error message if it fails."""
    if config.stt.kind != "whisper":
        return None
    try:
        load_whisper(config)
    except KitError as e:
        return str(e)
    return None


def ready_path(run_dir: Path, arch: str, job: str) -> Path:
    return Path(run_dir) / "ready" / f"{arch}-{job}"


def t0_path(run_dir: Path, arch: str) -> Path:
    return Path(run_dir) / "ready" / f"{arch}.t0"


async def _wait_for_t0(spec: JobSpec) -> float:
    path = t0_path(Path(spec.run_dir), spec.arch)
    while not path.exists():
        await asyncio.sleep(0.01)
    return float(path.read_text())


async def run_job(ctx: JobContext, on_participant: ParticipantHandler, *, joins_from_participant_entrypoint: bool = False) -> None:
    """The common body of every architecture's entrypoint. `joins_from_participant_entrypoint`: live,
    learn of participants through ctx.add_participant_entrypoint (the participant-entrypoint design)."""
    entered, entered_wall = time.monotonic(), time.time()
    spec = JobSpec.from_json(ctx.job.metadata or ctx.job.room.metadata)
    config = _job_config(spec)
    model_error = _load_model(config)
    if spec.mode == "live":
        room, log = await open_live_room(ctx, spec, joins_from_participant_entrypoint=joins_from_participant_entrypoint)
        cold_start = entered_wall - spec.t_submit
    else:
        room, log = await _open_console_room(spec)
        cold_start = entered - spec.t_submit
    log.emit("job_start", t=entered - log.t0, cold_start_s=cold_start, affinity=sorted(os.sched_getaffinity(0)),
             models_loaded=loaded_models())  # fmt: skip
    job = Job(spec, config, room, log)
    try:
        if model_error:
            raise RuntimeError(model_error)
        tasks = []
        async for identity in room.joins():
            tasks.append(asyncio.create_task(_guarded(job, identity, on_participant), name=f"participant-{identity}"))
        await asyncio.gather(*tasks)
        await room.aclose()
    except Exception as e:  # the job's own code failed: say so, then end the job
        log.emit("error", detail=live.redact(f"{type(e).__name__}: {e}"))
    finally:
        cpu = os.times()
        log.emit("job_end", proc_cpu_s=cpu.user + cpu.system, kit_cpu_s=log.cpu_s)
        log.close()
        ctx.shutdown("room ended")


def job_run_dir(spec: JobSpec) -> Path:
    """Where a live job writes its own events: the driver's run directory when the worker runs on the
    driver's machine (one directory holds everything), else results/<run_id>/ under the worker's cwd."""
    driver_dir = Path(spec.run_dir)
    return driver_dir if driver_dir.is_dir() else Path("results") / driver_dir.name


async def open_live_room(ctx: Any, spec: JobSpec, *, joins_from_participant_entrypoint: bool) -> tuple[live.LiveRoom, EventLog]:
    """The live half of run_job: the room, connected; t0 as the room driver announces it; the event log."""
    from livekit.agents import AutoSubscribe

    start = live.StartAnnouncement(ctx.room)
    room = live.LiveRoom(ctx.room, spec.identities)
    if joins_from_participant_entrypoint:
        # Before connect(): it only appends to a list, and connect() fires it for those already there.
        ctx.add_participant_entrypoint(room.participant_entrypoint)
    else:
        room.watch_joins()
    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)  # LiveRoom subscribes to whom it serves
    if not joins_from_participant_entrypoint:
        room.admit_present()
    t0 = await start.t0()  # no participant's audio is read before: LiveRoom only queues their joins
    path = job_run_dir(spec) / "events" / f"{spec.arch}-{spec.job}-{os.getpid()}.jsonl"
    return room, EventLog(path, t0=t0, arch=spec.arch, job=spec.job, wall_clock=True)



async def _open_console_room(spec: JobSpec) -> tuple[ConsoleRoom, EventLog]:
    """Load the replay, say ready, wait for the runner's t0 (the room starts for every job at once)."""
    sc = scenario.load(spec.scenario)
    room = ConsoleRoom(sc, identities=[spec.participant] if spec.participant else None, vad=RunConfig.from_dict(spec.config).vad)
    write_atomically(ready_path(Path(spec.run_dir), spec.arch, spec.job), repr(time.monotonic()))
    room.t0 = await _wait_for_t0(spec)
    events = Path(spec.run_dir) / "events" / f"{spec.arch}-{spec.job}-{os.getpid()}.jsonl"
    return room, EventLog(events, t0=room.t0, arch=spec.arch, job=spec.job)


async def _guarded(job: Job, identity: str, on_participant: ParticipantHandler) -> None:
    try:
        if job.config.fault == f"pipeline:{identity}":
            raise RuntimeError(f"fault injected into {identity}'s pipeline")
        await on_participant(job, identity)
    except Exception as e:
        job.log.emit("error", participant=identity, detail=live.redact(f"{type(e).__name__}: {e}"))
        logging.getLogger("kit.run.jobs").exception("participant %s failed", identity)
