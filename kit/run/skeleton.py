"""The skeleton every run stands on, console and live alike: its directory, its record, the STT
service, the resource sampler, the job errors, and interruption (one `Interrupted` with its signal:
exit 130 for SIGINT, 143 for SIGTERM in both modes). Console (kit/run/runner.py) and live
(kit/live/driver.py) differ only in how the room is played and how the jobs are started."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import signal
from datetime import datetime
from pathlib import Path

from kit.config import KitError, RunConfig
from kit.run.events import read_events
from kit.run.record import ArchRun, RunRecord
from kit.run.sampler import ResourceSampler
from kit.stt.process import ServiceProcess
from kit.stt.request_log import SERVICE_LOG

END_GRACE_S = 30.0  # after the room's last sample, how long jobs may take to finish


class Interrupted(Exception):
    """The run was stopped by SIGINT or SIGTERM; what was measured so far is on disk."""

    def __init__(self, signum: int, run_dir: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.run_dir = run_dir


class SignalInterrupt(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the main thread is (a live run's handler: raise_interrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupt(signum, frame) -> None:
    """Ctrl-C and SIGTERM stop a live run the same way: rooms and dispatches deleted, tables kept. Not
    asyncio.run's own Ctrl-C handling: it cancels the main task, and a cancellation something under it
    absorbs loses the signal (seen once: SIGINT mid-room, the run went on and exited 0)."""
    raise SignalInterrupt(signum)


class RunFrame:
    """One run between its record and its end: `with RunFrame(...) as frame:` starts the STT service
    (`frame.jobs_config` is what the jobs get) and the sampler; `frame.add(name, result)` records a
    design's run as it ends; leaving stops the service and the sampler, finishes `run.json`, and
    raises `Interrupted` if a design was interrupted (everything measured is on disk by then)."""

    def __init__(self, run_dir: Path, record: RunRecord, sampler: ResourceSampler, config: RunConfig) -> None:
        self.run_dir, self.record, self.sampler, self.config = run_dir, record, sampler, config
        self.service: ServiceProcess | None = None
        self.jobs_config = config
        self.interrupted: int | None = None  # the signal that stopped the run

    def __enter__(self) -> RunFrame:
        self.service, self.jobs_config = start_stt_service(self.config, self.run_dir, self.record)
        try:
            self.sampler.start()
        except BaseException:
            self._stop_service()
            raise
        return self

    def add(self, name: str, result: ArchRun) -> None:
        self.record.archs[name] = result
        self.record.save(self.run_dir)
        if result.interrupted:
            self.interrupted = self.interrupted or result.interrupted

    def __exit__(self, *exc) -> None:
        try:
            self._stop_service()
            self.sampler.stop()
        finally:
            self.record.finish(self.run_dir, interrupted=self.interrupted is not None)
        if exc[0] is None and self.interrupted is not None:
            raise Interrupted(self.interrupted, self.run_dir)

    def _stop_service(self) -> None:
        if self.service is not None:
            self.service.stop()


def new_run_dir(results_dir: Path) -> Path:
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise KitError(f"results directory is a file: {results_dir}")
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    run_dir = results_dir / run_id
    try:
        (run_dir / "events").mkdir(parents=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise KitError(f"cannot write results to {results_dir}: {e.strerror or e}") from None
    return run_dir


def quiet_livekit(run_dir: Path) -> None:
    """livekit's logs go to <run_dir>/livekit.log, not the terminal (set before the server starts:
    job processes copy these levels and forward their records to this process)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_kit", False)]:
        root.removeHandler(h)
        h.close()
    handler = logging.FileHandler(run_dir / "livekit.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._kit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    for name in ("livekit", "livekit.agents", "livekit.plugins"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).propagate = True
    logging.getLogger("kit").setLevel(logging.INFO)


def unfinished_jobs(run_dir: Path, name: str, requests, started_only: bool = False) -> list[str]:
    """A problem for each requested job that never started or died before its job_end.
    `started_only` (live: jobs that ran elsewhere leave no events here): only jobs that started here."""
    ev = read_events(run_dir)
    ev = ev[ev["arch"] == name]
    started, ended = set(ev.loc[ev["kind"] == "job_start", "job"]), set(ev.loc[ev["kind"] == "job_end", "job"])
    return [
        f"job {r.job} never started" if r.job not in started else f"job {r.job} ended without job_end (its process died)"
        for r in requests
        if r.job not in ended and (r.job in started or not started_only)
    ]


def job_errors(run_dir: Path, name: str) -> list[str]:
    ev = read_events(run_dir)
    errors = ev[(ev["arch"] == name) & (ev["kind"] == "error") & (ev["job"] != "runner")]
    return [f"job {e.job}, {e.participant or 'job'}: {e.detail}" for e in errors.itertuples()]


def start_stt_service(config: RunConfig, run_dir: Path, record: RunRecord) -> tuple[ServiceProcess | None, RunConfig]:
    """`--stt service` / `stream` / `stream-delay:S`: start the kit's STT service for the run (its
    requests logged to <run_dir>/stt-service.jsonl, its stderr to stt-service.log; stream-delay: no
    model, calibration answers) and return it with the config the jobs get ("service:<URL>" or
    "stream:<URL>"); `--stt service:URL` / `stream:URL` is recorded as a service the run did not
    start. Any other STT: (None, config)."""
    if not config.stt.uses_service:
        return None, config
    if not config.stt.needs_service_start:
        record.stt_service = {"url": config.stt.url, "pid": None, "started_by_kit": False, "log": None}
        record.save(run_dir)
        return None, config
    service = ServiceProcess(config, log_path=run_dir / SERVICE_LOG, stderr_path=run_dir / "stt-service.log")
    url = service.start()
    record.stt_service = {"url": url, "pid": service.pid, "started_by_kit": True, "log": SERVICE_LOG}
    record.save(run_dir)
    return service, dataclasses.replace(config, stt=config.stt.served_at(url))
