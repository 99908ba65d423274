"""The figures of cost and scale: CPU, memory and dollars per speaker, console against live, and the
sweep's latency, cores and memory against N (kit.results.plots draws the room and the results)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from kit.results import cost as cost_mod
from kit.results.metrics import Tables
from kit.results.style import (
    arch_color,
    arch_legend,
    archs_of,
    bar_offsets,
    grouped_bars,
    participants_of,
    plain,
)


def dollar_columns(df: pd.DataFrame) -> list[str]:
    """Pricing columns (kit/results/cost.py adds `dollars_*` columns); empty before pricing exists."""
    return [c for c in df.columns if str(c).startswith("dollars_")]


def dollar_panels(df: pd.DataFrame) -> list[str]:
    """One dollars panel per price: the cloud bill once (its three parts stacked, when the table has
    them: kit/results/cost.py CLOUD_PARTS), then every other `dollars_*` column (self-hosted)."""
    columns = dollar_columns(df)
    if not all(c in columns for c in cost_mod.CLOUD_PARTS):
        return columns
    return [cost_mod.CLOUD_TOTAL] + [c for c in columns if c not in cost_mod.CLOUD_PARTS and c != cost_mod.CLOUD_TOTAL]


# The cloud bill's parts as drawn: (column, label, alpha, hatch) on the design's colour.
CLOUD_SEGMENTS = (
    (cost_mod.CLOUD_AGENT, "agent session minutes", 1.0, ""),
    (cost_mod.CLOUD_CONNECTION, "connection minutes", 0.6, ".."),
    (cost_mod.CLOUD_STT, "STT minutes × price", 0.35, "xx"),
)


def cost(tables: Tables) -> Figure:
    """CPU seconds per speaker (STT part solid, the rest hatched) and peak memory per speaker; under
    them one dollars panel per price, only when the tables carry `dollars_*` columns: the LiveKit
    Cloud bill per design as a stacked bar of agent session, connection and STT minutes, and the
    self-hosted compute per speaker."""
    archs, who = archs_of(tables), participants_of(tables)
    dollars = dollar_panels(tables.architectures) or dollar_panels(tables.speakers)
    fig = Figure(figsize=(12, 8.6 if dollars else 4.8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 0.85]) if dollars else (fig, None)
    cpu_ax, mem_ax = top.subplots(1, 2, width_ratios=[max(len(who), 2), 1.6])
    _cpu_panel(cpu_ax, tables.speakers, archs, who)
    _memory_panel(mem_ax, tables.architectures, archs)
    stacked = False
    if bottom is not None:
        # One panel per price: cloud and self-hosted dollars differ by orders of magnitude.
        for ax, column in zip(np.atleast_1d(bottom.subplots(1, len(dollars))), dollars):
            if column == cost_mod.CLOUD_TOTAL and all(c in tables.architectures for c in cost_mod.CLOUD_PARTS):
                _cloud_panel(ax, tables.architectures, archs)
                stacked = True
            else:
                _dollars_panel(ax, tables, archs, column)
    handles = [Patch(color=arch_color(a), label=a) for a in archs]
    handles += [Patch(color="#777777", label="CPU: STT"),
                Patch(facecolor="#BBBBBB", hatch="//", edgecolor="white", label="CPU: the rest")]  # fmt: skip
    if stacked:
        handles += [Patch(facecolor="#777777", alpha=alpha, hatch=hatch, edgecolor="white", label=f"cloud $: {label}")
                    for _, label, alpha, hatch in CLOUD_SEGMENTS]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle("Cost per speaker")
    return fig


def _cloud_panel(ax, arch_df: pd.DataFrame, archs: list[str]) -> None:
    """The LiveKit Cloud bill per design, per speaker-hour: agent session + connection + STT stacked,
    the total on top. An STT part that is not priced or not measured (NaN) is not drawn, and says so."""
    rows = arch_df.set_index("arch").reindex(archs)
    x, bottom = np.arange(len(archs)), np.zeros(len(archs))
    for column, _, alpha, hatch in CLOUD_SEGMENTS:
        values = rows[column].to_numpy(float)
        drawn = np.nan_to_num(values)
        for i, arch in enumerate(archs):
            if drawn[i] > 0:
                ax.bar(x[i], drawn[i], bottom=bottom[i], width=0.6, color=arch_color(arch), alpha=alpha, hatch=hatch,
                       edgecolor="white")  # fmt: skip
        bottom += drawn
    item = cost_mod.stt_item_of(arch_df)
    for i, (total, stt) in enumerate(zip(rows[cost_mod.CLOUD_TOTAL], rows[cost_mod.CLOUD_STT])):
        if item is None:
            text = f"${bottom[i]:.3g}\nSTT not priced"
        elif pd.isna(stt):
            text = f"${bottom[i]:.3g}\n+ STT not measured"
        else:
            text = f"${total:.3g}"
        ax.annotate(text, (x[i], bottom[i]), ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(x, [plain(a) for a in archs], fontsize=8, rotation=20, ha="right")
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 0.0, 1e-9) * 1.35)
    ax.set_ylabel("US dollars")
    where = f"STT: {item}" if item else "STT not priced (--stt-price ITEM)"
    ax.set_title(f"{dollar_label(cost_mod.CLOUD_TOTAL)}\nagent session + connection + STT ({plain(where)})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _cpu_panel(ax, spk: pd.DataFrame, archs: list[str], who: list[str]) -> None:
    offsets, width = bar_offsets(len(archs)), 0.8 / max(len(archs), 1)
    for arch, dx in zip(archs, offsets):
        sub = spk[spk["arch"] == arch].set_index("participant").reindex(who)
        x = np.arange(len(who)) + dx
        stt, total = sub["stt_cpu_s"].to_numpy(float), sub["cpu_s"].to_numpy(float)
        color = arch_color(arch)
        ax.bar(x, stt, width=width * 0.95, color=color)
        bars = ax.bar(x, total - stt, bottom=stt, width=width * 0.95, color=color, alpha=0.45, hatch="//", edgecolor="white")
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in total], fontsize=7, padding=1)
    ax.set_xticks(range(len(who)), [plain(w) for w in who])
    ax.set_ylabel("CPU seconds over the room")
    ax.set_title("CPU per speaker (solid: STT; hatched: VAD, framework, processes)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _memory_panel(ax, arch_df: pd.DataFrame, archs: list[str]) -> None:
    rows = arch_df.set_index("arch").reindex(archs)
    per_speaker = rows["peak_pss_mb"] / rows["speakers"]
    bars = ax.bar(range(len(archs)), per_speaker, color=[arch_color(a) for a in archs])
    labels = [f"{v:.0f}\n(total {t:.0f})" for v, t in zip(per_speaker, rows["peak_pss_mb"])]
    ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(range(len(archs)), archs, fontsize=8, rotation=20, ha="right")
    ax.set_ylim(0, float(np.nanmax(per_speaker)) * 1.3 if per_speaker.notna().any() else 1)
    ax.set_ylabel("peak PSS per speaker (MB)")
    ax.set_title("Memory: tree peak PSS ÷ speakers", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _dollars_panel(ax, tables: Tables, archs: list[str], column: str) -> None:
    """One pricing column: per speaker when the speakers table has it, else per architecture."""
    if column in tables.speakers.columns:
        grouped_bars(ax, tables.speakers, column, archs, participants_of(tables), ".3g")
    else:
        values = tables.architectures.set_index("arch").reindex(archs)[column]
        bars = ax.bar(range(len(archs)), values, color=[arch_color(a) for a in archs])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=7, padding=1)
        ax.set_xticks(range(len(archs)), archs, fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("US dollars")
    ax.set_title(dollar_label(column), fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def dollar_label(column: str) -> str:
    """'dollars_cloud_per_speaker_hour' -> 'cloud: $ per speaker-hour'."""
    name = column.removeprefix("dollars_")
    what, _, per = name.partition("_per_")
    if not per:
        return name.replace("_", " ")
    what = " ".join("STT" if w == "stt" else w for w in what.split("_"))
    return f"{what}: $ per {per.replace('speaker_hour', 'speaker-hour').replace('_', ' ')}"


def console_vs_live(side_by_side: pd.DataFrame) -> Figure:
    """Per design: p50 and p95 latency in console mode (hatched) and live (solid): what the real
    transport adds (kit.results.metrics.console_vs_live, the designs' own rows)."""
    rows = side_by_side[side_by_side["participant"] == "(all)"].reset_index(drop=True)
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for i, r in rows.iterrows():
        color = arch_color(r["arch"])
        for k, (q, mode) in enumerate([(q, m) for q in ("p50", "p95") for m in ("console", "live")]):
            value = r[f"latency_{q}_{mode}"]
            x = i + (k - 1.5) * 0.2
            ax.bar(x, value, width=0.18, color=color, alpha=0.9 if mode == "live" else 0.45,
                   hatch="" if mode == "live" else "//", edgecolor="black")  # fmt: skip
            ax.annotate(f"{q}\n{mode[0]}", (x, value), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [plain(a) for a in rows["arch"]])
    ax.set_ylabel("latency (s): final − true end of speech")
    ax.set_title("Console (hatched) against live (solid): what Opus, the jitter buffer and the server add")
    ax.grid(axis="y", alpha=0.3)
    return fig


def scaling(table: pd.DataFrame, fits: pd.DataFrame, threshold_s: float = 1.5) -> Figure:
    """The sweep (kit/results/sweep.py): p95 latency (with its compute bound, dotted), cores busy and peak
    memory against the number of participants, one line per design, with each design's fitted
    fixed + marginal line."""
    fig = Figure(figsize=(12, 4), layout="constrained")
    ax_lat, ax_cpu, ax_mem = fig.subplots(1, 3)
    top = float(table["participants"].max())
    for arch, g in table.groupby("arch", sort=False):
        color = arch_color(arch)
        ax_lat.plot(g["participants"], g["latency_p95"], "o-", color=color)
        if "compute_bound_p95" in g:
            ax_lat.plot(g["participants"], g["compute_bound_p95"], ":", color=color, lw=1.5)
        for ax, resource in ((ax_cpu, "cores"), (ax_mem, "peak_pss_mb")):
            ax.plot(g["participants"], g[resource], "o", color=color)
            fit = fits[(fits["arch"] == arch) & (fits["resource"] == resource)]
            if len(fit) and pd.notna(fit["marginal_per_participant"].iloc[0]):
                n = np.linspace(0, top, 20)
                ax.plot(n, fit["fixed"].iloc[0] + fit["marginal_per_participant"].iloc[0] * n, "--", color=color, lw=1)
    ax_lat.axhline(threshold_s, color="grey", ls=":", lw=1)
    ax_lat.annotate(f"threshold {threshold_s:g} s", (0.02, threshold_s), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="grey")  # fmt: skip
    ax_lat.set_title("dotted: the compute bound (the best the cores allow)", fontsize=9)
    titles = (("p95 latency (s)", ax_lat), ("cores busy (CPU s per room s)", ax_cpu), ("peak PSS (MB)", ax_mem))
    for label, ax in titles:
        ax.set_xlabel("participants")
        ax.set_ylabel(label)
        ax.set_xlim(0, top * 1.05)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax_cpu.set_title("dashed: fixed + marginal per participant", fontsize=9)
    arch_legend(ax_lat, list(dict.fromkeys(table["arch"])), fontsize=8, loc="upper left")
    return fig
