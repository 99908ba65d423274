"""Scenarios: one room's participants, their audio tracks and the ground-truth utterances.

`data/scenarios/<name>/scenario.json` plus one mono FLAC per participant beside it. Each file is
the participant's whole track from the room's start (silence between turns), so overlap, late
joins and early leaves are just timing. `load` validates everything and fails with one clear line
(`ScenarioError`): every field typed, every number finite (Python's json reads NaN and Infinity),
times not negative, each participant joining before its track ends and leaving after it joins,
each utterance within its speaker's presence, at least one utterance, and every track decoded in
full (readable, mono, at the declared rate, not empty, no NaN or infinite sample).
An optional top-level `"reference": false` marks a room without reference text (kit/room/importer.py
without transcripts): its utterances are speech spans with empty text, and WER is not measured.
Optional `"mutes": [{"participant", "start_s", "end_s"}]`: stretches in which a participant's
microphone is muted (`end_s` null or absent: until they leave) (live: `LocalAudioTrack.mute()`; docs/scenarios.md, "Mutes"), each within their
presence, not overlapping another of theirs, and with no utterance of theirs in it (what a muted
participant says reaches nobody, so it is not in the reference).
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from kit.config import SCENARIOS_DIR, KitError


class ScenarioError(KitError):
    """A scenario that cannot be used, with the reason in one line (line breaks are escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


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
class Mute:
    participant: str
    start_s: float  # the microphone is muted from here
    end_s: float | None  # ... and unmuted here (None in scenario.json: until they leave; load() fills it in)


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
    mutes: tuple[Mute, ...] = ()

    def muted(self, identity: str) -> list[tuple[float, float]]:
        """The participant's muted stretches (start_s, end_s), in order."""
        return sorted((m.start_s, m.end_s) for m in self.mutes if m.participant == identity)

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
        with sf.SoundFile(str(self.participant(identity).audio)) as f:  # as load() read it: block by block
            blocks = []
            while len(block := f.read(READ_BLOCK, dtype="float32")):
                blocks.append(block)
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

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
    """Read and validate a scenario: its json (types, finite non-negative times, presence) and every
    track, decoded in full (readable, mono, at the declared rate, not empty, finite samples)."""
    path = resolve(name_or_path)
    raw = _read_json(path)
    _check_values(path, raw)
    doc = _Doc(path)
    name = doc.text(raw, "name", "name", nonempty=True)
    rate = doc.sample_rate(raw)
    participants = tuple(doc.participant(p, i) for i, p in enumerate(doc.items(raw, "participants")))
    utterances = tuple(doc.utterance(u, i) for i, u in enumerate(doc.items(raw, "utterances")))
    mutes = [doc.mute(m, i) for i, m in enumerate(doc.items(raw, "mutes") if "mutes" in raw else [])]
    reference = raw.get("reference", True)
    if not isinstance(reference, bool):
        doc.fail(f"'reference' must be true or false, not {_show(reference)}")
    if not participants:
        doc.fail("no participants")
    seen: set[str] = set()
    for p in participants:
        if p.identity in seen:
            doc.fail(f"duplicate participant identity {p.identity!r}")
        seen.add(p.identity)
    if not utterances:  # every latency, WER and miss count would be empty: nothing to measure
        doc.fail("no utterances: a room where nobody speaks has nothing to measure")
    durations = {p.identity: _check_track(path, p, rate) for p in participants}
    _check_utterances(path, participants, utterances, durations)
    mutes = _check_mutes(path, participants, utterances, mutes, durations)
    return Scenario(name, rate, participants, utterances, path, max(durations.values()), reference, mutes)


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: invalid JSON: not UTF-8 text") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        # NaN and Infinity are not JSON, but Python's json accepts them: they come back as floats
        # and _check_values rejects them, naming the field.
        raw = json.loads(text, parse_constant=float)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{path}: invalid JSON: {e}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ScenarioError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: invalid JSON: the top level must be an object")
    return raw


def _check_values(path: Path, raw: dict) -> None:
    """Anywhere in the document: no NaN, no infinity (also 1e999), no unpaired surrogate (\\ud800)."""
    todo: list[tuple[str, object]] = [("", raw)]
    while todo:  # iterative: the depth is bounded only by the json parser
        where, value = todo.pop()
        if isinstance(value, dict):
            todo += [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
            todo += [(f"{where} (a key)", k) for k in value]
        elif isinstance(value, list):
            todo += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, float) and not math.isfinite(value):
            spelled = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            raise ScenarioError(f"{path}: {where} is {spelled}: every number must be finite")
        elif isinstance(value, str) and _has_surrogate(value):
            raise ScenarioError(f"{path}: {where} is not valid Unicode text (an unpaired surrogate): {_show(value)}")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _show(value: object) -> str:
    """A value for a one-line message: its JSON-ish repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_REQUIRED = object()


class _Doc:
    """Typed reads of the document's fields, each failing with the field's place in one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str):
        raise ScenarioError(f"{self.path}: {message}")

    def get(self, obj: dict, key: str, where: str, default=_REQUIRED):
        if key not in obj:
            if default is _REQUIRED:
                self.fail(f"missing field '{key}'" + (f" in {where.rsplit('.', 1)[0]}" if "." in where else ""))
            return default
        return obj[key]

    def items(self, raw: dict, key: str) -> list[dict]:
        value = self.get(raw, key, key)
        if not isinstance(value, list):
            self.fail(f"'{key}' must be a list, not {_show(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(f"{key}[{i}] must be an object, not {_show(item)}")
        return value

    def text(self, obj: dict, key: str, where: str, nonempty: bool = False, default=_REQUIRED) -> str:
        value = self.get(obj, key, where, default)
        if not isinstance(value, str):
            self.fail(f"{where} must be a string, not {_show(value)}")
        if nonempty and not value.strip():
            self.fail(f"{where} must not be empty")
        return value

    def seconds(self, obj: dict, key: str, where: str, default=_REQUIRED) -> float | None:
        value = self.get(obj, key, where, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{where} must be a number of seconds, not {_show(value)}")
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond float range
            self.fail(f"{where} is too large: every number must be finite")
        if not math.isfinite(seconds):
            self.fail(f"{where} is {seconds}: every number must be finite")
        if seconds < 0:
            self.fail(f"{where} is negative ({value} s): times count from the room's start")
        return seconds

    def sample_rate(self, raw: dict) -> int:
        value = self.get(raw, "sample_rate", "sample_rate")
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not integral or value <= 0:
            self.fail(f"sample_rate must be a positive whole number of Hz, not {_show(value)}")
        return int(value)

    def participant(self, p: dict, i: int) -> Participant:
        where = f"participants[{i}]"
        identity = self.text(p, "identity", f"{where}.identity", nonempty=True)
        if any(unicodedata.category(c) == "Cc" for c in identity):
            self.fail(f"{where}.identity {identity!r} has a control character")
        audio = self.text(p, "audio", f"{where}.audio", nonempty=True)
        if "\0" in audio:
            self.fail(f"{where}.audio {audio!r} is not a file name")
        join_s = self.seconds(p, "join_s", f"{where}.join_s", default=0.0)
        leave_s = self.seconds(p, "leave_s", f"{where}.leave_s", default=None)
        if leave_s is not None and leave_s <= join_s:
            self.fail(f"{identity!r} leaves at {leave_s} s, before joining at {join_s} s")
        return Participant(identity, (self.path.parent / audio).resolve(), join_s, leave_s)

    def utterance(self, u: dict, i: int) -> Utterance:
        where = f"utterances[{i}]"
        participant = self.text(u, "participant", f"{where}.participant")
        start_s = self.seconds(u, "start_s", f"{where}.start_s")
        end_s = self.seconds(u, "end_s", f"{where}.end_s")
        return Utterance(participant, start_s, end_s, self.text(u, "text", f"{where}.text"))


    def mute(self, m: dict, i: int) -> Mute:
        where = f"mutes[{i}]"
        participant = self.text(m, "participant", f"{where}.participant")
        return Mute(participant, self.seconds(m, "start_s", f"{where}.start_s"), self.seconds(m, "end_s", f"{where}.end_s", default=None))


READ_BLOCK = 1 << 18  # frames per read when checking a track: memory stays flat on long rooms


def _check_track(path: Path, p: Participant, rate: int) -> float:
    """Decode the whole track (what the room will do) and return its length in seconds."""
    name = p.audio.name
    if not p.audio.is_file():
        raise ScenarioError(f"{path}: audio of {p.identity!r} not found: {p.audio}")
    if p.audio.stat().st_size == 0:
        raise ScenarioError(f"{path}: audio of {p.identity!r} is empty: {name} is a file of 0 bytes")
    try:
        f = sf.SoundFile(str(p.audio))
    except (RuntimeError, OSError, sf.SoundFileError) as e:  # libsndfile's errors are RuntimeErrors
        raise ScenarioError(f"{path}: audio of {p.identity!r} is unreadable: {name} ({e})") from None
    frames, bad = 0, None
    with f:
        if f.channels != 1:
            raise ScenarioError(f"{path}: audio of {p.identity!r} must be mono, {name} has {f.channels} channels")
        if f.samplerate != rate:
            raise ScenarioError(f"{path}: audio of {p.identity!r} is {f.samplerate} Hz, the scenario declares {rate} Hz")
        try:
            while len(block := f.read(READ_BLOCK, dtype="float32")):
                if bad is None and not (finite := np.isfinite(block)).all():
                    bad = frames + int(np.flatnonzero(~finite)[0]), float(block[~finite][0])
                frames += len(block)
        except (RuntimeError, OSError, sf.SoundFileError) as e:
            if frames == 0:  # e.g. a FLAC header without a single frame: its length reads as unknown
                raise ScenarioError(f"{path}: audio of {p.identity!r} is empty: {name} has no samples that can be read ({e})") from None
            raise ScenarioError(f"{path}: audio of {p.identity!r} is unreadable after {frames / rate:.2f} s: {name} ({e})") from None
    if frames == 0:
        raise ScenarioError(f"{path}: audio of {p.identity!r} is empty: {name} holds no samples")
    if bad is not None:
        raise ScenarioError(
            f"{path}: audio of {p.identity!r} has samples that are not finite numbers: {name} has "
            f"{bad[1]} at sample {bad[0]} ({bad[0] / rate:.3f} s)"
        )
    track_s = frames / rate
    if p.join_s >= track_s:
        raise ScenarioError(f"{path}: {p.identity!r} joins at {p.join_s} s, after its track ends ({track_s:.2f} s)")
    return track_s


def _check_utterances(path, participants, utterances, durations) -> None:
    by_id = {p.identity: p for p in participants}
    last_end: dict[str, Utterance] = {}
    for u in sorted(utterances, key=lambda u: (u.participant, u.start_s)):
        p = by_id.get(u.participant)
        if p is None:
            raise ScenarioError(f"{path}: utterance of unknown participant {u.participant!r}: {u.text[:40]!r}")
        if not u.start_s < u.end_s:
            raise ScenarioError(f"{path}: utterance of {u.participant!r} ends before it starts ({u.start_s}-{u.end_s} s)")
        span = f"utterance of {u.participant!r} at {u.start_s:.2f}-{u.end_s:.2f} s"
        if u.start_s < p.join_s:
            raise ScenarioError(f"{path}: {span} starts before {u.participant!r} joins ({p.join_s:.2f} s)")
        if p.leave_s is not None and u.end_s > p.leave_s:
            raise ScenarioError(f"{path}: {span} ends after {u.participant!r} leaves ({p.leave_s:.2f} s)")
        if u.end_s > durations[p.identity]:
            raise ScenarioError(
                f"{path}: {span} is outside its track ({p.join_s:.2f}-{durations[p.identity]:.2f} s)"
            )
        prev = last_end.get(u.participant)
        if prev is not None and u.start_s < prev.end_s:
            raise ScenarioError(
                f"{path}: two utterances of {u.participant!r} overlap "
                f"({prev.start_s:.2f}-{prev.end_s:.2f} s and {u.start_s:.2f}-{u.end_s:.2f} s)"
            )
        last_end[u.participant] = u


def _check_mutes(path, participants, utterances, mutes, durations) -> tuple[Mute, ...]:
    """The mutes, each ending where it says or, without an end, when its participant leaves."""
    by_id = {p.identity: p for p in participants}
    last: dict[str, Mute] = {}
    checked = []
    for m in sorted(mutes, key=lambda m: (m.participant, m.start_s)):
        p = by_id.get(m.participant)
        if p is None:
            raise ScenarioError(f"{path}: mute of unknown participant {m.participant!r}")
        present = min(p.leave_s if p.leave_s is not None else math.inf, durations[p.identity])
        m = m if m.end_s is not None else Mute(m.participant, m.start_s, present)
        span = f"mute of {m.participant!r} at {m.start_s:.2f}-{m.end_s:.2f} s"
        if not m.start_s < m.end_s:
            raise ScenarioError(f"{path}: {span} ends before it starts")
        if m.start_s < p.join_s or m.end_s > present:
            raise ScenarioError(f"{path}: {span} is outside {m.participant!r}'s presence ({p.join_s:.2f}-{present:.2f} s)")
        if (prev := last.get(m.participant)) is not None and m.start_s < prev.end_s:
            raise ScenarioError(f"{path}: two mutes of {m.participant!r} overlap ({prev.start_s:.2f}-{prev.end_s:.2f} s and "
                                f"{m.start_s:.2f}-{m.end_s:.2f} s)")  # fmt: skip
        last[m.participant] = m
        for u in utterances:
            if u.participant == m.participant and u.start_s < m.end_s and m.start_s < u.end_s:
                raise ScenarioError(f"{path}: {span} covers their utterance at {u.start_s:.2f}-{u.end_s:.2f} s "
                                    f"(what a muted participant says reaches nobody: leave it out, or unmute first)")  # fmt: skip
        checked.append(m)
    return tuple(checked)
