"""Build a scenario from a script: espeak-ng speaks each line, sox resamples it, lines are placed
on each speaker's track, and the ground truth is the exact sample span of the placed speech.

Script format (TOML, see data/scripts/):

    name = "pair-2"
    sample_rate = 16000
    lead_in_s = 1.0          # silence before the first line
    tail_s = 1.5             # silence after the last line

    [[speakers]]
    identity = "alice"
    voice = "en-us+f3"       # espeak-ng voice (+variant)
    speed = 160              # words per minute
    join_s = 0.0             # optional: late joiners
    leave_s = 30.0           # optional: early leavers
                             # a speaker without lines is connected and silent (a track of zeros)

    [bleed]                  # optional: each microphone hears the others (kit/room/bleed.py)
    db = -20.0               # their level on it, relative to their own
    ms = 30.0                # their delay
    groups = [["alice", "bob"]]  # optional: who shares a room (default: everyone)

    [noise]                  # optional: background noise on every track
    kind = "pink"            # "pink" or "white"
    snr_db = 10.0            # against the speech power of the room
    seed = 1

    extends = "standup-4.toml"   # optional: take speakers/lines (and anything not set here) from another script

    [[lines]]
    speaker = "alice"
    text = "Good morning."
    gap_s = 0.8              # pause after the previous line ends; negative overlaps it
    # at_s = 12.0            # or: an absolute start time (parallel tracks, crosstalk)

    [[mutes]]                # optional: a muted microphone (kit/room/scenario.py), never over its own lines
    participant = "bob"
    start_s = 2.0
    end_s = 6.5              # optional: without it, muted until they leave

Same script, same tools -> byte-identical scenario.json (and identical samples). `place` gives the
ground truth without writing audio; `cached_room` synthesises a generated script once (data/generated/).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from kit.config import DATA_DIR, KitError
from kit.room.bleed import Bleed, add_bleed

_SILENCE = 1e-3  # |sample| below this (about -60 dBFS) is the synthesiser's silence
GENERATED_DIR = DATA_DIR / "generated"  # rooms generated from a script (sweep, meeting), cached by its hash
# 16 espeak-ng voices that sound distinct; the generated rooms take them in this order
VOICES = [
    "en-us+f3", "en-gb+m3", "en-us+m1", "en-gb+f2", "en-us+f4", "en-gb-x-rp+m2", "en-us+m5", "en-gb+f4",
    "en-029+m1", "en-gb-scotland+f3", "en-us+m7", "en-gb-x-rp+f1", "en-us+f1", "en-gb+m6", "en-us+m3", "en-gb+f1",
]  # fmt: skip


class ScriptError(KitError):
    pass


@dataclass(frozen=True)
class Speaker:
    identity: str
    voice: str
    speed: int = 160
    join_s: float = 0.0
    leave_s: float | None = None


@dataclass(frozen=True)
class Line:
    speaker: str
    text: str
    gap_s: float = 0.6
    at_s: float | None = None  # absolute start, overrides gap_s


@dataclass(frozen=True)
class Noise:
    kind: str = "pink"
    snr_db: float = 10.0
    seed: int = 0


def _load_toml(path: Path) -> dict:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScriptError(f"script not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScriptError(f"{path}: invalid TOML: {e}") from None
    if "extends" in raw:
        base = _load_toml(Path(path).parent / raw["extends"])
        raw = {**base, **{k: v for k, v in raw.items() if k != "extends"}}
    return raw


def read_script(path: Path) -> tuple[dict, list[Speaker], list[Line]]:
    raw = _load_toml(path)
    try:
        speakers = [Speaker(**s) for s in raw["speakers"]]
        lines = [Line(**line) for line in raw["lines"]]
    except KeyError as e:
        raise ScriptError(f"{path}: missing {e}") from None
    except TypeError as e:
        raise ScriptError(f"{path}: {e}") from None
    if "noise" in raw:
        try:
            noise = Noise(**raw["noise"])
        except TypeError as e:
            raise ScriptError(f"{path}: [noise]: {e}") from None
        if noise.kind not in ("pink", "white"):
            raise ScriptError(f"{path}: [noise] kind must be 'pink' or 'white', got {noise.kind!r}")
    ids = {s.identity for s in speakers}
    if len(ids) != len(speakers):
        raise ScriptError(f"{path}: duplicate speaker identity")
    if "bleed" in raw:
        script_bleed(raw, path).neighbours(list(ids))  # its groups name participants of the room
    for line in lines:
        if line.speaker not in ids:
            raise ScriptError(f"{path}: line for unknown speaker {line.speaker!r}")
        if not line.text.strip():
            raise ScriptError(f"{path}: empty line for {line.speaker!r}")
    if not lines:
        raise ScriptError(f"{path}: no lines")
    return raw, speakers, lines


def speak(text: str, voice: str, speed: int, rate: int) -> np.ndarray:
    """espeak-ng -> sox -> int16 samples at `rate`, trimmed to the speech itself."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise ScriptError(f"{tool} is not installed (Debian: apt-get install espeak-ng sox)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], capture_output=True)
        if r.returncode != 0 or not wav.exists():
            raise ScriptError(f"espeak-ng failed for voice {voice!r}: {r.stderr.decode(errors='replace').strip()}")
        raw = subprocess.run(
            ["sox", "-D", "-R", "--single-threaded", str(wav), "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r", str(rate), "-"],
            capture_output=True,
            check=True,
        ).stdout
    samples = np.frombuffer(raw, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.float32) / 32768.0) > _SILENCE)
    if len(loud) == 0:
        raise ScriptError(f"espeak-ng produced silence for {text!r}")
    return samples[loud[0] : loud[-1] + 1]


@dataclass(frozen=True)
class Placement:
    """Where every line of a script lands: the ground truth `synth` writes, before any audio file."""

    raw: dict  # the script's TOML (after `extends`)
    speakers: list[Speaker]
    placed: list[tuple[str, int, np.ndarray, str]]  # (speaker, start sample, samples, text), in script order
    rate: int
    total: int  # samples of every track

    @property
    def duration_s(self) -> float:
        return self.total / self.rate

    def mutes(self) -> list[dict]:
        """The scenario.json mutes, as the script lists them (no end_s: until the participant leaves)."""
        return [{"participant": m["participant"], "start_s": float(m["start_s"]),
                 "end_s": float(m["end_s"]) if "end_s" in m else None} for m in self.raw.get("mutes", [])]  # fmt: skip

    def utterances(self) -> list[dict]:
        """The scenario.json utterances: exact sample spans of the placed speech, by start."""
        return [
            {"participant": who, "start_s": start / self.rate, "end_s": (start + len(clip)) / self.rate, "text": text}
            for who, start, clip, text in sorted(self.placed, key=lambda p: p[1])
        ]


def place(script: Path) -> Placement:
    """Speak every line and place it on its speaker's track; checks the placement, writes nothing."""
    raw, speakers, lines = read_script(script)
    rate = int(raw.get("sample_rate", 16000))
    lead_in = float(raw.get("lead_in_s", 1.0))
    tail = float(raw.get("tail_s", 1.5))
    by_id = {s.identity: s for s in speakers}

    placed = []  # (speaker, start_sample, samples, text)
    cursor = round(lead_in * rate)
    for i, line in enumerate(lines):
        s = by_id[line.speaker]
        clip = speak(line.text, s.voice, s.speed, rate)
        if line.at_s is not None:
            start = round(line.at_s * rate)
        else:
            start = cursor if i == 0 else max(0, cursor + round(line.gap_s * rate))
        if start < round(s.join_s * rate):
            raise ScriptError(f"{script}: line {i + 1} of {s.identity!r} starts before it joins at {s.join_s} s")
        placed.append((s.identity, start, clip, line.text))
        cursor = start + len(clip)

    _check_placement(script, placed, by_id, rate)
    total = max(start + len(clip) for _, start, clip, _ in placed) + round(tail * rate)
    placement = Placement(raw, speakers, placed, rate, total)
    _check_mutes(script, placement)
    return placement


def _check_mutes(script: Path, p: Placement) -> None:
    """Before anything is written: each [[mutes]] entry names a speaker, spans forward in time inside
    the room, and covers none of that speaker's lines (the scenario's own rules, kit/room/scenario.py)."""
    ids = {s.identity for s in p.speakers}
    for i, m in enumerate(p.raw.get("mutes", [])):
        try:
            who, start, end = m["participant"], float(m["start_s"]), float(m.get("end_s", p.duration_s))
        except (KeyError, TypeError, ValueError) as e:
            raise ScriptError(f"{script}: mutes[{i}] needs participant and start_s, and end_s a number if given ({e})") from None
        if who not in ids:
            raise ScriptError(f"{script}: mutes[{i}] names unknown speaker {who!r}")
        if not 0 <= start < end <= p.duration_s:
            raise ScriptError(f"{script}: mutes[{i}] of {who!r} must have 0 <= start_s < end_s <= {p.duration_s:.2f} s")
        for u in p.utterances():
            if u["participant"] == who and u["start_s"] < end and start < u["end_s"]:
                raise ScriptError(f"{script}: mutes[{i}] of {who!r} covers their line at {u['start_s']:.2f} s: {u['text'][:30]!r}")


def script_bleed(raw: dict, path: Path) -> Bleed | None:
    """The script's [bleed] table, checked (None without one)."""
    try:
        return Bleed.from_table(raw["bleed"], str(path)) if "bleed" in raw else None
    except KitError as e:
        raise ScriptError(str(e)) from None


def synth(script: Path, out_dir: Path, bleed: Bleed | None = None) -> Path:
    """Write scenario.json and one FLAC per speaker into out_dir; return the json path. `bleed`: instead
    of the script's [bleed] table (`kit synth --bleed-db`)."""
    p = place(script)
    raw, speakers, placed, rate, total = p.raw, p.speakers, p.placed, p.rate, p.total
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks = {s.identity: np.zeros(total, dtype=np.int16) for s in speakers}  # a speaker without lines: silence
    for who, start, clip, _ in placed:
        tracks[who][start : start + len(clip)] = clip
    bleed = bleed or script_bleed(raw, script)
    if bleed is not None:
        tracks = add_bleed(tracks, rate, bleed)
    if "noise" in raw:
        tracks = _add_noise(tracks, placed, Noise(**raw["noise"]))
    participants = []
    for i, s in enumerate(speakers):
        file = _file_name(s.identity, i, [p["audio"] for p in participants])
        sf.write(out_dir / file, tracks[s.identity], rate, subtype="PCM_16", format="FLAC")
        participants.append({"identity": s.identity, "audio": file, "join_s": s.join_s, "leave_s": s.leave_s})
    doc = {"name": raw.get("name", Path(script).stem), "sample_rate": rate, "participants": participants, "utterances": p.utterances()}
    if p.mutes():
        doc["mutes"] = p.mutes()
    path = out_dir / "scenario.json"
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def cached_room(script: str, name: str, cache: Path = GENERATED_DIR) -> Path:
    """The scenario directory of a script (its TOML text), synthesised once into
    cache/<name>-<sha256 of the script, 10 hex> and reused: same script, same room."""
    room = cache / f"{name}-{hashlib.sha256(script.encode()).hexdigest()[:10]}"
    if (room / "scenario.json").exists():
        return room
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{room.name}.", dir=cache))  # its own: two builders never share one
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would make the cached room private to this user
        (tmp / "script.toml").write_text(script, encoding="utf-8")
        synth(tmp / "script.toml", tmp)
        try:
            tmp.rename(room)  # atomic: a room directory is complete or absent
        except OSError:
            if not (room / "scenario.json").exists():
                raise  # not another builder's finished copy of the same room
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a rename, already gone
    return room


def _check_placement(script: Path, placed: list, by_id: dict[str, Speaker], rate: int) -> None:
    """Before anything is written: no speaker talks over itself or after leaving."""
    ends: dict[str, int] = {}
    for who, start, clip, text in sorted(placed, key=lambda p: p[1]):
        if start < ends.get(who, 0):
            raise ScriptError(f"{script}: two lines of {who!r} overlap at {start / rate:.2f} s ({text[:30]!r})")
        ends[who] = start + len(clip)
        leave = by_id[who].leave_s
        if leave is not None and ends[who] > round(leave * rate):
            raise ScriptError(f"{script}: {who!r} speaks until {ends[who] / rate:.2f} s, after leaving at {leave} s")


def _file_name(identity: str, index: int, taken: list[str]) -> str:
    """A safe file name for a participant's track: the identity itself when it is plain ASCII."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity).strip("._") or "participant"
    name = f"{slug}.flac"
    return name if name not in taken else f"{slug}-{index + 1}.flac"


def _add_noise(tracks: dict[str, np.ndarray], placed: list, noise: Noise) -> dict[str, np.ndarray]:
    """Deterministic background noise on every track at `snr_db` below the room's speech power."""
    speech = np.concatenate([clip.astype(np.float64) for _, _, clip, _ in placed])
    noise_power = np.mean(speech**2) / 10 ** (noise.snr_db / 10)
    out = {}
    for i, (identity, track) in enumerate(tracks.items()):
        rng = np.random.default_rng(noise.seed + i)
        n = rng.standard_normal(len(track))
        if noise.kind == "pink":  # 1/f power: shape white noise's spectrum by 1/sqrt(f)
            spectrum = np.fft.rfft(n)
            spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
            spectrum[0] = 0
            n = np.fft.irfft(spectrum, len(track))
        n *= np.sqrt(noise_power / np.mean(n**2))
        out[identity] = np.clip(np.round(track + n), -32768, 32767).astype(np.int16)
    return out
