"""What every figure shares: each design's one colour, names drawn as text, legends and bar offsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from kit import architectures
from kit.results.metrics import Tables

# Each design's own colour is in its module (its DESIGN, Okabe-Ito: distinguishable with colour
# blindness); a name that is not a design (your own agent's label) gets one of these, stable for it.


# Okabe-Ito colours (distinguishable with colour blindness): each design's own is in its module (its
# DESIGN); a name that is not a design (your own agent's label) gets one of these, stable for that name.
_SPARE_COLORS = ("#D55E00", "#56B4E9", "#F0E442", "#000000")


SPEECH_COLOR = "#555555"


MISSED_COLOR = "#C00000"


def arch_color(arch: str) -> str:
    """The colour of an architecture (its DESIGN's); an unknown name gets a spare colour, stable for that name."""
    design = architectures.design(arch)
    if design is not None:
        return design.color
    return _SPARE_COLORS[sum(map(ord, arch)) % len(_SPARE_COLORS)]


def plain(name: str) -> str:
    """A name drawn as it is: matplotlib would read text between two '$' as math (or fail on it)."""
    return str(name).replace("$", r"\$")


def archs_of(tables: Tables) -> list[str]:
    return list(dict.fromkeys(tables.architectures["arch"])) or list(dict.fromkeys(tables.speakers["arch"]))


def participants_of(tables: Tables) -> list[str]:
    return list(dict.fromkeys(tables.speakers["participant"]))


def arch_legend(ax, archs: list[str], **kw) -> None:
    handles = [Patch(color=arch_color(a), label=a) for a in archs]
    ax.legend(handles=handles, title="architecture", **kw)


def bar_offsets(n: int, width: float = 0.8) -> np.ndarray:
    """x offsets of n side-by-side items centred on a group position."""
    step = width / n
    return (np.arange(n) - (n - 1) / 2) * step


def grouped_bars(ax, df: pd.DataFrame, column: str, archs: list[str], groups: list[str], fmt: str) -> None:
    """Bars of `column` per group (participant) and architecture, each labelled with its value
    (so a zero reads as zero, not as a missing bar)."""
    offsets, width = bar_offsets(len(archs)), 0.8 / max(len(archs), 1)
    for arch, dx in zip(archs, offsets):
        sub = df[df["arch"] == arch].set_index("participant")
        values = [float(sub.loc[g, column]) if g in sub.index else np.nan for g in groups]
        bars = ax.bar(np.arange(len(groups)) + dx, values, width=width * 0.95, color=arch_color(arch), label=arch)
        ax.bar_label(bars, labels=["–" if np.isnan(v) else format(v, fmt) for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), [plain(g) for g in groups])
