"""The runner: one real livekit-agents AgentServer per architecture, its jobs submitted as simulated
(console) jobs in their own processes, a resource sampler outside them, and the run directory.

results/<run_id>/
    run.json          the run record (kit/run/record.py)
    events/*.jsonl    one file per job process (+ one per architecture from the runner)
    resources.jsonl   CPU and memory of every process of the tree, every second (kit/run/sampler.py)
    livekit.log       what livekit-agents logged (warnings and errors)
    stt-service.jsonl, stt-service.log   --stt service: the service's per-request log and its stderr
    utterances.csv, speakers.csv, architectures.csv
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil

from kit import architectures
from kit.config import KitError, RunConfig, check_cpus, pin_to_cores
from kit.results.cost import load_pricing
from kit.room import scenario
from kit.run.events import EventLog
from kit.run.jobs import JobSpec, prewarm, ready_path, t0_path
from kit.run.record import ArchRun, RunRecord, write_atomically
from kit.run.sampler import ResourceSampler
from kit.run.skeleton import (
    END_GRACE_S,
    RunFrame,
    job_errors,
    new_run_dir,
    quiet_livekit,
    unfinished_jobs,
)
from kit.stt import resolve_model
from kit.stt.request_log import run_service_log, stt_clients

# Memory guard, from measured PSS on the 2-core build machine (`python -m kit sweep`, fits.csv):
# the worker's main process + forkserver, each job process (framework + model), each speaker.
WORKER_MB, JOB_PROCESS_MB, SPEAKER_MB = 450.0, 400.0, 40.0
READY_TIMEOUT_S = 120.0  # process start + model load, on a busy 2-core machine


def estimate_memory_mb(config: RunConfig, sc: scenario.Scenario) -> float:
    """Peak memory of the hungriest architecture of the run (they run one after the other)."""
    n = len(sc.participants)
    jobs = max(len(architectures.get(a).plan(sc)) for a in config.archs)
    return WORKER_MB + jobs * JOB_PROCESS_MB + n * SPEAKER_MB


def check_memory(config: RunConfig, sc: scenario.Scenario) -> None:
    """Refuse, before starting anything, a run that would not fit in this machine's memory."""
    need = estimate_memory_mb(config, sc)
    available = psutil.virtual_memory().available / 2**20
    if need > 0.9 * available:
        raise KitError(
            f"this run would need about {need:,.0f} MB ({len(sc.participants)} speakers, "
            f"{', '.join(config.archs)}) but only {available:,.0f} MB is available: use fewer speakers or "
            f"a single-job design"
        )


class _StopSignals:
    """SIGINT/SIGTERM during a run: remember which, and wake the waits up (no traceback, no orphans)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self.signum = self.signum or sig
        self.event.set()

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.remove_signal_handler(sig)


async def run_arch(
    name: str, config: RunConfig, sc: scenario.Scenario, run_dir: Path, sampler: ResourceSampler,
    progress: Callable[[float], None] | None = None,
) -> ArchRun:  # fmt: skip
    """Run one architecture on the room through a real AgentServer with process executors."""
    from livekit.agents import AgentServer, JobExecutorType

    arch = architectures.get(name)
    requests = arch.plan(sc)
    result = ArchRun(arch=name, jobs=len(requests), problems=[])
    server = AgentServer(
        job_executor_type=JobExecutorType.PROCESS,
        setup_fnc=partial(prewarm, config=config.to_dict()),
        num_idle_processes=0,
        initialize_process_timeout=60,
        port=0,
        host="127.0.0.1",  # its health-check HTTP: loopback only (livekit-agents' default is every interface)
    )
    server.rtc_session(arch.entrypoint, agent_name=f"kit-{name}")
    started = asyncio.Event()
    server.on("worker_started", started.set)
    server_task = asyncio.create_task(server.run(devmode=True, unregistered=True))
    sampler.arch = name
    stop = _StopSignals()
    try:
        await asyncio.wait([asyncio.ensure_future(started.wait()), server_task], return_when=asyncio.FIRST_COMPLETED)
        if server_task.done():
            server_task.result()
        await asyncio.to_thread(_warm_forkserver)
        submitted = await _submit(server, name, requests, sc, run_dir, config, result)
        await _wait_ready(server, name, requests, run_dir, result, stop)
        result.cold_start_s = _cold_starts(run_dir, name, submitted)
        result.t0_mono = time.monotonic() + 0.5
        write_atomically(t0_path(run_dir, name), repr(result.t0_mono))
        sampler.mark()  # the CPU window starts on a sample of every job process
        # and one PSS sample inside the window, however short the room (PSS is read only every 30 s)
        asyncio.get_running_loop().call_later(max(0.0, result.t0_mono + 1.0 - time.monotonic()), sampler.mark)
        log = EventLog(run_dir / "events" / f"{name}-runner.jsonl", t0=result.t0_mono, arch=name, job="runner")
        log.emit("run_start", t=0.0, detail=f"{len(requests)} jobs")
        deadline = result.t0_mono + sc.duration_s + END_GRACE_S
        while server.active_jobs and time.monotonic() < deadline and stop.signum is None:
            if progress:
                progress(time.monotonic() - result.t0_mono)
            await stop.sleep(0.2)
        if progress:
            progress(float("inf"))
        if stop.signum is not None:
            result.interrupted = stop.signum
            result.problems.append(f"interrupted by {signal.Signals(stop.signum).name}")
            _terminate_jobs()
        elif server.active_jobs:
            result.problems.append(f"{len(server.active_jobs)} job(s) still running {END_GRACE_S:.0f} s after the room ended")
        result.problems += unfinished_jobs(run_dir, name, [r for r in requests if r.job not in result.failed_jobs])
        for p in result.problems:
            log.emit("error", detail=p)
        sampler.sample_now()  # the window ends on a sample (the STT service's last turns included)
        result.stt_api, result.stt_model = stt_clients(run_service_log(run_dir), min(submitted.values(), default=0.0), time.monotonic())
        log.emit("run_end")
        log.close()
        failures = job_errors(run_dir, name)
        result.complete = not result.problems and not failures
        result.problems += failures
        return result
    finally:
        stop.remove()
        if stop.signum is not None:
            result.interrupted = stop.signum
            _terminate_jobs()
        await server.aclose()
        (crash,) = await asyncio.gather(server_task, return_exceptions=True)
        if isinstance(crash, Exception):
            result.complete = False
            result.problems.append(f"the AgentServer failed: {type(crash).__name__}: {crash}")


async def _submit(server, name, requests, sc, run_dir, config, result: ArchRun) -> dict[str, float]:
    """Submit every job as a console job; returns job -> submission time. A job that cannot be
    launched (its process failed to start) is a recorded problem, not a crash of the run."""
    from livekit.protocol import models

    submitted = {}
    for req in requests:
        submitted[req.job] = time.monotonic()
        spec = JobSpec(name, req.job, req.participant, "console", str(sc.path), str(run_dir), config.to_dict(), submitted[req.job])
        room = f"{name}-{req.job}"
        try:
            await server.simulate_job(room, fake_job=True, room_info=models.Room(sid=f"RM_{room}", name=room, metadata=spec.to_json()))  # fmt: skip
        except Exception as e:
            result.problems.append(f"job {req.job} could not be launched: {type(e).__name__}: {e}")
            result.failed_jobs.append(req.job)
    return submitted


def _cold_starts(run_dir: Path, name: str, submitted: dict[str, float]) -> dict[str, float]:
    """job -> seconds from submission to ready for its first frame (process, model, room loaded)."""
    out = {}
    for job, t in submitted.items():
        path = ready_path(run_dir, name, job)
        if path.exists():
            out[job] = float(path.read_text()) - t
    return out


def _warm_forkserver() -> None:
    """Start the forkserver (and its livekit preload) before any job, so that every design's cold
    start is measured from a warm forkserver: a worker pays that once, not per job."""
    import multiprocessing

    proc = multiprocessing.get_context("forkserver").Process(target=int)
    proc.start()
    proc.join()


def _terminate_jobs() -> None:
    """Stop the job processes now (grandchildren: they hang under the forkserver), so that the
    server closes at once instead of waiting for entrypoints that will never end."""
    me = psutil.Process()
    direct = {p.pid for p in me.children()}
    jobs = [p for p in me.children(recursive=True) if p.pid not in direct]
    for p in jobs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(jobs, timeout=3)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


def stop_helper_processes() -> None:
    """multiprocessing's forkserver outlives the AgentServer: stop it, so a run leaves no job-making
    process behind. (Its resource tracker, a few MB, exits with this process; stopping it early
    makes it print warnings about livekit's queues.)"""
    from multiprocessing import forkserver

    with contextlib.suppress(Exception):
        forkserver._forkserver._stop()


async def _wait_ready(server, name: str, requests, run_dir: Path, result: ArchRun, stop: _StopSignals) -> None:
    """Until every launched job is ready for its first frame, or has died trying."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = [r.job for r in requests if r.job not in result.failed_jobs]
    while pending and stop.signum is None:
        alive = {j.job.room.name for j in server.active_jobs}
        for job in list(pending):
            if ready_path(run_dir, name, job).exists():
                pending.remove(job)
            elif f"{name}-{job}" not in alive:
                result.problems.append(f"job {job} ended before it was ready (see livekit.log)")
                result.failed_jobs.append(job)
                pending.remove(job)
        if pending and time.monotonic() > deadline:
            result.problems.append(f"job(s) {', '.join(pending)} not ready after {READY_TIMEOUT_S:.0f} s")
            break
        await stop.sleep(0.05)


def run(config: RunConfig, progress_factory: Callable[[str, float], Callable[[float], None]] | None = None) -> Path:
    """Run every architecture of the config on its scenario, one after the other; return the run dir."""
    for name in config.archs:
        architectures.get(name)  # fail fast on an unknown name
    if config.workers > 1 or config.net:
        raise KitError("--workers and --net shape a live run (console mode has no agent workers and no network): "
                       "use --mode live or both")  # fmt: skip
    sc = scenario.load(config.scenario)
    # the model the run's own processes load (the job processes, or the run's STT service)
    model = resolve_model(config.model) if config.stt.run_loads_model else None
    pricing = load_pricing(config.pricing)  # and on a bad pricing file
    if config.stt_price:
        pricing.stt_price(config.stt_price)  # and on an unknown STT price
    if config.cpus is not None:
        check_cpus(config.cpus)  # and on more cores than there are
    check_memory(config, sc)
    run_dir = new_run_dir(config.results_dir)
    quiet_livekit(run_dir)
    unpinned = os.sched_getaffinity(0)
    record = RunRecord.new(run_dir, config, sc, model, mode="console")
    record.cores = pin_to_cores(config.cpus)  # inherited by the AgentServer, forkserver and job processes
    record.save(run_dir)
    try:
        # --stt service: one STT service for the whole run, a child of this process (so in the sampled
        # tree, pinned like the rest); the jobs get "service:<its URL>" in their config
        with RunFrame(run_dir, record, ResourceSampler(run_dir / "resources.jsonl"), config) as frame:
            for name in config.archs:
                progress = progress_factory(name, sc.duration_s) if progress_factory else None
                frame.add(name, asyncio.run(run_arch(name, frame.jobs_config, sc, run_dir, frame.sampler, progress)))
                if frame.interrupted:
                    break
    finally:
        stop_helper_processes()
        os.sched_setaffinity(0, unpinned)  # a notebook's next run starts unpinned
    return run_dir

