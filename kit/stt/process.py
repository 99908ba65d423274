"""The STT service as a run's child process (`ServiceProcess`): started with the run's model
settings, ready once it prints its URL, stopped with the run (kit/stt/service.py is what it runs)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit.config import KitError, RunConfig, check_cpus

READY_TIMEOUT_S = 120.0  # model load on a busy 2-core machine
STOP_TIMEOUT_S = 10.0


class ServiceProcess:
    """`python -m kit stt-service --port 0` as a child process, with the model settings of `config`:
    `start()` returns its base URL once it is ready, `stop()` ends it (SIGTERM, then SIGKILL).
    It watches this process and exits if it goes away."""

    def __init__(self, config: RunConfig, log_path: Path | None = None, stderr_path: Path | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def command(self) -> list[str]:
        c = self.config
        cmd = [sys.executable, "-m", "kit", "stt-service", "--port", "0", *c.to_model_args(), *c.to_vad_args(),
               "--parent-pid", str(os.getpid())]  # fmt: skip
        spec = c.stt
        calibration = spec.delay if spec.kind == "stream-delay" else None
        for flag, value in (("--log", self.log_path), ("--calibration-delay", calibration)):
            if value is not None:
                cmd += [flag, str(value)]
        return cmd

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        self._stderr = open(self.stderr_path, "w+b") if self.stderr_path else tempfile.TemporaryFile()
        # its own session: a Ctrl-C meant for the run reaches the run, which then stops the service
        # --cpus: pinned like the run's other processes (live, the driver itself stays unpinned)
        cores = check_cpus(self.config.cpus) if self.config.cpus else None
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)  # fmt: skip
        try:
            self.url = self._wait_ready(timeout_s)
        except BaseException:  # not ready, or Ctrl-C meanwhile: never leave it behind
            self.stop()
            raise
        return self.url

    def _wait_ready(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if self.proc.poll() is not None or left <= 0:
                raise KitError(f"the STT service did not start: {self._failure()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready and not (chunk := os.read(self.proc.stdout.fileno(), 4096)):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)  # stdout closed: it is exiting
            elif ready:
                line += chunk
        return line.decode().strip()

    def _failure(self) -> str:
        if self.proc.poll() is None:
            return f"not ready after {READY_TIMEOUT_S:.0f} s"
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else f"it exited with code {self.proc.returncode}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
