"""Agent worker processes started here and watched: the kit's own (`kit agent`, --local-agents) and
yours (`kit live --agent CMD`): registration, output, a clean stop of the whole process group."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from kit.config import KitError, RunConfig, fleet_cores
from kit.live.common import redact, sanitize_suffix
from kit.run.sampler import read_stat

STT_URL_ENV = "KIT_STT_URL"  # an --agent's STT: the base URL of the run's shared STT service
STAND_IN_KEY = "kit-local-stand-in"  # the API key an agent's OpenAI/Deepgram client sends the kit (never checked)
AGENT_REGISTER_TIMEOUT_S = 60.0  # --local-agents: start-up and registration of a worker


AGENT_STOP_TIMEOUT_S = 30.0
# A worker sends its load every 2.5 s (livekit-agents UPDATE_STATUS_INTERVAL) and logs only a change of status,
# starting from "available": a fleet's worker has sent a status of its own this long after registering.
FLEET_SETTLE_S = 3.5


AGENT_DISPATCH = ("room", "participant", "auto")


@dataclass(frozen=True)
class ExternalAgent:
    """Your own agent worker, measured beside the kit's designs (`kit live --agent CMD`; docs/own-agent.md).

    `command` runs in a shell with LIVEKIT_URL/_API_KEY/_API_SECRET, KIT_STT_URL and (with `name`)
    KIT_AGENT_NAME in its environment. `dispatch`: "room" (one explicit dispatch to `name`, empty
    metadata: the job transcribes everyone), "participant" (one per participant, metadata
    {"participant_identity": ...}) or "auto" (no dispatch: the worker must join every new room by
    itself, i.e. register without an agent name; only sensible on a private server). Its rows in the
    tables are named `label`. It is measured by what it publishes on `lk.transcription`."""

    command: str
    label: str = "agent"
    name: str | None = None
    dispatch: str = "room"

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise KitError("--agent needs a command, e.g. --agent 'node examples/node/multi-session.mjs start'")
        if self.dispatch not in AGENT_DISPATCH:
            raise KitError(f"--dispatch for --agent must be one of {', '.join(AGENT_DISPATCH)}, got {self.dispatch!r}")
        if self.dispatch != "auto" and not self.name:
            raise KitError(f"--dispatch {self.dispatch} needs --agent-name (the name the agent registers with); "
                           "without one use --dispatch auto")  # fmt: skip
        if self.dispatch == "auto" and self.name:
            raise KitError("--dispatch auto dispatches nothing: an agent registered with a name (--agent-name) "
                           "only joins rooms it is dispatched to; use --dispatch room or participant")  # fmt: skip
        from kit import architectures

        if self.label in architectures.NAMES:
            raise KitError(f"--label {self.label!r} is one of the kit's designs; choose another name")

    def metadata(self, identities: list[str]) -> list[str]:
        """One dispatch's metadata per job the agent should get (auto: one job, no dispatch)."""
        if self.dispatch == "participant":
            return [json.dumps({"participant_identity": i}) for i in identities]
        return [""]


@contextlib.contextmanager
def local_agent(arch: str, config: RunConfig, workers: dict[str, list[subprocess.Popen]] | None = None):
    """`python -m kit agent --arch <arch>` as child processes (`config.workers` of them, each on its
    own cores with `--cpus-per-worker`), registered before the run goes on; stopped (SIGTERM: they
    drain, then exit) afterwards. Yields their AgentWorkers; their output goes to the terminal. While
    they run their processes are `workers[arch]`: the sampler measures their trees as the design's cost."""
    # every inference setting of the run (kit/config.py: to_args), so the worker's idle job processes
    # load the very model the jobs use, pinned to the worker's cores
    cores = fleet_cores(config.workers, config.cpus_per_worker)
    pinned = replace(config, cpus=config.cpus_per_worker) if config.cpus_per_worker else config
    cmd = [sys.executable, "-m", "kit", "agent", "--arch", arch, *pinned.to_args()]
    n = len(cores)
    with contextlib.ExitStack() as stack:
        fleet = [stack.enter_context(AgentWorker(cmd, f"the {arch} agent worker" + (f" {i + 1}/{n}" if n > 1 else ""), cores=c))
                 for i, c in enumerate(cores)]  # fmt: skip
        if workers is not None:
            workers[arch] = [w.proc for w in fleet]
        if n > 1:  # a fleet reports its own load: dispatch once each has sent a status of its own and none is full
            settled, deadline = time.monotonic() + FLEET_SETTLE_S, time.monotonic() + AGENT_REGISTER_TIMEOUT_S
            while (time.monotonic() < settled or any(w.full for w in fleet)) and time.monotonic() < deadline:
                time.sleep(0.2)
        try:
            yield fleet
        finally:
            if workers is not None:
                workers.pop(arch, None)


@contextlib.contextmanager
def your_agent(agent: ExternalAgent, config: RunConfig, env: dict[str, str], logs: Path, secret: str):
    """Your agent worker (`--agent CMD`) as `config.workers` copies (`--workers K`), each pinned to its own
    cores with `--cpus-per-worker` (the shell, your worker and its job processes), each logging to
    `logs`/agent-<label>.log (copies 2..K: agent-<label>-<i>.log); registered before the run goes on,
    stopped after. Each reports the load your worker computes (livekit's default: the machine's CPU)."""
    cores = fleet_cores(config.workers, config.cpus_per_worker)
    n, base = len(cores), sanitize_suffix(agent.label) or "agent"
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(AgentWorker(agent.command, f"the agent {agent.command!r}" + (f" {i}/{n}" if n > 1 else ""),
                                               env=env, log=logs / (f"agent-{base}.log" if i == 1 else f"agent-{base}-{i}.log"),
                                               secret=secret, cores=c))
               for i, c in enumerate(cores, start=1)]  # fmt: skip


class AgentWorker:
    """An agent worker process started here: the kit's (`kit agent`) or yours (`--agent CMD`, run by
    the shell in its own process group, so the whole group is stopped). Its output (stdout and
    stderr) is echoed to the terminal, or with `log` written there (secrets redacted); the last
    lines are kept for error messages. Entering waits until it says it registered: LiveKit's
    Python and Node.js workers both log "registered worker" once the server accepted them."""

    def __init__(self, cmd: list[str] | str, what: str, env: dict[str, str] | None = None, log: Path | None = None,
                 secret: str | None = None, cores: list[int] | None = None) -> None:  # fmt: skip
        self.cmd, self.what, self.env, self.log, self.secret = cmd, what, env, log, secret
        self.cores = cores  # pinned there from its first instruction (a fleet's worker), else where this process runs
        self.group = isinstance(cmd, str)  # yours: a shell command, in a process group of its own
        self.tail: deque[str] = deque(maxlen=4)
        self.full = False  # it said it is at full capacity (and not since that it is below it)
        self.proc: subprocess.Popen
        self.pump: threading.Thread

    def __enter__(self) -> AgentWorker:
        self.proc = subprocess.Popen(self.cmd, shell=self.group, start_new_session=self.group, env=self.env, text=True,
                                     errors="replace", stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT if self.group else None,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, self.cores)) if self.cores else None)  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        self.pump.start()
        try:
            self._wait_registered(lines)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def last_output(self) -> str:
        return " | ".join(_log_message(line) for line in self.tail if line.strip()) or "(no output)"

    def exited(self) -> str | None:
        """Why the worker is gone (its exit code and last output), or None while it runs."""
        code = self.proc.poll()
        return None if code is None else f"{self.what} exited (exit code {code}); its last output: {self.last_output()}"

    def stop(self) -> None:
        if self.group:  # the shell may be gone while the agent still drains: wait for the group
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + AGENT_STOP_TIMEOUT_S
            while self._group_alive() and time.monotonic() < deadline:
                self.proc.poll()  # reap the shell, or its zombie keeps the group alive
                time.sleep(0.2)
            if self._group_alive():
                self._signal(signal.SIGKILL)
        elif self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(AGENT_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
        self.proc.wait()
        self.pump.join(5)  # to the end of its output

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return self.proc.poll() is None or _others_in_group(self.proc.pid)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.group:  # the shell's whole group: the agent, its job processes
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def _wait_registered(self, lines: queue.Queue) -> None:
        """A thread reads the output: a silent worker must not block the timeout."""
        deadline = time.monotonic() + AGENT_REGISTER_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise KitError(f"{self.what} exited before registering (exit code {self.proc.wait()}); "
                               f"its last output: {self.last_output()}")  # fmt: skip
            if REGISTERED.search(line):
                return
        raise KitError(f"{self.what} did not register with the server within {AGENT_REGISTER_TIMEOUT_S:.0f} s "
                       f"(no 'registered worker' in its output); its last output: {self.last_output()}")  # fmt: skip

    def _pump(self, lines: queue.Queue) -> None:
        out = open(self.log, "a", encoding="utf-8") if self.log else None
        try:
            for line in self.proc.stdout:
                line = redact(line, self.secret) if self.secret else line
                self.tail.append(line)
                self.full = bool(FULL.search(line)) or (self.full and not AVAILABLE.search(line))
                if out:
                    out.write(line)
                    out.flush()
                else:
                    print(line, end="", flush=True)
                lines.put(line)
        finally:
            if out:
                out.close()
            lines.put(None)


def _others_in_group(pgid: int) -> bool:
    """A process other than the (reaped) shell in the group: the agent it started, or its job processes."""
    for path in Path("/proc").glob("[0-9]*/stat"):
        stat = read_stat(str(path))
        if stat is not None and stat[1][0] != b"Z" and int(stat[1][2]) == pgid:  # fields: state, ppid, pgrp
            return True
    return False


# Both SDKs' words when a production worker's load (this MACHINE's CPU, averaged over 2.5 s) crosses its
# load_threshold (0.7) and back: while full, the server gives it no job and does not retry a dispatch.
FULL = re.compile(r"worker is at full capacity")
AVAILABLE = re.compile(r"worker is below capacity")
REGISTERED = re.compile(r"registered worker|: registered,")  # livekit-agents (Python, Node.js), and `kit agent`


def _log_message(line: str, limit: int = 240) -> str:
    """One output line for an error message: a JSON log record's level and message, else the line."""
    with contextlib.suppress(ValueError, AttributeError):
        rec = json.loads(line)
        line = f"{rec.get('level', '')} {rec.get('message') or rec.get('msg') or line}".strip()
    line = line.strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def stand_in_env(url: str) -> dict[str, str]:
    """What points an unmodified agent's STT clients at the run's STT service (docs/own-agent.md):
    LiveKit Inference (`inference.STT`, Python and Node) reads LIVEKIT_INFERENCE_URL; the OpenAI SDK
    under `openai.STT()` reads OPENAI_BASE_URL and needs some OPENAI_API_KEY; `deepgram.STT()` needs
    some DEEPGRAM_API_KEY; its base URL has no variable of the plugin's, so the agent passes one as
    base_url: DEEPGRAM_BASE_URL is set to the stand-in's (examples/python/dispatch_per_participant_agent.py).
    The token of LiveKit Inference is signed with the server's key (LIVEKIT_API_KEY/SECRET): agent_env
    leaves out LIVEKIT_INFERENCE_API_KEY/SECRET, which the client would prefer (even empty)."""
    return {STT_URL_ENV: url, "LIVEKIT_INFERENCE_URL": url, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": STAND_IN_KEY,
            "DEEPGRAM_API_KEY": STAND_IN_KEY, "DEEPGRAM_BASE_URL": url.rstrip("/") + "/listen"}  # fmt: skip


def agent_env(base: dict[str, str], url: str, creds) -> dict[str, str]:
    """An --agent's environment: `base` (the kit's own) without other Inference keys, the server's
    credentials, and the stand-in's variables (stand_in_env)."""
    env = {k: v for k, v in base.items() if k not in ("LIVEKIT_INFERENCE_API_KEY", "LIVEKIT_INFERENCE_API_SECRET")}
    return {**env, "LIVEKIT_URL": creds.url, "LIVEKIT_API_KEY": creds.api_key, "LIVEKIT_API_SECRET": creds.api_secret,
            **stand_in_env(url)}  # fmt: skip


def kill_tree(pid: int) -> int:
    """SIGKILL a process and every process under it at once, as a machine that dies; returns how many were under it."""
    import psutil

    victims = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(victims) - 1


def kill_busiest(worker_pids: list[int], events_dir: Path, arch: str) -> tuple[int, int, int]:
    """--kill-worker: SIGKILL the worker whose tree holds most of the design's jobs, and everything under it;
    returns its number (1..K), its pid and how many processes were under it."""
    number = 1 + busiest_worker(worker_pids, job_pids(events_dir, arch))
    pid = worker_pids[number - 1]
    return number, pid, kill_tree(pid)


def busiest_worker(worker_pids: list[int], job_pids: list[int]) -> int:
    """The index of the worker whose process tree holds most of these jobs (the first on a tie)."""
    import psutil

    def held(pid: int) -> int:
        with contextlib.suppress(psutil.Error):
            return len({p.pid for p in psutil.Process(pid).children(recursive=True)} & set(job_pids))
        return 0

    counts = [held(pid) for pid in worker_pids]
    return counts.index(max(counts))


def agent_pids(events_dir: Path, workers: dict[str, list[subprocess.Popen]], arch: str) -> list[int]:
    """What the sampler measures as the design's cost: the agent worker started here (its whole
    tree: main process, job processes), else the local job processes of the design."""
    procs = workers.get(arch)
    return [p.pid for p in procs] if procs else job_pids(events_dir, arch)


def job_pids(events_dir: Path, arch: str) -> list[int]:
    """The pids of this run's local job processes of the design being measured: a local job's event
    log is named <arch>-<job>-<pid>.jsonl in the run directory."""
    stems = (f.stem.rsplit("-", 1) for f in events_dir.glob(f"{arch}-*.jsonl"))
    return sorted({int(tail) for _, tail in stems if tail.isdigit()})
