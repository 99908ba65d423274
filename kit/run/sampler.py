"""The resource sampler: CPU and memory of the processes a design runs in, into resources.jsonl.

Console runs sample this process and all its descendants (the AgentServer, its forkserver and job
processes). Live runs sample the agent side only (`roots`: the agent worker's process tree, or the
job processes found through their event logs): the kit's publishers and listener are the room's
clients, never the design's cost.

Rows: mono (time.monotonic()), arch, pid, ppid, name, cpu_s (user+system so far), rss_mb, pss_mb
(every PSS_EVERY samples, empty in between), threads (live only, every sample: name -> CPU s of
the process's native threads, to tell WebRTC's threads from inference); the sampler's own
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

SAMPLE_INTERVAL_S = 1.0  # one /proc/<pid>/stat read per process per second: CPU, RSS, parent, name
TREE_EVERY = 5  # walk the process trees every 5th sample (5 s) ...
PSS_EVERY = 30  # ... and PSS every 30th and at each mark (smaps_rollup: ~10 ms for a process with a model)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ResourceSampler(threading.Thread):
    """Samples a set of process trees every SAMPLE_INTERVAL_S into `path` (appending).

    `roots`: a callable given the design being measured and returning the pids whose trees are
    sampled; None = this process's tree.
    `arch` is set by the run to the design being measured; each row carries it. `mark()` takes a
    sample now (the run calls it at t0 and at the end, so CPU windows start and end on a sample).
    """

    def __init__(self, path: Path, roots: Callable[[str], list[int]] | None = None) -> None:
        super().__init__(name="resource-sampler", daemon=True)
        self.path = path
        self.arch = ""
        self._roots = roots
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._pids: list[int] = []
        self._count = 0
        self._rewalk = False
        self._file = None
        self._lock = threading.Lock()

    def run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as self._file:
            while not self._stop_event.is_set():
                self._write()
                self._wake.wait(SAMPLE_INTERVAL_S)
                self._wake.clear()
            self._write()  # the last sample, at stop

    def mark(self) -> None:
        """Walk the trees and sample as soon as possible (e.g. just before t0, when every job
        process has started), instead of at the next tick."""
        self._rewalk = True
        self._wake.set()

    def sample_now(self) -> None:
        """Write a sample from the calling thread, now (e.g. as a design's room ends, so the CPU
        window ends on a sample of every process still running, such as an STT service)."""
        if self._file is not None and not self._file.closed:
            self._write()

    def _write(self) -> None:
        with self._lock:
            self._file.write("".join(json.dumps(row) + "\n" for row in self.sample()))
            self._file.flush()

    def sample(self) -> list[dict]:
        """One row per process: CPU, RSS, parent and name from one /proc/<pid>/stat read; the trees
        walked every TREE_EVERY samples and PSS read every PSS_EVERY (the costly parts)."""
        now = time.monotonic()
        detailed = self._rewalk or self._count % PSS_EVERY == 0
        if self._rewalk or self._count % TREE_EVERY == 0 or (self._roots and not self._pids):
            self._rewalk = False
            self._pids = self._walk()
        self._count += 1
        rows = []
        for pid in self._pids:
            stat = proc_stat(pid)
            if stat is None:
                continue
            name, ppid, cpu_s, rss = stat
            rows.append({"mono": now, "arch": self.arch, "pid": pid, "ppid": ppid, "name": name, "cpu_s": cpu_s,
                         "rss_mb": rss / 2**20, "pss_mb": pss_bytes(pid, rss) / 2**20 if detailed else None})  # fmt: skip
            if self._roots:  # live: a job process exits as its participant leaves, so every sample counts
                rows[-1]["threads"] = thread_cpu(pid)
        if self._roots is None and rows:
            rows[0]["sampler_cpu_s"] = self._own_cpu()
        return rows

    def _walk(self) -> list[int]:
        roots = [os.getpid()] if self._roots is None else self._roots(self.arch)
        pids: list[int] = []
        for pid in roots:
            pids += process_tree(pid)
        return list(dict.fromkeys(pids))

    def _own_cpu(self) -> float:
        """The sampler thread's CPU so far, whichever thread takes the sample (sample_now)."""
        if threading.get_ident() == self.ident:
            return time.thread_time()
        stat = read_stat(f"/proc/self/task/{self.native_id}/stat")
        return stat_cpu_s(stat[1]) if stat is not None else 0.0

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()
        self.join()


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/<pid>/task/*/children (a few reads per process, not a
    scan of every process of the machine); psutil's scan where the kernel lacks that file."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        try:
            root = psutil.Process(pid)
            return [pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue  # gone
        tree.append(p)
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                continue
    return tree


def read_stat(path: str) -> tuple[str, list[bytes]] | None:
    """A /proc .../stat line: (name, the fields after it; CPU ticks at [11] and [12]); None if gone."""
    try:
        with open(path, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace"), stat[stat.rindex(b")") + 2 :].split()


def stat_cpu_s(fields: list[bytes]) -> float:
    """User + system CPU seconds of a stat line's fields."""
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_stat(pid: int) -> tuple[str, int, float, int] | None:
    """(name, parent pid, CPU seconds so far (user + system), RSS bytes) from /proc/<pid>/stat;
    None once the process is gone."""
    stat = read_stat(f"/proc/{pid}/stat")
    if stat is None or stat[1][0] == b"Z":  # gone, or a zombie: exited, not yet reaped
        return None
    name, fields = stat
    return name, int(fields[1]), stat_cpu_s(fields), int(fields[21]) * PAGE_SIZE


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
        stat = read_stat(f"/proc/{pid}/task/{tid}/stat")
        if stat is not None:
            out[stat[0]] = out.get(stat[0], 0.0) + stat_cpu_s(stat[1])
    return out
