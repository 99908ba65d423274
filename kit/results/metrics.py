"""Events -> pandas DataFrames: utterances, speakers, architectures (definitions in docs/method.md).

`utterances`: one row per (architecture, reference utterance), plus one row per insertion.
    arch, participant, utt (index in the scenario, -1 for insertions), kind ("reference" | "insertion" |
    "unreached": the run stopped, e.g. interrupted, less than 2 s after it ended, so it is not counted),
    start_s, end_s (ground truth, s since t0), ref_text, hyp_text (finals joined in order),
    n_finals, final_t (time of the last final), latency_s (final_t - end_s), premature (its last final
    came before end_s: counted, and left out of every latency percentile),
    vad_end_s (the VAD's end of speech behind the last final), vad_latency_s (final_t - vad_end_s),
    infer_s (STT wall time of the last final), floor_s (VAD silence threshold + infer_s),
    stt_cpu_s (STT CPU of all its finals), missed (no final matched), first_interim_s (a streaming
    STT, `--stt stream`: the first interim of the turn behind its first final, less start_s; NaN
    without interims).
`speakers`: one row per (architecture, participant): counts (premature among them), WER (NaN for a room without reference
    text, `"reference": false`), the attribution counts (kit/results/attribution.py), muted_s, muted_stt_audio_s and
    muted_finals (kit/results/mutes.py), latency percentiles, and cost:
    cpu_s (attributed CPU seconds over the room), stt_cpu_s, vad_infer_s (silero's own inference
    timer: wall time, inflated when threads contend), vad_inferences, pss_mb (equal share of the
    tree's peak PSS), own_process_pss_mb (multi-dispatch: the speaker's own job process),
    cpu_pct (% of one core).
Sizes: *_mb are MiB (2**20 bytes); PSS comes from /proc/<pid>/smaps_rollup (RSS where unreadable).
`architectures`: one row per architecture of a run: jobs and agent participants (console: as
planned, one agent participant per job; live: as the server listed them during the run),
processes (that started), transport_cpu_s (live: CPU of LiveKit's transport threads in the
agent's processes — Opus, jitter buffer, network; NaN in console mode), latency
    percentiles, WER, missed, insertions, errors, CPU, window_s (seconds the CPU was counted over),
    kit_cpu_s and kit_overhead_pct (the kit's own replay, event log and sampler, as a share of all
    the CPU of the run), peak RSS/PSS, cold_start_s (slowest job: submission to ready for its first frame, forkserver
    warm), complete.
Both `speakers` and `architectures` get dollars_cloud_per_speaker_hour and
dollars_selfhost_per_speaker_hour from kit/results/cost.py.

CPU is counted from t0 to the end of the run (the room's replay, steady state); start-up is
reported separately as cold start, and the resource sampler's own CPU is left out of the runner's.
Per speaker, in the single-job designs: its own STT CPU (measured per call) + a share of the rest
of the tree in proportion to its VAD inferences (the audio its pipelines processed). Not "+ its VAD
inference time": silero's timer is wall time, which under contention exceeds the CPU actually
used, so it cannot be added to CPU seconds. For multi-dispatch: its own
job process + an equal share of the rest (the worker process, forkserver).
With the STT in a shared service (`--stt service`, kit/stt/service.py), the service process is part
of the tree (stt_service_cpu_s, stt_service_pss_mb in `architectures`); each speaker's STT CPU is
the service's inference CPU for its requests, and in multi-dispatch it is added to the speaker's own
process (which no longer runs the model). A service the run did not start (`--stt service:URL`) is
not sampled: its reported inference CPU is added to the tree's CPU, its memory is not counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import pandas as pd

from kit.results import attribution, cost, fleet, mutes, network
from kit.results.resources import design_usage, read_resources
from kit.room import scenario as scenario_mod
from kit.room.scenario import Scenario
from kit.run.events import read_events
from kit.run.record import ArchRun, RunRecord

UNREACHED_MARGIN_S = 2.0  # an utterance ending this close to an interrupted run's stop is not counted

UTTERANCE_COLUMNS = [
    "arch", "participant", "utt", "kind", "start_s", "end_s", "ref_text", "hyp_text", "n_finals",
    "final_t", "latency_s", "vad_end_s", "vad_latency_s", "infer_s", "floor_s", "stt_cpu_s", "missed",
    "premature", "first_interim_s",
]  # fmt: skip

# --- text normalisation for WER: lowercase, numbers as spoken, punctuation stripped -----------------

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 10**12 in words, as a speaker says it ("one hundred twenty three")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return number_words(n // size) + " " + name + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def normalize(text: str) -> str:
    text = text.lower().replace("%", " percent")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"\d+", lambda m: " " + number_words(int(m.group())) + " ", text)
    text = re.sub(r"[^\w\s']|_", " ", text)  # punctuation out, apostrophes inside words kept
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over aligned lists of texts, after normalize(); NaN with no reference words."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    if not any(refs):
        return float("nan")
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


# --- matching finals to utterances ------------------------------------------------------------------


def utterances(
    scenario: Scenario, events: pd.DataFrame, vad_silence_s: float, archs: list[str] | None = None,
    interrupted: set[str] = frozenset(),
) -> pd.DataFrame:  # fmt: skip
    """Match each architecture's finals to the reference utterances (see module docstring).
    `archs`: the architectures of the run, in order (default: those with events); `interrupted`:
    those stopped by a signal, whose utterances after the stop are not counted."""
    archs = archs if archs is not None else list(dict.fromkeys(events["arch"]))
    finals = events[events["kind"] == "final"]
    interims = events[events["kind"] == "interim"]
    rows = []
    for arch in archs:
        ends = events.loc[(events["arch"] == arch) & (events["kind"] == "run_end"), "t"]
        stopped = float(ends.max()) if arch in interrupted and len(ends) else float("inf")
        mine = finals[finals["arch"] == arch]
        arch_rows = _match_arch(scenario, arch, mine, vad_silence_s, stopped)
        for row, first in zip(arch_rows, _first_interims(arch_rows, mine, interims[interims["arch"] == arch])):
            row["first_interim_s"] = first
        rows += arch_rows
    return pd.DataFrame(rows, columns=UTTERANCE_COLUMNS)


def _first_interims(rows: list[dict], finals: pd.DataFrame, interims: pd.DataFrame) -> list[float]:
    """Per row: its first interim's time less start_s. An interim belongs to the turn whose final has
    the same speech_start (both come from the stream's sample positions, so they are equal)."""
    out = []
    for row in rows:
        if not len(interims) or row["kind"] != "reference" or not row["n_finals"]:
            out.append(np.nan)
            continue
        mine = finals[(finals["participant"] == row["participant"]) & (finals["t"] <= row["final_t"])]
        starts = mine["speech_start"].dropna()
        his = interims[interims["participant"] == row["participant"]]
        same = his[np.isclose(his["speech_start"].to_numpy(float)[:, None], starts.to_numpy(float)[None, :], atol=1e-3).any(axis=1)]
        same = same[same["t"] >= row["start_s"]] if len(same) else same
        out.append(float(same["t"].min()) - row["start_s"] if len(same) else np.nan)
    return out


def _match_arch(scenario: Scenario, arch: str, finals: pd.DataFrame, vad_silence_s: float, stopped: float) -> list[dict]:
    refs = list(enumerate(scenario.utterances))
    matched: dict[int, list] = {i: [] for i, _ in refs}
    insertions = []
    finals = finals.sort_values("t")
    for f, best in zip(finals.itertuples(index=False), match_finals(scenario, finals)):
        (matched[best] if best >= 0 else insertions).append(f)
    rows = []
    for i, u in refs:
        fs = matched[i]
        last = fs[-1] if fs else None
        kind = "reference" if fs or u.end_s + UNREACHED_MARGIN_S <= stopped else "unreached"
        rows.append(_row(arch, u.participant, i, kind, u.start_s, u.end_s, u.text, fs, last, vad_silence_s))
    for f in insertions:
        rows.append(_row(arch, f.participant, -1, "insertion", np.nan, np.nan, "", [f], f, vad_silence_s))
    return rows


def match_finals(scenario: Scenario, finals: pd.DataFrame) -> list[int]:
    """The reference utterance of its own speaker each final belongs to (-1: none), in `finals`' order."""
    refs = list(enumerate(scenario.utterances))
    out = []
    for f in finals.itertuples(index=False):
        mine = [(i, u) for i, u in refs if u.participant == f.participant]
        best = _by_overlap(mine, f) if pd.notna(f.speech_end) else _by_arrival(mine, f.t)
        out.append(-1 if best is None else best)
    return out


def _by_overlap(refs, f) -> int | None:
    """The utterance the final's VAD span overlaps most (the kit's designs report their span)."""
    best, best_overlap = None, 0.0
    for i, u in refs:
        overlap = min(u.end_s, f.speech_end) - max(u.start_s, f.speech_start)
        if overlap > best_overlap:
            best, best_overlap = i, overlap
    return best


def _by_arrival(refs, t: float) -> int | None:
    """A final with no VAD span (your own agent, `kit live --agent`): the participant's utterance that
    ended last before it arrived, else the one under way (a turn split at a pause inside it)."""
    ended = [(u.end_s, i) for i, u in refs if u.end_s <= t]
    if ended:
        return max(ended)[1]
    started = [(u.start_s, i) for i, u in refs if u.start_s <= t]
    return max(started)[1] if started else None


def _row(arch, participant, utt, kind, start_s, end_s, ref_text, finals, last, vad_silence_s) -> dict:
    final_t = last.t if last is not None else np.nan
    vad_end = last.speech_end if last is not None else np.nan
    infer = last.infer_s if last is not None else np.nan
    return {
        "arch": arch, "participant": participant, "utt": utt, "kind": kind, "start_s": start_s, "end_s": end_s,
        "ref_text": ref_text, "hyp_text": " ".join(str(f.text) for f in finals), "n_finals": len(finals),
        "final_t": final_t, "latency_s": final_t - end_s, "vad_end_s": vad_end, "vad_latency_s": final_t - vad_end,
        "infer_s": infer, "floor_s": vad_silence_s + infer,
        "stt_cpu_s": float(sum(f.stt_cpu_s for f in finals if pd.notna(f.stt_cpu_s))),
        "missed": kind == "reference" and not finals,
        # its last final came before it ended (the rest of it went unheard, or into another turn): not a latency
        "premature": bool(kind == "reference" and final_t < end_s), "first_interim_s": np.nan,
    }  # fmt: skip


def speakers(utts: pd.DataFrame, participants: list[str] | None = None, archs: list[str] | None = None) -> pd.DataFrame:
    """One row per (arch, participant): utterances, matched, missed, insertions, finals, wer,
    latency p50/p95/p99/max (s), vad_latency_p50 (s), floor_p50 (s), first_interim_p50 (s, a streaming
    STT: speech start to the turn's first interim), transcript. With `participants` (the room's
    identities) every one of them has a row per arch (`archs`, default: those in `utts`), a silent one
    too: utterances, matched, missed, insertions and finals 0, WER and latencies NaN (nothing to
    measure), transcript empty."""
    rows = []
    groups = dict(tuple(utts.groupby(["arch", "participant"], sort=False)))
    keys = list(groups)
    if participants is not None:
        keys = [(arch, who) for arch in (archs if archs is not None else dict.fromkeys(utts["arch"])) for who in participants]
        keys += [k for k in groups if k not in keys]  # active_speaker's finals may name no room participant
    for arch, who in keys:
        g = groups.get((arch, who), utts.iloc[0:0])
        ref = g[g["kind"] == "reference"]
        rows.append({
            "arch": arch, "participant": who, "utterances": len(ref), "matched": int((~ref["missed"].astype(bool)).sum()),
            "missed": int(ref["missed"].astype(bool).sum()), "insertions": int((g["kind"] == "insertion").sum()),
            "finals": int(g["n_finals"].sum()), "wer": wer(list(ref["ref_text"]), list(ref["hyp_text"])),
            **_latency_summary(ref),
            "transcript": " ".join(t for t in g.sort_values("final_t")["hyp_text"] if t),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=SPEAKER_TABLE).astype({c: int for c in COUNT_COLUMNS})


COUNT_COLUMNS = ["utterances", "matched", "missed", "insertions", "finals", "premature"]
SPEAKER_TABLE = ["arch", "participant", "utterances", "matched", "missed", "insertions", "finals", "premature", "wer", "latency_p50",
                 "latency_p95", "latency_p99", "latency_max", "vad_latency_p50", "floor_p50", "first_interim_p50", "transcript"]  # fmt: skip


def _latency_summary(ref: pd.DataFrame) -> dict:
    """latency p50/p95/p99/max, vad_latency_p50 and floor_p50 (s) over reference utterance rows, and
    how many were premature: their latency is no measure of speed, so it is left out."""
    premature = ref["premature"].astype(bool)
    lat = ref.loc[~premature, "latency_s"].dropna()
    return {
        "premature": int(premature.sum()),
        "latency_p50": lat.quantile(0.5), "latency_p95": lat.quantile(0.95), "latency_p99": lat.quantile(0.99),
        "latency_max": lat.max(), "vad_latency_p50": ref["vad_latency_s"].median(), "floor_p50": ref["floor_s"].median(),
        "first_interim_p50": ref["first_interim_s"].median(),
    }  # fmt: skip


# --- cost: CPU and memory from the resource log ------------------------------------------------------


# --- one run -> the three tables -------------------------------------------------------------------


@dataclass
class Tables:
    utterances: pd.DataFrame
    speakers: pd.DataFrame
    architectures: pd.DataFrame

    def save(self, run_dir: Path) -> None:
        for name in ("utterances", "speakers", "architectures"):
            getattr(self, name).to_csv(Path(run_dir) / f"{name}.csv", index=False)


# The short headers of the printed and reported summaries (a column -> its header).
ARCH_COLUMNS = {
    "arch": "architecture", "jobs": "jobs", "processes": "procs", "agent_participants": "agents",
    "latency_p50": "lat p50 s", "latency_p95": "lat p95 s", "latency_max": "lat max s", "floor_p50": "floor s",
    "wer": "WER", "missed": "missed", "cpu_s": "CPU s", "cpu_pct": "CPU %core", "peak_pss_mb": "PSS MB",
    "cold_start_s": "cold s", "errors": "errors",
}  # fmt: skip
SPEAKER_COLUMNS = {
    "arch": "architecture", "participant": "speaker", "matched": "matched", "missed": "missed",
    "latency_p50": "lat p50 s", "latency_p95": "lat p95 s", "wer": "WER", "cpu_s": "CPU s",
    "stt_cpu_s": "STT CPU s", "vad_infer_s": "VAD infer s", "pss_mb": "PSS MB",
}  # fmt: skip


def compute(run_dir: Path, pricing: Path | str | None = None) -> Tables:
    """Everything measured in a run directory, as the three documented DataFrames, priced with
    `pricing` (a pricing CSV; default: the run's config, else data/pricing.csv)."""
    run_dir = Path(run_dir)
    record = RunRecord.load(run_dir)
    return tables(record, scenario_mod.load(record.scenario.path), read_events(run_dir), read_resources(run_dir), pricing,
                  service_log(run_dir, record))  # fmt: skip


def service_log(run_dir: Path, record: RunRecord) -> pd.DataFrame | None:
    """The per-request log of the run's own STT service (kit/stt/request_log.py); None without one."""
    from kit.stt.request_log import read_log

    name = (record.stt_service or {}).get("log")
    return read_log(Path(run_dir) / name) if name and (Path(run_dir) / name).is_file() else None


def tables(record: RunRecord, sc: Scenario, events: pd.DataFrame, resources: pd.DataFrame,
           pricing: Path | str | None = None, stt_log: pd.DataFrame | None = None) -> Tables:  # fmt: skip
    """The three tables of a run already read (what `compute` does once it has read the run directory);
    `stt_log`: its STT service's request log (`service_log`), which counts what production clients send."""
    config = record.run_config
    vad_silence = config.vad.min_silence_duration
    ran = [a for a, info in record.archs.items() if info.t0_mono is not None]
    interrupted = {a for a in ran if record.archs[a].interrupted}
    utts = utterances(sc, events, vad_silence, ran, interrupted)
    spk = speakers(utts, sc.identities, ran)
    spk_rows, arch_rows = [], []
    for arch in ran:
        info = record.archs[arch]
        used = design_usage(sc, events, resources, arch, info.t0_mono, _planned_jobs(info, events, arch), record.stt_service,
                          external=info.command is not None, stt_log=stt_log)  # fmt: skip
        part = spk[spk["arch"] == arch].merge(used.speakers, on="participant", how="right")
        part["arch"] = arch
        spk_rows.append(part)
        arch_rows.append(_arch_row(record, sc, events, utts, arch, info, used))
    speakers_df = pd.concat(spk_rows, ignore_index=True) if spk_rows else spk
    archs_df = pd.DataFrame(arch_rows)
    extras = _attribution_and_mutes(sc, events, utts, ran)
    speakers_df = speakers_df.merge(extras, on=["arch", "participant"], how="left")
    speakers_df, archs_df = fleet.add_workers(*network.add_uplink(speakers_df, archs_df, events), record, events, resources, utts, sc)
    if len(archs_df):
        archs_df = archs_df.merge(extras.groupby("arch", sort=False)[EXTRA_SUMS].sum(min_count=1).reset_index(), on="arch", how="left")
    for df in (speakers_df, archs_df) if len(archs_df) else (speakers_df,):  # counts; NaN with no reference text
        df[attribution.COUNTS] = df[attribution.COUNTS].astype("Int64") if sc.reference else np.nan
    if not sc.reference:  # a room without reference text: WER and attribution are not measured (NaN), never 0
        speakers_df["wer"] = archs_df["wer"] = np.nan
    if len(archs_df):
        prices = cost.load_pricing(pricing or config.pricing)
        # --stt-price for every design; else, for a production client (your agent, --stt inference), the
        # model it asked for, where the pricing file prices it (the kit's own Whisper clients are self-hosted)
        production = {a for a, info in record.archs.items() if info.command is not None or config.stt.kind == "inference"}
        items = config.stt_price or {r.arch: prices.stt_item_for(r.stt_api, r.stt_model) if r.arch in production else None
                                     for r in archs_df.itertuples()}  # fmt: skip
        cost.add_dollars(speakers_df, archs_df, prices, stt_item=items)
    return Tables(utts, speakers_df, archs_df)


EXTRA_SUMS = [*attribution.COUNTS, *mutes.COLUMNS[1:]]  # per design: summed over its speakers


def _attribution_and_mutes(sc: Scenario, events: pd.DataFrame, utts: pd.DataFrame, ran: list[str]) -> pd.DataFrame:
    """Per (arch, participant): the attribution counts and what the design did with muted time."""
    rows = []
    for a in ran:
        ev = events[events["arch"] == a]
        finals = ev[ev["kind"] == "final"]
        scores = attribution.scores(sc, finals.assign(utt=match_finals(sc, finals)), utts[utts["arch"] == a], a, normalize)
        rows.append(scores.merge(mutes.usage(sc, ev), on="participant"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=[*attribution.COLUMNS, *mutes.COLUMNS[1:]])


def console_vs_live(console: Tables, live: Tables) -> pd.DataFrame:
    """Each design, and each of its speakers, console against live on the same room: latency p50/p95,
    matched, missed, WER, CPU s and PSS of the agent side, agent participants; `latency_p50_added`
    is what the transport adds (live - console). participant "(all)" is the design's own row."""
    def side(t: Tables) -> pd.DataFrame:
        a = t.architectures.assign(participant="(all)", matched=t.architectures["utterances"] - t.architectures["missed"],
                                   pss_mb=t.architectures["peak_pss_mb"])  # fmt: skip
        a = a.reindex(columns=[*MODE_COLUMNS, "transport_cpu_s"])
        s = t.speakers.assign(agent_participants=np.nan, transport_cpu_s=np.nan).reindex(columns=[*MODE_COLUMNS, "transport_cpu_s"])
        return pd.concat([a, s], ignore_index=True)

    both = side(console).merge(side(live), on=["arch", "participant"], how="outer", suffixes=("_console", "_live"))
    both = both.drop(columns=["transport_cpu_s_console"])
    both["latency_p50_added"] = both["latency_p50_live"] - both["latency_p50_console"]
    return both


MODE_COLUMNS = ["arch", "participant", "latency_p50", "latency_p95", "matched", "missed", "wer", "cpu_s", "pss_mb", "agent_participants"]


def _planned_jobs(info: ArchRun, events: pd.DataFrame, arch: str) -> int:
    """Jobs the design planned (run.json), so that a job that failed to start still counts;
    records without it (older runs): the jobs that started."""
    if info.jobs:
        return int(info.jobs)
    return int(((events["arch"] == arch) & (events["kind"] == "job_start")).sum())


def compute_bound_latencies(release: list[float], work: list[float], end: list[float], cores: int) -> list[float]:
    """The best latencies the CPU allows: turn i is handed to the STT at release[i] and needs work[i]
    CPU seconds (its measured inference CPU); the turns are served in the order handed over by all
    `cores` at once, perfectly parallel and never idle while a turn waits. No schedule on these cores
    finishes the turns sooner. Latency = finish - end[i] (the turn's end of speech)."""
    finish = [0.0] * len(release)
    busy_until = -np.inf
    for i in sorted(range(len(release)), key=lambda i: release[i]):
        busy_until = finish[i] = max(release[i], busy_until) + work[i] / cores
    return [f - e for f, e in zip(finish, end)]


def _compute_bound_p95(ref: pd.DataFrame, cores: int) -> float:
    done = ref[~ref["missed"] & ref["vad_end_s"].notna()]
    bound = compute_bound_latencies(list(done["vad_end_s"]), list(done["stt_cpu_s"]), list(done["end_s"]), cores)
    return float(np.quantile(bound, 0.95)) if bound else np.nan


def cores_available(record: RunRecord) -> int:
    """The cores the run's processes could use: the pinned set, else the machine's."""
    return len(record.cores) if record.cores else int(record.machine.get("cpu_count") or 1)


def _arch_row(record, sc, events, utts, arch, info, cost) -> dict:
    ev = events[events["arch"] == arch]
    u = utts[utts["arch"] == arch]
    ref = u[u["kind"] == "reference"]
    lat = _latency_summary(ref)
    bound = _compute_bound_p95(ref, cores_available(record))
    rec = ev[ev["kind"] == "recognized"]
    jobs = ev[ev["kind"] == "job_start"]
    planned = _planned_jobs(info, ev, arch)
    return {
        "arch": arch, "run_id": record.run_id, "scenario": sc.name, "speakers": len(sc.participants),
        "jobs": planned, "processes": cost.tree_processes if info.command else jobs["pid"].nunique(),
        "agent_participants": planned if info.agent_participants is None else info.agent_participants,
        "utterances": len(ref), "missed": int(ref["missed"].sum()), "insertions": int((u["kind"] == "insertion").sum()),
        "wer": wer(list(ref["ref_text"]), list(ref["hyp_text"])),
        **lat, "cores_available": cores_available(record), "compute_bound_p95": bound,
        "p95_over_bound": lat["latency_p95"] / bound if bound > 0 else np.nan,
        "cpu_s": cost.tree_cpu, "cpu_s_per_speaker": cost.tree_cpu / len(sc.participants),
        "stt_audio_s": cost.speakers["stt_audio_s"].sum(min_count=1),
        "cpu_pct": 100 * cost.tree_cpu / cost.window_s, "window_s": cost.window_s,
        "kit_cpu_s": cost.kit_jobs_cpu + cost.sampler_cpu,
        "kit_overhead_pct": 100 * (cost.kit_jobs_cpu + cost.sampler_cpu) / (cost.tree_cpu + cost.sampler_cpu),
        "peak_rss_mb": cost.tree_rss, "peak_pss_mb": cost.tree_pss, "transport_cpu_s": cost.transport_cpu,
        # --stt service: the kit's STT service process, part of cpu_s and peak_pss_mb (NaN: no such process)
        "stt_service_cpu_s": cost.service_cpu, "stt_service_pss_mb": cost.service_pss,
        # what its STT clients spoke to the run's STT service, and the model they named (its log; "" if none)
        "stt_api": cost.stt_api, "stt_model": cost.stt_model,
        "stt_rtf": rec["infer_s"].sum() / rec["audio_s"].sum() if len(rec) else np.nan,
        # livekit-agents' own per-turn transcription_delay (session designs), beside vad_latency_p50
        "lk_transcription_delay_p50": float(ev.loc[ev["kind"] == "turn_metrics", "lk_transcription_delay_s"].median()),
        "cold_start_s": max((info.cold_start_s or {}).values(), default=np.nan),
        "errors": int((ev["kind"] == "error").sum()),
        "complete": bool(info.complete),
    }  # fmt: skip
