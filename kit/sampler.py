"""The resource sampler: CPU and memory of the processes a design runs in, into resources.jsonl.

Console runs sample this process and all its descendants (the AgentServer, its forkserver and job
processes). Live runs sample the agent side only (`roots`: the agent worker's process tree, or the
job processes found through their event logs): the kit's publishers and listener are the room's
clients, never the design's cost.

Rows: mono (time.monotonic()), arch, pid, ppid, name, cpu_s (user+system so far), rss_mb, pss_mb
(every PSS_EVERY samples, empty in between), threads (name -> CPU s of the process's native
threads, on the PSS samples; live: to tell WebRTC's threads from inference); the sampler's own
process row also has sampler_cpu_s (this thread's CPU so far), so that metrics can leave the kit's
overhead out.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.2
TREE_EVERY = 5  # walk the process tree every 5th sample (1 s) ...
PSS_EVERY = 25  # ... and read PSS (smaps_rollup, the costly part) every 25th (5 s): the kit's own CPU
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ResourceSampler(threading.Thread):
    """Samples a set of process trees every SAMPLE_INTERVAL_S into `path` (appending).

    `roots`: a callable given the design being measured and returning the pids whose trees are
    sampled; None = this process's tree.
    `arch` is set by the run to the design being measured; each row carries it.
    """

    def __init__(self, path: Path, roots: Callable[[str], list[int]] | None = None) -> None:
        super().__init__(name="resource-sampler", daemon=True)
        self.path = path
        self.arch = ""
        self._roots = roots
        self._stop_event = threading.Event()
        self._me = psutil.Process()
        self._procs: list[psutil.Process] = []
        self._count = 0

    def run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            while not self._stop_event.is_set():
                f.write("".join(json.dumps(row) + "\n" for row in self.sample()))
                f.flush()
                self._stop_event.wait(SAMPLE_INTERVAL_S)

    def sample(self) -> list[dict]:
        """One row per process: CPU and RSS (one /proc read each) every sample; the process trees
        walked every TREE_EVERY samples and PSS read every PSS_EVERY (the costly parts)."""
        now = time.monotonic()
        detailed = self._count % PSS_EVERY == 0
        if self._count % TREE_EVERY == 0 or (self._roots and not self._procs):
            self._procs = self._walk()
        self._count += 1
        rows = []
        for p in self._procs:
            try:
                with p.oneshot():
                    cpu = p.cpu_times()
                    rss = p.memory_info().rss
                    rows.append({
                        "mono": now, "arch": self.arch, "pid": p.pid, "ppid": p.ppid(), "name": p.name(),
                        "cpu_s": cpu.user + cpu.system, "rss_mb": rss / 2**20,
                        "pss_mb": pss_bytes(p.pid, rss) / 2**20 if detailed else None,
                    })  # fmt: skip
                if detailed and self._roots:
                    rows[-1]["threads"] = thread_cpu(p.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if self._roots is None and rows:
            rows[0]["sampler_cpu_s"] = time.thread_time()
        return rows

    def _walk(self) -> list[psutil.Process]:
        if self._roots is None:
            return [self._me, *self._me.children(recursive=True)]
        procs = []
        for pid in self._roots(self.arch):
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return procs

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def pss_bytes(pid: int, rss: int) -> int:
    """PSS from /proc/<pid>/smaps_rollup (cheap, unlike a full smaps walk); RSS where unavailable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of a process's threads, summed per thread name (/proc/PID/task/*/stat)."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
        utime, stime = stat[stat.rindex(b")") + 2 :].split()[11:13]
        out[name] = out.get(name, 0.0) + (int(utime) + int(stime)) / CLOCK_TICKS
    return out
