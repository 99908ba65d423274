"""Bleed between microphones: people who share a room hear each other on their own microphone.

Each participant's track gets the other speakers' tracks of its group, `db` dB lower and `ms` later
(the distance between them: 30 ms is about 10 m of air, or a laptop across the table plus its
capture pipeline). Ground truth stays per speaker: the speech on a track that is someone else's is
still theirs, so a transcript of it under this participant is a duplicated or misattributed word
(kit/results/attribution.py). Used by `kit synth` (a script's `[bleed]` table, or `--bleed-db`) and
`kit scenario import` (`--bleed-db`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kit.config import KitError


@dataclass(frozen=True)
class Bleed:
    """`db`: the level of the others on a track, relative to their own (below 0); `ms`: their delay;
    `groups`: who shares a room with whom (None: everyone with everyone)."""

    db: float = -20.0
    ms: float = 30.0
    groups: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.db) and self.db < 0):
            raise KitError(f"bleed: the level must be a number of dB below 0 (e.g. -20), not {self.db}")
        if not (math.isfinite(self.ms) and 0 <= self.ms <= 1000):
            raise KitError(f"bleed: the delay must be 0 to 1000 ms, not {self.ms}")

    @classmethod
    def from_table(cls, table: dict, where: str) -> Bleed:
        """A script's `[bleed]` table: db, ms, groups (lists of identities)."""
        unknown = set(table) - {"db", "ms", "groups"}
        if unknown:
            raise KitError(f"{where}: [bleed] has unknown keys {sorted(unknown)} (db, ms, groups)")
        groups = table.get("groups")
        if groups is not None:
            if not (isinstance(groups, list) and all(isinstance(g, list) and all(isinstance(i, str) for i in g) for g in groups)):
                raise KitError(f"{where}: [bleed] groups must be lists of identities, e.g. [[\"alice\", \"bob\"]]")
            groups = tuple(tuple(g) for g in groups)
        try:
            return cls(float(table.get("db", cls.db)), float(table.get("ms", cls.ms)), groups)
        except (TypeError, ValueError) as e:
            raise KitError(f"{where}: [bleed] db and ms must be numbers ({e})") from None

    def toml(self) -> str:
        """This bleed as a script's [bleed] table (for generated scripts: meeting rooms, sweeps)."""
        groups = "" if self.groups is None else "groups = [" + ", ".join(
            "[" + ", ".join(f'"{i}"' for i in g) + "]" for g in self.groups) + "]\n"  # fmt: skip
        return f"[bleed]\ndb = {self.db:g}\nms = {self.ms:g}\n{groups}"

    def neighbours(self, identities: list[str]) -> dict[str, list[str]]:
        """Whom each participant hears on their microphone."""
        groups = self.groups if self.groups is not None else (tuple(identities),)
        unknown = sorted({i for g in groups for i in g} - set(identities))
        if unknown:
            raise KitError(f"bleed: {', '.join(unknown)} in its groups are not participants of the room")
        return {who: [o for g in groups if who in g for o in g if o != who] for who in identities}


def add_bleed(tracks: dict[str, np.ndarray], rate: int, bleed: Bleed) -> dict[str, np.ndarray]:
    """Every track (int16, or float in [-1, 1]) plus its neighbours' tracks as given (add bleed before
    synthetic noise, so each microphone keeps its own), `bleed.db` lower and `bleed.ms` later; each the
    same length and type as before."""
    gain, shift = 10 ** (bleed.db / 20), round(bleed.ms / 1000 * rate)
    out = {}
    for who, heard in bleed.neighbours(list(tracks)).items():
        mixed = tracks[who].astype(np.float64)
        for other in heard:
            src = tracks[other].astype(np.float64)[: max(0, len(mixed) - shift)]
            mixed[shift : shift + len(src)] += gain * src
        out[who] = _as(mixed, tracks[who].dtype)
    return out


def _as(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(x), info.min, info.max).astype(dtype)
    return np.clip(x, -1.0, 1.0).astype(dtype)
