"""CPU and memory from a run's resource log (kit/run/sampler.py): per process, per design's process tree,
and attributed to each speaker (definitions in docs/method.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.room.scenario import Scenario
from kit.stt.request_log import STREAM_ROWS, served_names


def read_resources(run_dir: Path) -> pd.DataFrame:
    """resources.jsonl as a DataFrame: mono, arch, pid, ppid, name, cpu_s, rss_mb, pss_mb, sampler_cpu_s,
    threads (live: thread name -> CPU s so far; kit/run/sampler.py) (cpu_s has the sampler's own CPU taken out)."""
    path = Path(run_dir) / "resources.jsonl"
    cols = ["mono", "arch", "pid", "ppid", "name", "cpu_s", "rss_mb", "pss_mb", "sampler_cpu_s", "threads"]
    if not path.exists():
        return pd.DataFrame(columns=cols)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a sampler stopped mid-line
    df = pd.DataFrame(rows, columns=cols)
    df["cpu_s"] = df["cpu_s"] - df["sampler_cpu_s"].fillna(0.0)
    return df


def process_costs(resources: pd.DataFrame, events: pd.DataFrame, arch: str, t0: float) -> pd.DataFrame:
    """One row per process of the tree during one architecture's run (t0 to run_end):
    pid, job (or None: runner, forkserver, …), cpu_s over the window, peak_rss_mb, peak_pss_mb."""
    ev = events[events["arch"] == arch]
    end = t0 + float(ev.loc[ev["kind"] == "run_end", "t"].max())
    res = resources[resources["arch"] == arch]
    before, during = res[res["mono"] <= t0], res[(res["mono"] > t0) & (res["mono"] <= end)]
    jobs = ev[ev["kind"] == "job_start"].set_index("pid")["job"].to_dict()
    final_cpu = ev[ev["kind"] == "job_end"].set_index("pid")["proc_cpu_s"].to_dict()
    rows = []
    for pid, g in during.groupby("pid"):
        base = before.loc[before["pid"] == pid, "cpu_s"]
        start = float(base.iloc[-1]) if len(base) else 0.0
        last = max(float(g["cpu_s"].iloc[-1]), float(final_cpu.get(pid, 0.0)))
        rows.append({"pid": pid, "job": jobs.get(pid), "cpu_s": last - start,
                     "peak_rss_mb": g["rss_mb"].max(), "peak_pss_mb": g["pss_mb"].max()})  # fmt: skip
    return pd.DataFrame(rows, columns=["pid", "job", "cpu_s", "peak_rss_mb", "peak_pss_mb"])


def tree_peak(resources: pd.DataFrame, arch: str, t0: float, end: float, col: str) -> float:
    res = resources[(resources["arch"] == arch) & (resources["mono"] > t0) & (resources["mono"] <= end)]
    return float(res.groupby("mono")[col].sum(min_count=1).max()) if len(res) else float("nan")


@dataclass
class DesignUsage:
    """What one design's run used: its process tree over the run's window, and per speaker."""

    speakers: pd.DataFrame  # participant, cpu_s, own_process_pss_mb, stt_cpu_s, vad_infer_s, vad_inferences, stt_audio_s, lk_stt_audio_s, pss_mb, cpu_pct
    tree_cpu: float  # CPU s of the tree (NaN: not measured, e.g. live with the agents elsewhere)
    tree_pss: float  # peak PSS MB of the tree
    tree_rss: float  # peak RSS MB of the tree
    window_s: float  # the seconds the CPU was counted over
    kit_jobs_cpu: float  # the kit's own CPU s in the job processes (replay, event log)
    sampler_cpu: float  # the sampler's own CPU s
    tree_processes: int  # processes in the tree (the STT service not counted)
    service_cpu: float  # the run's STT service process (NaN: none)
    service_pss: float
    transport_cpu: float  # live: LiveKit's transport threads
    stt_api: str  # the APIs the design's STT clients spoke to the run's service (its log), e.g. "inference"; "" if none
    stt_model: str  # the model names they asked it for; "" if none


def _served_requests(stt_log, ev, sc: Scenario, t0: float, end: float):
    """The service-log rows of what a production client sent in this design's window (its streams, or
    its transcription requests), each with its participant (None when the design reported its own STT
    calls, or nothing could be attributed)."""
    if stt_log is None or (ev["kind"].isin(["recognized", "stt_sent"])).any():
        return None
    sent = stt_log[(stt_log["status"] == 200) & (stt_log["response_format"].isin(STREAM_ROWS) | (stt_log["api"] == "openai"))]
    # every row of a stream with a row in the window: a session kept open until its room is deleted
    # (close_on_disconnect=False) logs its stream's total after the window
    rows = sent[sent["request_id"].isin(sent.loc[sent["mono"].between(t0, end), "request_id"])]
    rows = attribute_streams(rows, sc, t0)
    rows = rows[rows["participant"].notna()]
    return rows if len(rows) else None


def attribute_streams(rows: pd.DataFrame, sc: Scenario, t0: float) -> pd.DataFrame:
    """Each stream's participant (its request_id's rows; a transcription request is a stream of one
    turn). The kit's own clients name it (X-Kit-Participant); an unmodified agent's do not, so its
    streams are attributed by the audio itself: the turns in a stream (the service's VAD turns,
    audio_from..audio_to; a posted turn, the audio_s before it arrived), in the run's clock, against
    each participant's speech in the scenario, to whoever's speech they overlap most. A stream with no
    turn (a silent participant's) goes to the one participant left without a stream, if exactly one
    is; else it stays unattributed (NaN)."""
    rows = rows.copy()
    named = rows.groupby("request_id")["participant"].first()
    unnamed = named[named.isna()].index
    if not len(unnamed):
        return rows
    speech = {p: [(u.start_s, u.end_s) for u in sc.utterances if u.participant == p] for p in sc.identities}
    turns = rows[rows["request_id"].isin(unnamed) & ~rows["response_format"].isin(["stream-interim", "stream-end"])].copy()
    posted = turns["audio_from"].isna()  # a transcription request: its turn ended about when it arrived
    turns.loc[posted, "audio_from"] = turns.loc[posted, "mono"] - turns.loc[posted, "audio_s"]
    turns.loc[posted, "audio_to"] = turns.loc[posted, "mono"]
    turns = turns.dropna(subset=["audio_from"])
    owner = {}
    for stream, its in turns.groupby("request_id"):
        spans = list(zip(its["audio_from"] - t0, its["audio_to"] - t0))
        overlap = {p: sum(max(0.0, min(b, e) - max(a, s)) for a, b in spans for s, e in said) for p, said in speech.items()}
        best = max(overlap, key=overlap.get)
        if overlap[best] > 0:
            owner[stream] = best
    left = [p for p in sc.identities if p not in set(named.dropna()) | set(owner.values())]
    silent = [s for s in unnamed if s not in owner]
    if len(left) == 1 and len(silent) == 1:
        owner[silent[0]] = left[0]
    unnamed_rows = rows["participant"].isna()
    rows.loc[unnamed_rows, "participant"] = rows.loc[unnamed_rows, "request_id"].map(owner)
    return rows


def design_usage(sc: Scenario, events, resources, arch: str, t0: float, planned_jobs: int,
               stt_service: dict | None = None, external: bool = False, stt_log=None) -> DesignUsage:  # fmt: skip
    """`stt_service` (run.json): the STT ran in a shared service (`--stt service[:URL]`). The kit's own
    service is a child of the run, so its CPU is in the tree; a service the run did not start is not
    sampled, and its inference CPU as it reports it (`stt_cpu_s`) is added to the tree's.
    `external`: your own agent (`kit live --agent`), which reports nothing: its tree's CPU is shared
    evenly between the speakers, and its STT and VAD columns are NaN (not measured), never 0.
    `stt_log` (the service's request log): a production client (`--stt inference`, or your unmodified
    agent) reports no STT call of its own, so each speaker's STT CPU and the audio its stream sent are
    the service's counts of the streams attributed to the speaker (`attribute_streams`) within this
    design's window."""
    ev = events[events["arch"] == arch]
    procs = process_costs(resources, events, arch, t0)
    end = t0 + float(ev.loc[ev["kind"] == "run_end", "t"].max())
    n = len(sc.participants)
    tree_cpu = float(procs["cpu_s"].sum()) if len(procs) else np.nan  # live, agent elsewhere: not measured
    tree_pss = tree_peak(resources, arch, t0, end, "pss_mb")
    # only the room's participants: active_speaker's one STT serves whoever is selected
    stt = ev[ev["kind"] == "recognized"].groupby("participant")["stt_cpu_s"].sum().reindex(sc.identities, fill_value=0.0)
    served = _served_requests(stt_log, ev, sc, t0, end)
    if served is not None:
        stt = served.groupby("participant")["cpu_s"].sum().reindex(sc.identities, fill_value=0.0)
    vad = ev[ev["kind"] == "vad_metrics"].groupby("participant")[["vad_infer_s", "vad_inferences"]].sum()
    vad = vad.reindex(sc.identities, fill_value=0)
    weights = vad["vad_inferences"] / vad["vad_inferences"].sum() if vad["vad_inferences"].sum() else pd.Series(1 / n, index=sc.identities)
    # a job dispatched again (--redispatch) ran in two processes: its cost is both's
    per_job = procs.dropna(subset=["job"]).groupby("job").agg(cpu_s=("cpu_s", "sum"), peak_pss_mb=("peak_pss_mb", "max"))
    dispatched = ev[ev["kind"] == "participant_joined"].groupby("participant")["job"].first().to_dict()
    one_job_each = len(sc.participants) > 1 and planned_jobs == len(sc.participants)
    service_pid = (stt_service or {}).get("pid")
    service = procs[procs["pid"] == service_pid] if service_pid else procs.iloc[0:0]
    if stt_service and not stt_service.get("started_by_kit"):
        tree_cpu += float(stt.sum())
    # the STT outside the job processes: each speaker's inference is its own, wherever it ran
    remote_stt = stt if stt_service else pd.Series(0.0, index=sc.identities)
    rows = []
    if one_job_each:  # multi-dispatch: the speaker's own process (+ its inference in a service) + a share of the rest
        rest = tree_cpu - float(per_job["cpu_s"].sum()) - float(remote_stt.sum())
        for p in sc.identities:
            job = dispatched.get(p)
            own = per_job.loc[job] if job in per_job.index else None
            rows.append({"participant": p,
                         "cpu_s": (float(own["cpu_s"]) if own is not None else 0.0) + float(remote_stt[p]) + rest / n,
                         "own_process_pss_mb": float(own["peak_pss_mb"]) if own is not None else np.nan})  # fmt: skip
    else:
        rest = tree_cpu - float(stt.sum())
        for p in sc.identities:
            rows.append({"participant": p, "cpu_s": float(stt.get(p, 0.0)) + rest * float(weights[p]),
                         "own_process_pss_mb": np.nan})  # fmt: skip
    spk = pd.DataFrame(rows)
    spk["stt_cpu_s"] = [float(stt.get(p, 0.0)) for p in spk["participant"]]
    spk["vad_infer_s"] = [float(vad.loc[p, "vad_infer_s"]) for p in spk["participant"]]
    spk["vad_inferences"] = [int(vad.loc[p, "vad_inferences"]) for p in spk["participant"]]
    # the audio each speaker's STT was sent: its VAD turns (VAD-gated), or everything it streamed (--stt stream)
    sent = ev[ev["kind"] == "recognized"].groupby("participant")["audio_s"].sum()
    streamed = ev[ev["kind"] == "stt_sent"].groupby("participant")["audio_s"].sum()
    sent = pd.concat([sent.drop(streamed.index, errors="ignore"), streamed])
    if served is not None:
        whole = served[~served["response_format"].isin(["stream-interim", "stream-final"])]  # stream totals, posted turns
        sent = whole.groupby("participant")["audio_s"].sum()
    spk["stt_audio_s"] = [float(sent.get(p, 0.0)) for p in spk["participant"]]
    # livekit-agents' own count of the STT audio (session designs; NaN where no session counted it)
    lk = ev[ev["kind"] == "lk_stt_usage"].groupby("participant")["audio_s"].sum()
    spk["lk_stt_audio_s"] = [float(lk[p]) if p in lk.index else np.nan for p in spk["participant"]]
    if external:  # what it does inside is not seen; what its STT clients sent the run's service is counted
        spk[["vad_infer_s", "vad_inferences"] + ([] if served is not None else ["stt_cpu_s", "stt_audio_s"])] = np.nan
    spk["pss_mb"] = tree_pss / n
    spk["cpu_pct"] = 100 * spk["cpu_s"] / (end - t0)
    return DesignUsage(
        speakers=spk, tree_cpu=tree_cpu, tree_pss=tree_pss, window_s=end - t0,
        kit_jobs_cpu=float(ev.loc[ev["kind"] == "job_end", "kit_cpu_s"].fillna(0).sum()),
        sampler_cpu=sampler_cpu(resources, arch, t0, end), tree_rss=tree_peak(resources, arch, t0, end, "rss_mb"),
        tree_processes=int((procs["pid"] != service_pid).sum()),
        service_cpu=float(service["cpu_s"].sum()) if len(service) else np.nan,
        service_pss=float(service["peak_pss_mb"].max()) if len(service) else np.nan,
        transport_cpu=transport_cpu(resources, arch, t0, end),
        stt_api=served_names(stt_log, t0, end, "api"), stt_model=served_names(stt_log, t0, end, "model"),
    )  # fmt: skip


# Threads of the LiveKit client stack (livekit's Rust FFI runtime and libwebrtc) in an agent's process:
# decoding Opus, the jitter buffer, the network. Everything else (Python, CTranslate2, onnxruntime) is "python".
TRANSPORT_THREADS = ("tokio-rt-worker", "livekit", "rtc-", "network_thread", "worker_thread", "signaling_threa", "SyntheticAudio")


def transport_cpu(resources: pd.DataFrame, arch: str, t0: float, end: float) -> float:
    """CPU seconds the agent's processes spent in LiveKit's transport threads over the window (live
    runs; NaN where threads were not sampled, as in console mode, which has no transport): per
    process, from its last sample at or before t0 (none: it started inside the window) to its
    threads' highest readings inside it (threads exit at the end: their last reading is their peak)."""
    res = resources[(resources["arch"] == arch) & resources["threads"].notna()]
    before, during = res[res["mono"] <= t0], res[(res["mono"] > t0) & (res["mono"] <= end)]
    if during.empty:
        return np.nan
    total = 0.0
    for pid, rows in during.groupby("pid"):
        base = before.loc[before["pid"] == pid].sort_values("mono")["threads"]
        first = base.iloc[-1] if len(base) else {}
        peak: dict[str, float] = {}
        for threads in rows["threads"]:
            for name, cpu in threads.items():
                peak[name] = max(peak.get(name, 0.0), cpu)
        total += sum(cpu - first.get(name, 0.0) for name, cpu in peak.items() if name.startswith(TRANSPORT_THREADS))
    return total


def sampler_cpu(resources: pd.DataFrame, arch: str, t0: float, end: float) -> float:
    """CPU of the resource sampler over the window (left out of the runner's cpu_s)."""
    rows = resources[(resources["arch"] == arch) & resources["sampler_cpu_s"].notna()]
    rows = rows[(rows["mono"] > t0) & (rows["mono"] <= end)]["sampler_cpu_s"]
    return float(rows.iloc[-1] - rows.iloc[0]) if len(rows) > 1 else 0.0
