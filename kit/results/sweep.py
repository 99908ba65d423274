"""Scaling: rooms of N = 4, 8, 16 … participants of one pattern, each design run on each.

Two patterns (`--pattern`): "all-talk", the worst case (`sweep_script`: every participant talks,
each with its own espeak-ng voice, at the same time as the others, staggered starts), and
"meeting" (kit/room/meeting.py: one main speaker at a time, a few people speak most, many never, short
backchannels and overlaps, late joiners). Rooms are cached under data/generated/.

`sweep.csv`: one row per (N, arch): pattern, participants (N, connected), speakers (those who
talk), stt_placement ("in-process", "service", "none" for a calibration STT), cpus (the cores the
run could use: --cpus pins them), latency p50/p95, compute_bound_p95 and p95_over_bound (the best
the CPU allows, kit.results.metrics.compute_bound_latencies), WER, missed, CPU seconds, cores busy, CPU per
speaker and per participant, peak RSS/PSS, processes, agent participants, dollars per
participant-hour (both ways), cold start, the run directory. `fits.csv`: per arch and resource
(cores, pss_mb), the least-squares line fixed + marginal * participants and its r². `capacity`:
per pattern, placement and arch, the largest N whose p95 latency stays under the threshold.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from kit.config import KitError, RunConfig
from kit.results import metrics
from kit.room import synth
from kit.room.bleed import Bleed
from kit.run import runner
from kit.run.record import RunRecord
from kit.run.skeleton import Interrupted, new_run_dir

GENERATED_DIR = synth.GENERATED_DIR
LATENCY_THRESHOLD_S = 1.5
VOICES = synth.VOICES
SENTENCES = [
    "The build is green again after the fix.", "I will review the pull request today.",
    "Our users asked for a darker theme.", "The meeting moved to three o'clock.",
    "Please send me the updated slides.", "The search page loads twice as fast now.",
    "We need two more tests for the parser.", "I talked to the design team this morning.",
    "The release notes are almost done.", "Can someone check the nightly report?",
    "The database upgrade went smoothly.", "I am blocked on the payment service.",
    "Let us ship the feature on Monday.", "The new laptop arrived yesterday.",
    "Support tickets went down this week.", "I will pair with Sam after lunch.",
]  # fmt: skip
PERIOD_S = 5.0  # one line every 5 s per speaker: each line is at most about 3 s long


def sweep_script(n: int, lines: int = 3) -> str:
    """The TOML script of the N-speaker room: every speaker talks concurrently, staggered starts."""
    out = [f'name = "sweep-{n}"', "sample_rate = 16000", "lead_in_s = 1.0", "tail_s = 2.0", ""]
    for i in range(n):
        speed = 160 + 10 * (i // len(VOICES))  # beyond 16 speakers, the same voices faster
        out += ["[[speakers]]", f'identity = "s{i + 1:02d}"', f'voice = "{VOICES[i % len(VOICES)]}"', f"speed = {speed}", ""]
    for j in range(lines):
        for i in range(n):
            at = 1.0 + j * PERIOD_S + (i * 0.73) % 2.5
            text = SENTENCES[(i * lines + j) % len(SENTENCES)]
            out += ["[[lines]]", f'speaker = "s{i + 1:02d}"', f'text = "{text}"', f"at_s = {at:.2f}", ""]
    return "\n".join(out)


def sweep_room(n: int, lines: int = 3, cache: Path = GENERATED_DIR) -> Path:
    """The scenario directory of the N-speaker room, synthesised once and cached."""
    if n < 1:
        raise KitError(f"the number of speakers must be at least 1, got {n}")
    return synth.cached_room(sweep_script(n, lines), f"sweep-{n}x{lines}", cache)


PATTERNS = ("all-talk", "meeting")


def pattern_room(pattern: str, n: int, lines: int = 3, bleed: Bleed | None = None, mutes: bool = False) -> Path:
    """The cached room of N participants: "all-talk" (every one talks at once, `lines` each) or
    "meeting" (kit/room/meeting.py: one main speaker at a time, most never speak); `bleed`: a meeting's
    microphones hear each other (kit/room/bleed.py); `mutes`: most of a meeting's silent participants are muted."""
    if pattern == "all-talk":
        if bleed is not None or mutes:
            raise KitError("bleed and mutes are for meeting rooms (--pattern meeting): in an all-talk room everyone speaks")
        return sweep_room(n, lines)
    if pattern == "meeting":
        from kit.room import meeting

        return meeting.meeting_room(n, bleed=bleed, mutes=mutes)
    raise KitError(f"unknown --pattern {pattern!r}: use one of {', '.join(PATTERNS)}")


def run_sweep(
    participants: list[int], config: RunConfig, pattern: str = "all-talk", lines: int = 3,
    threshold_s: float = LATENCY_THRESHOLD_S, progress_factory=None, bleed: Bleed | None = None, mutes: bool = False,
) -> tuple[Path, pd.DataFrame]:  # fmt: skip
    """Run every architecture of `config` on the pattern's room at each N participants (ascending);
    an architecture stops once it is clearly past the threshold (p95 over twice the threshold, or
    half its utterances missed)."""
    if pattern not in PATTERNS:
        raise KitError(f"unknown --pattern {pattern!r}: use one of {', '.join(PATTERNS)}")
    sweep_dir = new_run_dir(config.results_dir)
    rows, stopped = [], set()
    for n in sorted(set(participants)):
        room = pattern_room(pattern, n, lines, bleed, mutes)
        for arch in config.archs:
            if arch in stopped:
                continue
            cfg = dataclasses.replace(config, scenario=str(room), archs=(arch,), results_dir=sweep_dir / f"n{n:03d}")
            try:
                run_dir = runner.run(cfg, progress_factory=progress_factory)
            except KitError as e:  # e.g. the memory guard: this N does not fit; larger N will not either
                rows.append({"pattern": pattern, "participants": n, "arch": arch, "complete": False, "note": str(e),
                             "stt_placement": config.stt.placement})  # fmt: skip
                pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(sweep_dir / "sweep.csv", index=False)
                stopped.add(arch)
                continue
            except Interrupted as e:
                _record(rows, pattern, e.run_dir, sweep_dir)
                e.run_dir = sweep_dir
                raise
            row = _record(rows, pattern, run_dir, sweep_dir)
            if row["latency_p95"] > 2 * threshold_s or row["missed"] > row["utterances"] / 2:
                stopped.add(arch)
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    fits(table).to_csv(sweep_dir / "fits.csv", index=False)
    return sweep_dir, table


def _record(rows: list[dict], pattern: str, run_dir: Path, sweep_dir: Path) -> dict:
    """Tables of one run saved, its row added, sweep.csv rewritten: nothing lost if interrupted."""
    tables = metrics.compute(run_dir)
    tables.save(run_dir)
    if len(tables.architectures):  # an interrupted run may have stopped before the room started
        record = RunRecord.load(run_dir)
        rows.append(_row(pattern, tables, run_dir, record))
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(sweep_dir / "sweep.csv", index=False)
    return rows[-1] if rows else {}


SWEEP_COLUMNS = [
    "pattern", "participants", "speakers", "arch", "stt_placement", "cpus", "latency_p50", "latency_p95",
    "compute_bound_p95", "p95_over_bound", "wer", "utterances", "missed", "cpu_s", "cores",
    "cpu_s_per_speaker", "cpu_s_per_participant", "peak_rss_mb", "peak_pss_mb", "processes", "agent_participants",
    "dollars_cloud_per_speaker_hour", "dollars_selfhost_per_speaker_hour", "cold_start_s", "complete", "run_dir",
    "note",  # why an N was not run (e.g. it would not fit in memory)
]  # fmt: skip


def _row(pattern: str, tables: metrics.Tables, run_dir: Path, record: RunRecord) -> dict:
    a = tables.architectures.iloc[0]
    spk = tables.speakers
    talkers = int((spk["utterances"] > 0).sum())  # participants with at least one utterance
    return {
        "pattern": pattern, "participants": int(a["speakers"]), "speakers": talkers, "arch": a["arch"],
        "stt_placement": record.run_config.stt.placement, "cpus": metrics.cores_available(record),
        "latency_p50": a["latency_p50"], "latency_p95": a["latency_p95"],
        "compute_bound_p95": a["compute_bound_p95"], "p95_over_bound": a["p95_over_bound"],
        "wer": a["wer"], "utterances": a["utterances"], "missed": a["missed"], "cpu_s": a["cpu_s"],
        "cores": a["cpu_s"] / a["window_s"], "cpu_s_per_speaker": a["cpu_s"] / max(talkers, 1),
        "cpu_s_per_participant": a["cpu_s_per_speaker"],
        "peak_rss_mb": a["peak_rss_mb"], "peak_pss_mb": a["peak_pss_mb"], "processes": a["processes"],
        "agent_participants": a["agent_participants"],
        "dollars_cloud_per_speaker_hour": a["dollars_cloud_per_speaker_hour"],
        "dollars_selfhost_per_speaker_hour": a["dollars_selfhost_per_speaker_hour"],
        "cold_start_s": a["cold_start_s"], "complete": a["complete"], "run_dir": str(run_dir),
    }  # fmt: skip


def fit_line(n: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares y = fixed + marginal * n: (fixed, marginal, r²); one point gives no slope, none
    (every N refused or unmeasured) nothing at all."""
    if len(n) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(n) < 2 or np.ptp(n) == 0:
        return float(np.mean(y)), float("nan"), float("nan")
    marginal, fixed = np.polyfit(n, y, 1)
    residual = y - (fixed + marginal * n)
    total = np.sum((y - y.mean()) ** 2)
    return float(fixed), float(marginal), float(1 - np.sum(residual**2) / total) if total else 1.0


def fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per arch and resource (cores, peak_pss_mb): fixed + marginal per participant, r²."""
    rows = []
    for arch, g in table.groupby("arch", sort=False):
        for resource in ("cores", "peak_pss_mb"):
            measured = g.dropna(subset=[resource])  # N values that were refused have no numbers
            fixed, marginal, r2 = fit_line(measured["participants"].to_numpy(float), measured[resource].to_numpy(float))
            rows.append({"arch": arch, "resource": resource, "fixed": fixed, "marginal_per_participant": marginal, "r2": r2})
    return pd.DataFrame(rows, columns=["arch", "resource", "fixed", "marginal_per_participant", "r2"])


def capacity(table: pd.DataFrame, threshold_s: float = LATENCY_THRESHOLD_S) -> pd.DataFrame:
    """Per pattern, STT placement and arch: the largest N participants measured whose p95 latency
    stays under the threshold with nothing missed (0: none), and the cores it ran on."""
    rows = []
    keys = [k for k in ("pattern", "stt_placement") if k in table] + ["arch"]
    for key, g in table.groupby(keys, sort=False):
        ok = g[(g["latency_p95"] <= threshold_s) & (g["missed"] == 0)]
        best = ok.loc[ok["participants"].idxmax()] if len(ok) else None
        rows.append({**dict(zip(keys, key)), "max_participants": int(best["participants"]) if best is not None else 0,
                     "cpus": best["cpus"] if best is not None and "cpus" in best else np.nan,
                     "threshold_s": threshold_s})  # fmt: skip
    return pd.DataFrame(rows)


def reading(table: pd.DataFrame, fits_table: pd.DataFrame, threshold_s: float = LATENCY_THRESHOLD_S) -> str:
    """The sweep's conclusion in a few markdown sentences, computed from its tables."""
    cap = capacity(table, threshold_s)
    lines = []
    for c in cap.itertuples(index=False):
        cores = fits_table[(fits_table["arch"] == c.arch) & (fits_table["resource"] == "cores")].iloc[0]
        mem = fits_table[(fits_table["arch"] == c.arch) & (fits_table["resource"] == "peak_pss_mb")].iloc[0]
        tested = int(table[table["arch"] == c.arch]["participants"].max())
        held = f"held p95 ≤ {threshold_s:g} s up to **{c.max_participants}** participants" + (
            " (the largest N tried)" if c.max_participants == tested else "")
        marginal = "" if pd.isna(cores["marginal_per_participant"]) else (
            f"; each participant adds {cores['marginal_per_participant']:.3f} cores and "
            f"{mem['marginal_per_participant']:.0f} MB on top of {cores['fixed']:.3f} cores and {mem['fixed']:.0f} MB fixed"
        )  # fmt: skip
        lines.append(f"- **{c.arch}** {held}{marginal}.")
        bound = table[(table["arch"] == c.arch) & table["p95_over_bound"].notna()] if "p95_over_bound" in table else []
        if len(bound):
            lines[-1] += (f" Its p95 was {bound['p95_over_bound'].min():.2f}–{bound['p95_over_bound'].max():.2f}× "
                          f"the compute bound.")  # fmt: skip
    if len(cap) and cap["max_participants"].max() > 0:
        best = cap.loc[cap["max_participants"].idxmax()]
        cpus = best["cpus"] if pd.notna(best.get("cpus", np.nan)) else (os.cpu_count() or 1)
        lines.append(f"\nOn {cpus:g} core(s) the most participants within the threshold: **{best['arch']}**, "
                     f"{best['max_participants'] / cpus:.1f} participants per core.")  # fmt: skip
    return "\n".join(lines)
