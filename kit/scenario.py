"""Scenarios: one room's participants, their audio tracks and the ground-truth utterances.

`data/scenarios/<name>/scenario.json` plus one mono FLAC per participant beside it. Each file is
the participant's whole track from the room's start (silence between turns), so overlap, late
joins and early leaves are just timing. `load` validates everything and fails with one clear line.
An optional top-level `"reference": false` marks a room without reference text (kit/importer.py
without transcripts): its utterances are speech spans with empty text, and WER is not measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from kit.config import SCENARIOS_DIR, KitError


class ScenarioError(KitError):
    """A scenario that cannot be used, with the reason in one line."""


@dataclass(frozen=True)
class Participant:
    identity: str
    audio: Path  # absolute path of the mono track
    join_s: float = 0.0
    leave_s: float | None = None  # None: stays until the end of the room


@dataclass(frozen=True)
class Utterance:
    participant: str
    start_s: float  # exact sample boundaries of the speech, seconds from the room's start
    end_s: float
    text: str


@dataclass(frozen=True)
class Scenario:
    name: str
    sample_rate: int
    participants: tuple[Participant, ...]
    utterances: tuple[Utterance, ...]
    path: Path  # the scenario.json
    duration_s: float  # length of the longest track
    # False: imported without transcripts; boundaries from a speech detector, texts empty, no WER
    reference: bool = True

    @property
    def identities(self) -> list[str]:
        return [p.identity for p in self.participants]

    def participant(self, identity: str) -> Participant:
        for p in self.participants:
            if p.identity == identity:
                return p
        raise ScenarioError(f"{self.name}: no participant {identity!r}")

    def read_audio(self, identity: str) -> np.ndarray:
        """The participant's whole track as float32 at the scenario's sample rate."""
        samples, _ = sf.read(self.participant(identity).audio, dtype="float32", always_2d=False)
        return samples

    def utterances_frame(self) -> pd.DataFrame:
        """One row per ground-truth utterance: participant, start_s, end_s, text."""
        return pd.DataFrame(
            [(u.participant, u.start_s, u.end_s, u.text) for u in self.utterances],
            columns=["participant", "start_s", "end_s", "text"],
        )

    def content_hash(self) -> str:
        """sha256 over scenario.json and every audio file, in participant order."""
        h = hashlib.sha256(self.path.read_bytes())
        for p in self.participants:
            h.update(p.audio.read_bytes())
        return h.hexdigest()


def resolve(name_or_path: str | Path) -> Path:
    """A bundled scenario name, a scenario directory or a scenario.json path -> the json path."""
    p = Path(name_or_path)
    candidates = [p / "scenario.json", p] if p.suffix != ".json" else [p]
    if not p.is_absolute() and len(p.parts) == 1 and p.suffix != ".json":
        candidates.insert(0, SCENARIOS_DIR / p / "scenario.json")
    for c in candidates:
        if c.is_file():
            return c.resolve()
    bundled = ", ".join(sorted(d.name for d in SCENARIOS_DIR.iterdir() if d.is_dir())) if SCENARIOS_DIR.is_dir() else ""
    raise ScenarioError(f"scenario not found: {name_or_path} (bundled: {bundled or 'none'})")


def load(name_or_path: str | Path) -> Scenario:
    path = resolve(name_or_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: invalid JSON: the top level must be an object")
    try:
        return _build(raw, path)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ScenarioError):
            raise
        detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise ScenarioError(f"{path}: {detail}") from None


def _build(raw: dict, path: Path) -> Scenario:
    name = str(raw["name"])
    rate = int(raw["sample_rate"])
    participants = tuple(
        Participant(
            identity=str(p["identity"]),
            audio=(path.parent / p["audio"]).resolve(),
            join_s=float(p.get("join_s", 0.0)),
            leave_s=None if p.get("leave_s") is None else float(p["leave_s"]),
        )
        for p in raw["participants"]
    )
    utterances = tuple(
        Utterance(str(u["participant"]), float(u["start_s"]), float(u["end_s"]), str(u["text"]))
        for u in raw["utterances"]
    )
    if not participants:
        raise ScenarioError(f"{path}: no participants")
    seen: set[str] = set()
    for p in participants:
        if p.identity in seen:
            raise ScenarioError(f"{path}: duplicate participant identity {p.identity!r}")
        seen.add(p.identity)
    durations = {p.identity: _check_track(path, p, rate) for p in participants}
    _check_utterances(path, participants, utterances, durations)
    reference = raw.get("reference", True)
    if not isinstance(reference, bool):
        raise ScenarioError(f"{path}: 'reference' must be true or false, not {reference!r}")
    return Scenario(name, rate, participants, utterances, path, max(durations.values()), reference)


def _check_track(path: Path, p: Participant, rate: int) -> float:
    if not p.audio.is_file():
        raise ScenarioError(f"{path}: audio of {p.identity!r} not found: {p.audio}")
    try:
        info = sf.info(str(p.audio))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ScenarioError(f"{path}: audio of {p.identity!r} is unreadable: {p.audio.name} ({e})") from None
    if info.channels != 1:
        raise ScenarioError(f"{path}: audio of {p.identity!r} must be mono, {p.audio.name} has {info.channels} channels")
    if info.samplerate != rate:
        raise ScenarioError(
            f"{path}: audio of {p.identity!r} is {info.samplerate} Hz, the scenario declares {rate} Hz"
        )
    if p.leave_s is not None and p.leave_s <= p.join_s:
        raise ScenarioError(f"{path}: {p.identity!r} leaves at {p.leave_s} s, before joining at {p.join_s} s")
    return info.frames / info.samplerate


def _check_utterances(path, participants, utterances, durations) -> None:
    by_id = {p.identity: p for p in participants}
    last_end: dict[str, Utterance] = {}
    for u in sorted(utterances, key=lambda u: (u.participant, u.start_s)):
        p = by_id.get(u.participant)
        if p is None:
            raise ScenarioError(f"{path}: utterance of unknown participant {u.participant!r}: {u.text[:40]!r}")
        if not u.start_s < u.end_s:
            raise ScenarioError(f"{path}: utterance of {u.participant!r} ends before it starts ({u.start_s}-{u.end_s} s)")
        track_end = min(durations[p.identity], p.leave_s if p.leave_s is not None else float("inf"))
        if u.start_s < p.join_s or u.end_s > track_end:
            raise ScenarioError(
                f"{path}: utterance of {u.participant!r} at {u.start_s:.2f}-{u.end_s:.2f} s is outside its track "
                f"({p.join_s:.2f}-{track_end:.2f} s)"
            )
        prev = last_end.get(u.participant)
        if prev is not None and u.start_s < prev.end_s:
            raise ScenarioError(
                f"{path}: two utterances of {u.participant!r} overlap "
                f"({prev.start_s:.2f}-{prev.end_s:.2f} s and {u.start_s:.2f}-{u.end_s:.2f} s)"
            )
        last_end[u.participant] = u
