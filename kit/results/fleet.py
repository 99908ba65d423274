"""A fleet's share of the work (live, `--workers K`): which agent worker served each speaker, found
by walking each job process up its parents (resources.jsonl) to one of the design's worker pids.

Columns: per speaker `worker` (1..K: the worker whose process tree ran the job that transcribed
them; empty without --local-agents) and `served_from_s` (seconds from the room's start at which that
job saw them in the room: negative, it was there first; late, their words before it are missed
whatever the fleet does); per design `workers` (K) and `workers_used` (how many of them
served a job). With `--kill-worker AT_S` (the worker with most of the design's jobs is killed): per speaker and design
`speech_lost_s`, the seconds of reference speech missed that ended after the kill, for the killed
worker's speakers (0 for the others; empty for a speaker no job served); per design `worker_killed_s` and
`rejoined_after_s` (the first agent that joined the room after the kill, seconds after it: the
server dispatched again; empty: it did not).
"""

from __future__ import annotations

import pandas as pd

from kit.room.scenario import Scenario
from kit.run.record import RunRecord


def served_by(events: pd.DataFrame, resources: pd.DataFrame, worker_pids: list[int], plan: dict[str, list[str]]) -> dict[str, int]:
    """participant -> the 1-based index of the worker whose tree ran the job serving them. `plan`:
    each job's participants (the design's plan: a late joiner belongs to its job before it joins)."""
    # each process's parent when first sampled: a worker stopped at the end leaves its forkserver an orphan (ppid 1)
    parents = resources.drop_duplicates("pid", keep="first").set_index("pid")["ppid"].to_dict() if len(resources) else {}
    out = {}
    for ev in events[events["kind"] == "job_start"].itertuples(index=False):
        pid, seen = int(ev.pid), set()
        while pid not in worker_pids and pid in parents and pid not in seen:
            seen.add(pid)
            pid = int(parents[pid])
        for participant in plan.get(ev.job, []) if pid in worker_pids else []:  # the job's first run (--redispatch: not its second)
            out.setdefault(participant, worker_pids.index(pid) + 1)
    return out


def speech_lost(utts: pd.DataFrame, killed_s: float) -> pd.Series:
    """Per participant: seconds of reference speech missed that ended after the kill."""
    lost = utts[(utts["kind"] == "reference") & utts["missed"].astype(bool) & (utts["end_s"] > killed_s)]
    return (lost["end_s"] - lost["start_s"]).groupby(lost["participant"]).sum()


def add_workers(speakers: pd.DataFrame, architectures: pd.DataFrame, record: RunRecord, events: pd.DataFrame,
                resources: pd.DataFrame, utts: pd.DataFrame, sc: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Both tables with the columns above."""
    from kit import architectures as designs

    rows, per_arch = [], []
    for arch, info in record.archs.items():
        if not info.worker_pids or arch not in designs.NAMES:
            continue
        plan = {req.job: [req.participant] if req.participant else sc.identities for req in designs.get(arch).plan(sc)}
        served = served_by(events[events["arch"] == arch], resources, info.worker_pids, plan)
        killed = info.worker_killed_s is not None
        lost = speech_lost(utts[utts["arch"] == arch], info.worker_killed_s) if killed else pd.Series(dtype=float)
        lost = lost[[p for p in lost.index if served.get(p) == info.killed_worker]]  # the killed worker's speakers
        joined = events[(events["arch"] == arch) & (events["kind"] == "participant_joined")].groupby("participant")["t"].min()
        rows += [{"arch": arch, "participant": p, "worker": served.get(p), "served_from_s": joined.get(p) if p in served else None,
                  "speech_lost_s": float(lost.get(p, 0.0)) if killed and p in served else None}
                 for p in speakers.loc[speakers["arch"] == arch, "participant"]]  # fmt: skip
        per_arch.append({"arch": arch, "workers": len(info.worker_pids), "workers_used": len(set(served.values())),
                         "killed_worker": info.killed_worker, "worker_killed_s": info.worker_killed_s, "speech_lost_s": float(lost.sum()) if killed else None,
                         "rejoined_after_s": (info.rejoined_after_s or [None])[0]})  # fmt: skip
    extra = pd.DataFrame(rows, columns=["arch", "participant", "worker", "served_from_s", "speech_lost_s"]).astype({"worker": "Int64"})
    speakers = speakers.merge(extra, on=["arch", "participant"], how="left")
    if len(architectures):
        architectures = architectures.merge(pd.DataFrame(per_arch, columns=ARCH_COLUMNS), on="arch", how="left")
    return speakers, architectures


ARCH_COLUMNS = ["arch", "workers", "workers_used", "killed_worker", "worker_killed_s", "speech_lost_s", "rejoined_after_s"]
