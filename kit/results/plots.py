"""Matplotlib figures from the metrics tables (columns documented in kit/results/metrics.py).

Every function returns a `matplotlib.figure.Figure` built without pyplot: no global figure
registry, no backend switch, nothing shown; it works headless (Agg) and in notebooks (display it,
or let it be a cell's value after `%matplotlib inline`). Each architecture has one colour,
`arch_color(arch)`, in every figure.

    timeline(scenario, events, utterances)   who speaks when, and when each design's finals arrive
    tradeoff(tables)                          one point per design: cost vs p95 latency (the choice)
    latency(tables)                           latency per speaker per design, with the floor
    accuracy(tables)                          WER and missed utterances per speaker
    cost(tables)                              CPU, memory and (once priced) dollars per speaker: the
                                              cloud bill stacked (agent session + connection + STT)
    console_vs_live(side_by_side), scaling(table, fits)   (kit/results/cost_plots.py)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from kit.results.cost_plots import console_vs_live, cost, dollar_columns, dollar_label, dollar_panels, scaling  # noqa: F401
from kit.results.metrics import Tables
from kit.results.style import (  # arch_color and plain are part of this module's API, as the cost figures are
    MISSED_COLOR, SPEECH_COLOR, arch_color, arch_legend, archs_of, bar_offsets, grouped_bars, participants_of, plain,
)  # fmt: skip
from kit.room.scenario import Scenario

FIGURES = ("timeline", "tradeoff", "latency", "accuracy", "cost")


# --- the room ------------------------------------------------------------------------------------


def timeline(scenario: Scenario, events: pd.DataFrame | None = None, utterances: pd.DataFrame | None = None) -> Figure:
    """Ground-truth speech per participant; under it, one lane per architecture with the VAD turn
    behind each final (light bar) and the final's arrival (tick). Missed utterances in red."""
    archs = [] if utterances is None else list(dict.fromkeys(utterances["arch"]))  # the tables' order
    if events is not None:
        archs = list(dict.fromkeys([*archs, *events.loc[events["kind"] == "final", "arch"]]))
    rows = _timeline_rows(scenario, archs)
    fig = Figure(figsize=(11, max(2.8, 1.2 + 0.32 * len(rows))), layout="constrained")
    ax = fig.add_subplot()
    y_of = {key: len(rows) - 1 - i for i, key in enumerate(rows)}
    _draw_speech(ax, scenario, y_of)
    if events is not None:
        _draw_finals(ax, events, y_of)
    if utterances is not None:
        _draw_missed(ax, utterances, y_of)
    ax.set_yticks([y_of[k] for k in rows], [plain(_row_label(k)) for k in rows])
    for label, key in zip(ax.get_yticklabels(), rows):
        label.set_color(SPEECH_COLOR if key[1] is None else arch_color(key[1]))
        label.set_fontweight("bold" if key[1] is None else "normal")
        label.set_fontsize(10 if key[1] is None else 8)
    for who in scenario.identities[1:]:  # a rule between participants' groups of lanes
        ax.axhline(y_of[(who, None)] + 0.5, color="#DDDDDD", lw=0.8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(0, scenario.duration_s + 2.0)
    ax.set_xlabel("time since the room started (s)")
    ax.set_title(f"Room {scenario.name}: who speaks when" + (", and when each design's finals arrive" if archs else ""))
    ax.grid(axis="x", alpha=0.3)
    _timeline_legend(ax, bool(archs), utterances is not None and bool(utterances["missed"].any()))
    return fig


def _timeline_rows(scenario: Scenario, archs: list[str]) -> list[tuple[str, str | None]]:
    """(participant, None) for the ground-truth lane, then (participant, arch) per architecture."""
    return [row for p in scenario.identities for row in [(p, None), *((p, a) for a in archs)]]


def _row_label(key: tuple[str, str | None]) -> str:
    who, arch = key
    return who if arch is None else arch


def _draw_speech(ax, scenario: Scenario, y_of: dict) -> None:
    for p in scenario.participants:
        y = y_of[(p.identity, None)]
        end = scenario.duration_s if p.leave_s is None else p.leave_s
        for a, b in ((0.0, p.join_s), (end, scenario.duration_s)):
            if b > a:  # not in the room yet / any more
                ax.broken_barh([(a, b - a)], (y - 0.4, 0.8), facecolor="none", edgecolor="#BBBBBB", hatch="//", lw=0)
    for u in scenario.utterances:
        y = y_of[(u.participant, None)]
        ax.broken_barh([(u.start_s, u.end_s - u.start_s)], (y - 0.35, 0.7), color=SPEECH_COLOR)
        # Characters that fit in the bar at 7 pt in an 11 in wide figure (a conservative estimate).
        fits = int((u.end_s - u.start_s) / max(scenario.duration_s, 1.0) * 130)
        words = u.text if len(u.text) <= fits else u.text[: max(fits - 1, 0)] + "…"
        if fits >= 4:
            ax.text(u.start_s + 0.1, y, plain(words), color="white", fontsize=7, va="center", clip_on=True)


def _draw_finals(ax, events: pd.DataFrame, y_of: dict) -> None:
    finals = events[events["kind"] == "final"]
    for f in finals.itertuples(index=False):
        y = y_of.get((f.participant, f.arch))
        if y is None:
            continue
        color = arch_color(f.arch)
        if pd.notna(f.speech_start) and pd.notna(f.speech_end):
            ax.broken_barh([(f.speech_start, f.speech_end - f.speech_start)], (y - 0.3, 0.6), color=color, alpha=0.35, lw=0)
            ax.plot([f.speech_end, f.t], [y, y], color=color, lw=1)
        ax.plot([f.t], [y], marker="|", markersize=11, markeredgewidth=2.5, color=color)


def _draw_missed(ax, utterances: pd.DataFrame, y_of: dict) -> None:
    for u in utterances[utterances["missed"].astype(bool)].itertuples(index=False):
        y = y_of.get((u.participant, u.arch))
        if y is not None:
            ax.broken_barh([(u.start_s, u.end_s - u.start_s)], (y - 0.3, 0.6), facecolor="none", edgecolor=MISSED_COLOR, lw=1.5)
            ax.text(u.end_s + 0.2, y, "missed", color=MISSED_COLOR, va="center", fontsize=8)


def _timeline_legend(ax, with_finals: bool, with_missed: bool) -> None:
    handles = [
        Patch(color=SPEECH_COLOR, label="speech (ground truth)"),
        Patch(facecolor="none", edgecolor="#BBBBBB", hatch="//", label="not in the room"),
    ]
    if with_finals:
        handles += [
            Patch(color="#999999", alpha=0.35, label="VAD turn sent to the STT"),
            Line2D([], [], color="#444444", marker="|", markersize=10, markeredgewidth=2.5, lw=1,
                   label="final transcript arrives (line: wait after VAD end)"),
        ]  # fmt: skip
    if with_missed:
        handles.append(Patch(facecolor="none", edgecolor=MISSED_COLOR, label="utterance missed"))
    ax.figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)


# --- the choice ----------------------------------------------------------------------------------


def tradeoff(tables: Tables) -> Figure:
    """One point per architecture: CPU per speaker (x) against p95 latency (y); marker area
    grows with peak memory. Lower left is cheaper and faster; the label says WER and misses."""
    arch = tables.architectures
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    pss = arch["peak_pss_mb"].astype(float).fillna(0.0)
    sizes = 150 + 850 * pss / pss.max() if pss.max() > 0 else pd.Series(300.0, index=arch.index)
    for r, size in zip(arch.itertuples(index=False), sizes):
        measured = pd.notna(r.cpu_s_per_speaker) and pd.notna(r.latency_p95)
        label = (f"{r.arch}: WER {r.wer:.2f}, missed {r.missed}/{r.utterances},\n"
                 f"peak {r.peak_pss_mb:.0f} MB, {r.processes} process(es), {r.agent_participants} agent(s)"
                 if measured else f"{r.arch}: not measured (no final, or no CPU record)")  # fmt: skip
        # A design without a point still gets its legend entry (empty data draws nothing).
        xy = ([r.cpu_s_per_speaker], [r.latency_p95]) if measured else ([], [])
        ax.scatter(*xy, s=size, color=arch_color(r.arch), alpha=0.8, edgecolor="black", zorder=3, label=label)
    # Labels in a legend: the points of similar designs sit close together and labels would collide.
    ax.legend(loc="upper left", fontsize=8, markerscale=0.5, labelspacing=1.0, borderpad=0.8)
    _pad_limits(ax, arch["cpu_s_per_speaker"], arch["latency_p95"])
    ax.set_xlabel(f"CPU seconds per speaker over the room ({_window_s(arch):.0f} s of replay)")
    ax.set_ylabel("latency p95 (s): final − true end of speech")
    ax.set_title("Which design? Lower left is cheaper and faster (marker area ∝ peak memory)")
    ax.grid(alpha=0.3)
    return fig


def _window_s(arch: pd.DataFrame) -> float:
    """Seconds the CPU was counted over (window_s; derived from cpu_pct in older tables)."""
    if "window_s" in arch.columns:
        return float(arch["window_s"].max())
    return float((arch["cpu_s"] * 100 / arch["cpu_pct"]).max()) if len(arch) else 0.0


def _pad_limits(ax, xs: pd.Series, ys: pd.Series) -> None:
    """Axes from 0 with head room for the labels, so small differences are not blown up."""
    x_max = float(xs.max()) if xs.notna().any() else 1.0
    y_max = float(ys.max()) if ys.notna().any() else 1.0  # nothing transcribed: no latency at all
    ax.set_xlim(0, x_max * 1.25 + 1e-9)
    ax.set_ylim(0, y_max * 1.6 + 1e-9)


# --- per speaker ---------------------------------------------------------------------------------


def latency(tables: Tables) -> Figure:
    """Each utterance's latency as a dot, per speaker and architecture (plus all speakers), the
    median as a bar, and the floor (VAD silence threshold + STT inference) as a grey column."""
    utts = tables.utterances
    ref = utts[(utts["kind"] == "reference") & ~utts["missed"].astype(bool) & ~utts["premature"].astype(bool)]
    archs, groups = archs_of(tables), [*participants_of(tables), "all speakers"]
    fig = Figure(figsize=(max(7, 1.7 * len(groups) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    offsets, width = bar_offsets(len(archs)), 0.8 / max(len(archs), 1)
    for gi, who in enumerate(groups):
        g = ref if who == "all speakers" else ref[ref["participant"] == who]
        for arch, dx in zip(archs, offsets):
            _latency_group(ax, g[g["arch"] == arch], gi + dx, width, arch_color(arch))
    ax.axvline(len(groups) - 1.5, color="#999999", lw=0.8)
    ax.set_xticks(range(len(groups)), [plain(g) for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(0, max(1.0, float(ref["latency_s"].max()) * 1.15) if len(ref) else 1.0)
    ax.set_ylabel("latency (s): final − true end of speech")
    ax.set_xlabel("speaker")
    ax.set_title("Latency per utterance (dots), median (line) and floor (grey)")
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=arch_color(a), label=a) for a in archs]
    handles.append(Patch(color="#CCCCCC", label="floor: VAD silence + STT inference (median)"))
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    return fig


def _latency_group(ax, g: pd.DataFrame, x: float, width: float, color: str) -> None:
    if g.empty:
        return
    ax.bar([x], [g["floor_s"].median()], width=width * 0.9, color="#CCCCCC", zorder=1)
    jitter = bar_offsets(len(g), width * 0.6) if len(g) > 1 else np.zeros(1)
    ax.scatter(x + jitter, g["latency_s"], s=22, color=color, edgecolor="black", linewidth=0.4, zorder=3)
    med = g["latency_s"].median()
    ax.plot([x - width * 0.42, x + width * 0.42], [med, med], color=color, lw=2.5, zorder=2)


def accuracy(tables: Tables) -> Figure:
    """WER per speaker (and over all speakers), and missed utterances per speaker."""
    archs, who = archs_of(tables), participants_of(tables)
    allrow = tables.architectures.assign(participant="all speakers")
    wer = pd.concat([tables.speakers[["arch", "participant", "wer"]], allrow[["arch", "participant", "wer"]]])
    missed = pd.concat([tables.speakers[["arch", "participant", "missed", "utterances"]],
                        allrow[["arch", "participant", "missed", "utterances"]]])  # fmt: skip
    fig = Figure(figsize=(max(8, 1.5 * len(who) + 4), 6.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    groups = [*who, "all speakers"]
    grouped_bars(top, wer, "wer", archs, groups, ".2f")
    top.set_ylabel("word error rate")
    top.set_ylim(0, max(0.1, float(np.nanmax(wer["wer"])) * 1.3 if wer["wer"].notna().any() else 0.1))
    top.set_title("Accuracy: word error rate (lower is better)")
    grouped_bars(bottom, missed, "missed", archs, groups, ".0f")
    counts = missed.groupby("participant", sort=False)["utterances"].max()
    bottom.set_xticks(range(len(groups)), [f"{plain(g)}\n({int(counts[g])} utterances)" for g in groups])
    bottom.set_ylabel("missed utterances")
    bottom.set_ylim(0, max(1.0, float(missed["missed"].max()) * 1.3))
    if not missed["missed"].any():
        bottom.text(0.5, 0.6, "no utterance missed by any design", transform=bottom.transAxes, ha="center", color="#444444")
    bottom.yaxis.get_major_locator().set_params(integer=True)
    bottom.set_title("Missed utterances (no final matched)")
    for ax in (top, bottom):
        ax.axvline(len(groups) - 1.5, color="#999999", lw=0.8)
        ax.grid(axis="y", alpha=0.3)
    arch_legend(top, archs, fontsize=8, loc="upper left")
    return fig


# --- cost ----------------------------------------------------------------------------------------


# --- output --------------------------------------------------------------------------------------


def all_figures(tables: Tables, scenario: Scenario, events: pd.DataFrame | None) -> dict[str, Figure]:
    """Every figure of a run, keyed by the names in FIGURES (the report's and figures/'s order)."""
    return {
        "timeline": timeline(scenario, events, tables.utterances),
        "tradeoff": tradeoff(tables),
        "latency": latency(tables),
        "accuracy": accuracy(tables),
        "cost": cost(tables),
    }


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_pngs(figures: dict[str, Figure], out_dir: Path) -> list[Path]:
    """figures/<name>.png for each figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        path.write_bytes(png_bytes(fig))
        paths.append(path)
    return paths


# --- scaling ---------------------------------------------------------------------------------------


