"""Scaling: the same room shape at N = 1, 2, 4, 8 … concurrent speakers, each design run on each.

Rooms are generated from one template (`sweep_script`): every speaker has its own espeak-ng voice
and talks on its own track at the same time as the others (staggered starts), so N is the number
of concurrent speakers. Rooms are cached under data/generated/ (same N and lines -> same room).

`sweep.csv`: one row per (N, arch): latency p50/p95, WER, missed, CPU seconds, cores busy, CPU per
speaker, peak RSS/PSS, processes, agent participants, dollars per speaker-hour (both ways), cold
start, the run directory. `fits.csv`: per arch and resource (cores, pss_mb), the least-squares line
fixed + marginal * N and its r². `capacity`: the largest N whose p95 latency stays under the threshold.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from kit import metrics, runner, synth
from kit.config import KitError, RunConfig

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


def run_sweep(
    speakers: list[int], config: RunConfig, lines: int = 3, threshold_s: float = LATENCY_THRESHOLD_S,
    progress_factory=None,
) -> tuple[Path, pd.DataFrame]:  # fmt: skip
    """Run every architecture of `config` at each N (ascending); an architecture stops once it is
    clearly past the threshold (p95 over twice the threshold, or half its utterances missed)."""
    sweep_dir = runner.new_run_dir(config.results_dir)
    rows, stopped = [], set()
    for n in sorted(set(speakers)):
        room = sweep_room(n, lines)
        for arch in config.archs:
            if arch in stopped:
                continue
            cfg = dataclasses.replace(config, scenario=str(room), archs=(arch,), results_dir=sweep_dir / f"n{n:03d}")
            try:
                run_dir = runner.run(cfg, progress_factory=progress_factory)
            except KitError as e:  # e.g. the memory guard: this N does not fit; larger N will not either
                rows.append({"speakers": n, "arch": arch, "complete": False, "note": str(e)})
                pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(sweep_dir / "sweep.csv", index=False)
                stopped.add(arch)
                continue
            except runner.Interrupted as e:
                _record(rows, n, e.run_dir, sweep_dir)
                e.run_dir = sweep_dir
                raise
            row = _record(rows, n, run_dir, sweep_dir)
            if row["latency_p95"] > 2 * threshold_s or row["missed"] > row["utterances"] / 2:
                stopped.add(arch)
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    fits(table).to_csv(sweep_dir / "fits.csv", index=False)
    return sweep_dir, table


def _record(rows: list[dict], n: int, run_dir: Path, sweep_dir: Path) -> dict:
    """Tables of one run saved, its row added, sweep.csv rewritten: nothing lost if interrupted."""
    tables = metrics.compute(run_dir)
    tables.save(run_dir)
    if len(tables.architectures):  # an interrupted run may have stopped before the room started
        rows.append(_row(n, tables.architectures.iloc[0], run_dir))
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(sweep_dir / "sweep.csv", index=False)
    return rows[-1] if rows else {}


SWEEP_COLUMNS = [
    "speakers", "arch", "latency_p50", "latency_p95", "wer", "utterances", "missed", "cpu_s", "cores",
    "cpu_s_per_speaker", "peak_rss_mb", "peak_pss_mb", "processes", "agent_participants",
    "dollars_cloud_per_speaker_hour", "dollars_selfhost_per_speaker_hour", "cold_start_s", "complete", "run_dir",
    "note",  # why an N was not run (e.g. it would not fit in memory)
]  # fmt: skip


def _row(n: int, a: pd.Series, run_dir: Path) -> dict:
    return {
        "speakers": n, "arch": a["arch"], "latency_p50": a["latency_p50"], "latency_p95": a["latency_p95"],
        "wer": a["wer"], "utterances": a["utterances"], "missed": a["missed"], "cpu_s": a["cpu_s"],
        "cores": a["cpu_s"] / a["window_s"], "cpu_s_per_speaker": a["cpu_s_per_speaker"],
        "peak_rss_mb": a["peak_rss_mb"], "peak_pss_mb": a["peak_pss_mb"], "processes": a["processes"],
        "agent_participants": a["agent_participants"],
        "dollars_cloud_per_speaker_hour": a["dollars_cloud_per_speaker_hour"],
        "dollars_selfhost_per_speaker_hour": a["dollars_selfhost_per_speaker_hour"],
        "cold_start_s": a["cold_start_s"], "complete": a["complete"], "run_dir": str(run_dir),
    }  # fmt: skip


def fit_line(n: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares y = fixed + marginal * n: (fixed, marginal, r²); one point gives no slope."""
    if len(n) < 2 or np.ptp(n) == 0:
        return float(np.mean(y)), float("nan"), float("nan")
    marginal, fixed = np.polyfit(n, y, 1)
    residual = y - (fixed + marginal * n)
    total = np.sum((y - y.mean()) ** 2)
    return float(fixed), float(marginal), float(1 - np.sum(residual**2) / total) if total else 1.0


def fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per arch and resource (cores, peak_pss_mb): fixed + marginal per speaker, r²."""
    rows = []
    for arch, g in table.groupby("arch", sort=False):
        for resource in ("cores", "peak_pss_mb"):
            measured = g.dropna(subset=[resource])  # N values that were refused have no numbers
            fixed, marginal, r2 = fit_line(measured["speakers"].to_numpy(float), measured[resource].to_numpy(float))
            rows.append({"arch": arch, "resource": resource, "fixed": fixed, "marginal_per_speaker": marginal, "r2": r2})
    return pd.DataFrame(rows, columns=["arch", "resource", "fixed", "marginal_per_speaker", "r2"])


def capacity(table: pd.DataFrame, threshold_s: float = LATENCY_THRESHOLD_S) -> pd.DataFrame:
    """Per arch: the largest N measured whose p95 latency stays under the threshold (0: none)."""
    rows = []
    for arch, g in table.groupby("arch", sort=False):
        ok = g[(g["latency_p95"] <= threshold_s) & (g["missed"] == 0)]["speakers"]
        rows.append({"arch": arch, "max_speakers": int(ok.max()) if len(ok) else 0, "threshold_s": threshold_s})
    return pd.DataFrame(rows)


def reading(table: pd.DataFrame, fits_table: pd.DataFrame, threshold_s: float = LATENCY_THRESHOLD_S) -> str:
    """The sweep's conclusion in a few markdown sentences, computed from its tables."""
    cap = capacity(table, threshold_s).set_index("arch")
    lines = []
    for arch in cap.index:
        cores = fits_table[(fits_table["arch"] == arch) & (fits_table["resource"] == "cores")].iloc[0]
        mem = fits_table[(fits_table["arch"] == arch) & (fits_table["resource"] == "peak_pss_mb")].iloc[0]
        tested = int(table[table["arch"] == arch]["speakers"].max())
        n = int(cap.loc[arch, "max_speakers"])
        held = f"held p95 ≤ {threshold_s:g} s up to **{n}** speakers" + (" (the largest N tried)" if n == tested else "")
        marginal = "" if pd.isna(cores["marginal_per_speaker"]) else (
            f"; each speaker adds {cores['marginal_per_speaker']:.3f} cores and {mem['marginal_per_speaker']:.0f} MB "
            f"on top of {cores['fixed']:.3f} cores and {mem['fixed']:.0f} MB fixed"
        )  # fmt: skip
        lines.append(f"- **{arch}** {held}{marginal}.")
    if len(cap) and cap["max_speakers"].max() > 0:
        best = cap["max_speakers"].idxmax()
        per_core = cap.loc[best, "max_speakers"] / (os.cpu_count() or 1)
        lines.append(f"\nOn this {os.cpu_count()}-core machine the most speakers within the threshold: "
                     f"**{best}**, {per_core:.1f} speakers per core.")  # fmt: skip
    return "\n".join(lines)
