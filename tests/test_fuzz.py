"""Fuzzing the two doors into the kit: the scenario loader (kit/room/scenario.py) and the importer
(kit/room/importer.py). Every generated input must either be refused with the kit's one-line error
(exit 2 through the CLI, nothing written) or be accepted as a scenario that keeps every promise
the rest of the kit relies on; a few accepted ones are then run end to end.

Budgets come from the hypothesis profile (tests/conftest.py): CI runs a fixed, derandomized set;
`pytest tests/test_fuzz.py --hypothesis-profile=long` hunts with 40x the examples. A failure the
fuzzer finds is fixed and kept as an explicit test in tests/test_bad_inputs.py.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from kit.cli import main
from kit.config import RunConfig
from kit.results import metrics
from kit.room import scenario
from kit.room.audio import resample
from kit.room.importer import RATE, RecordingError, import_room
from kit.room.scenario import ScenarioError
from kit.room.synth import speak
from kit.run.runner import run

BUDGET = settings.default.max_examples  # 200 on CI (conftest.py), 8000 with --hypothesis-profile=long
# pytest-timeout's 300 s per test holds for CI's budget; a long hunt (about 25 minutes in all) needs more.
pytestmark = pytest.mark.timeout(300 if BUDGET <= 1000 else 3600)
RATES = [8000, 11025, 16000, 22050, 44100, 48000]
MAX_TRACK_S = 2.0  # every generated room is at most this long: a full run takes a few seconds


# --- generated scenario directories ---------------------------------------------------------------------


@dataclass
class Track:
    samples: np.ndarray  # frames, or frames x channels
    rate: int
    kind: str = "flac16"  # flac16 | wav16 | wav24 | float: how it is written
    raw: bytes | None = None  # written as these bytes instead (damaged or odd files)


@dataclass
class Room:
    doc: dict
    tracks: dict[str, Track] = field(default_factory=dict)  # file name -> track
    text: str | None = None  # the scenario.json text, when a mutation wrote it by hand

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name, track in self.tracks.items():
            _write_track(directory / name, track)
        text = self.text if self.text is not None else json.dumps(self.doc, indent=1)  # NaN -> NaN, as Python writes it
        (directory / "scenario.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        return directory


def _write_track(path: Path, t: Track) -> None:
    if t.raw is not None:
        path.write_bytes(t.raw)
    elif t.kind == "float":
        sf.write(path, t.samples.astype(np.float32), t.rate, subtype="FLOAT", format="WAV")
    else:
        fmt, subtype = {"flac16": ("FLAC", "PCM_16"), "wav16": ("WAV", "PCM_16"), "wav24": ("WAV", "PCM_24")}[t.kind]
        sf.write(path, np.clip(t.samples, -1, 1), t.rate, subtype=subtype, format=fmt)


def _flac_without_samples(rate: int = 16000) -> bytes:
    """A FLAC stream header that declares 0 samples (read by libsndfile as: length unknown) and no frame."""
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + ((rate << 44) | (0 << 41) | (15 << 36)).to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


@functools.lru_cache(maxsize=1)
def _words() -> np.ndarray:
    """About a second of espeak-ng speech at 48 kHz, float32 (made once)."""
    return speak("Can you hear me?", "en-us", 190, 48000).astype(np.float32) / 32768


identities = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(str.strip),
    st.sampled_from(["alice", "Bob Smith", "josé", "日本語", "👩‍💻", "a/b", "x" * 200, "-", "0"]),
)


@st.composite
def signals(draw, n: int, rate: int, speech: int = 1) -> np.ndarray:
    """speech (`speech` times as likely as each other kind), silence, noise, a tone burst, a clipped
    tone (float WAVs keep |x| > 1), or clicks."""
    kind = draw(st.sampled_from(["speech"] * speech + ["silence", "noise", "tone", "clipped", "impulses"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    t = np.arange(n) / rate
    if kind == "speech":  # from a random point of the words, looped to fill the track
        words = resample(_words(), 48000, rate)
        return np.resize(np.roll(words, -draw(st.integers(0, len(words) - 1))), n).astype(np.float32)
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "noise":
        return (rng.standard_normal(n) * draw(st.sampled_from([1e-4, 0.05, 0.3]))).astype(np.float32)
    if kind == "impulses":
        x = np.zeros(n, np.float32)
        x[rng.integers(0, n, size=max(1, n // 1000))] = 1.0
        return x
    tone = np.sin(2 * np.pi * draw(st.sampled_from([150.0, 440.0, 1000.0])) * t)
    burst = tone * ((t > t[-1] * 0.2) & (t < t[-1] * 0.7))
    return (burst * (4.0 if kind == "clipped" else 0.5)).astype(np.float32)


@st.composite
def rooms(draw) -> Room:
    """A valid scenario: 1-3 participants, tracks of 1 sample to 2 s, late joins, early leaves,
    non-overlapping utterances within each one's presence, unicode identities, any common rate."""
    rate = draw(st.sampled_from(RATES))
    ids = draw(st.lists(identities, min_size=1, max_size=3, unique=True))
    reference = draw(st.booleans())
    doc = {"name": draw(identities), "sample_rate": rate, "participants": [], "utterances": []}
    if not reference or draw(st.booleans()):
        doc["reference"] = reference
    tracks = {}
    for k, identity in enumerate(ids):
        n = draw(st.one_of(st.integers(1, 400), st.integers(1, int(MAX_TRACK_S * rate))))
        kind = draw(st.sampled_from(["flac16", "wav16", "wav24", "float"]))
        name = f"p{k}." + ("flac" if kind == "flac16" else "wav")
        tracks[name] = Track(draw(signals(n, rate)), rate, kind)
        track_s = n / rate
        join_s = track_s * draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9]))
        leave_s = None
        if draw(st.booleans()):
            leave_s = join_s + (track_s - join_s) * draw(st.sampled_from([0.5, 1.0, 1.5]))
            leave_s = leave_s if leave_s > join_s else None
        p = {"identity": identity, "audio": name, "leave_s": leave_s}
        if join_s or draw(st.booleans()):
            p["join_s"] = join_s
        doc["participants"].append(p)
        end_s = min(track_s, leave_s if leave_s is not None else math.inf)
        cuts = sorted(draw(st.lists(st.floats(0, 1), max_size=6)))
        for a, b in zip(cuts[::2], cuts[1::2]):
            start, stop = join_s + (end_s - join_s) * a, min(end_s, join_s + (end_s - join_s) * b)
            if start < stop:
                text = draw(st.text(max_size=30)) if reference else ""
                doc["utterances"].append({"participant": identity, "start_s": start, "end_s": stop, "text": text})
    if not doc["utterances"]:  # somebody speaks (the loader refuses a room where nobody does)
        p = doc["participants"][0]
        end_s = min(len(tracks[p["audio"]].samples) / rate, p["leave_s"] if p["leave_s"] is not None else math.inf)
        doc["utterances"].append({"participant": p["identity"], "start_s": p.get("join_s", 0.0), "end_s": end_s, "text": ""})
    draw(st.randoms()).shuffle(doc["utterances"])
    return Room(doc, tracks)


# --- mutations of a valid room --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),  # floats: NaN, ±Infinity too
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _places(doc):
    """Every (container, key) in the document."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in list(items):
        yield doc, key
        yield from _places(value)


def _numbers(doc):
    return [(c, k) for c, k in _places(doc) if isinstance(c[k], (int, float)) and not isinstance(c[k], bool)]


DOC_OPS = ["set", "delete", "negate", "scale", "nonfinite", "duplicate", "overlap", "swap", "identity", "type"]


@st.composite
def mutated_rooms(draw) -> Room:
    room = draw(rooms())
    doc, rnd = room.doc, draw(st.randoms())
    what = draw(st.sampled_from(["document", "document", "tracks", "both", "text"]))
    doc_ops = draw(st.integers(1, 3)) if what in ("document", "both") else 0
    track_ops = draw(st.integers(1, 2)) if what in ("tracks", "both") else 0
    for op in [draw(st.sampled_from(DOC_OPS)) for _ in range(doc_ops)] + ["track"] * track_ops:
        try:  # a mutation that does not fit the shape left by an earlier one is skipped
            places, numbers = list(_places(doc)), _numbers(doc)
            if op == "set" and places:
                c, k = rnd.choice(places)
                c[k] = draw(json_values)
            elif op == "delete" and places:
                c, k = rnd.choice(places)
                del c[k]
            elif op == "negate" and numbers:
                c, k = rnd.choice(numbers)
                c[k] = -c[k] if c[k] else -1.0
            elif op == "scale" and numbers:
                c, k = rnd.choice(numbers)
                c[k] = c[k] * draw(st.sampled_from([0, 0.5, 3, 1000, 1e300]))
            elif op == "nonfinite" and numbers:
                c, k = rnd.choice(numbers)
                c[k] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
            elif op == "duplicate" and isinstance(doc.get("participants"), list) and doc["participants"]:
                group = rnd.choice([g for g in ("participants", "utterances") if isinstance(doc.get(g), list) and doc[g]])
                doc[group].append(json.loads(json.dumps(rnd.choice(doc[group]))))
            elif op == "overlap" and isinstance(doc.get("utterances"), list) and doc["utterances"]:
                u = dict(rnd.choice(doc["utterances"]))
                half = (u["end_s"] - u["start_s"]) / 2
                doc["utterances"].append(dict(u, start_s=u["start_s"] + half, end_s=u["end_s"] + half))
            elif op == "swap" and places:
                c, _ = rnd.choice(places)
                if isinstance(c, dict):
                    for a, b in (("join_s", "leave_s"), ("start_s", "end_s")):
                        if a in c and b in c:
                            c[a], c[b] = c[b], c[a]
            elif op == "identity" and isinstance(doc.get("participants"), list) and doc["participants"]:
                p = rnd.choice(doc["participants"])
                if isinstance(p, dict):
                    p["identity"] = draw(st.sampled_from(["", " ", "a\nb", "\t", "\ud800", "\x00", "é\u0301", "\u200b"]))
            elif op == "type":
                key = draw(st.sampled_from(["sample_rate", "participants", "utterances", "reference", "name"]))
                doc[key] = draw(st.sampled_from(["16000", 16000.5, 0, -16000, [], {}, "x", True, None]))
            elif op == "track" and room.tracks:
                name = rnd.choice(sorted(room.tracks))
                t = room.tracks[name]
                damage = draw(st.sampled_from(["empty-file", "header-only", "flac-no-samples", "garbage", "truncated",
                                               "stereo", "other-rate", "nan", "inf", "one-sample", "missing"]))  # fmt: skip
                if damage == "missing":
                    del room.tracks[name]
                elif damage == "empty-file":
                    t.raw = b""
                elif damage == "header-only":
                    t.samples, t.kind = np.zeros(0, np.float32), "wav16"
                elif damage == "flac-no-samples":
                    t.raw = _flac_without_samples(t.rate)
                elif damage == "garbage":
                    t.raw = draw(st.binary(min_size=1, max_size=200))
                elif damage == "truncated":
                    buf = io.BytesIO()
                    sf.write(buf, np.clip(np.nan_to_num(t.samples), -1, 1), t.rate, format="FLAC", subtype="PCM_16")
                    data = buf.getvalue()
                    t.raw = data[: draw(st.integers(0, max(0, len(data) - 1)))]
                elif damage == "stereo" and t.samples.ndim == 1:
                    t.samples = np.stack([t.samples, t.samples], axis=1)
                elif damage == "other-rate":
                    t.rate = 24000 if t.rate != 24000 else 16000
                elif damage in ("nan", "inf") and len(t.samples):
                    t.samples, t.kind = t.samples.copy(), "float"
                    t.samples[draw(st.integers(0, len(t.samples) - 1))] = np.nan if damage == "nan" else -np.inf
                elif damage == "one-sample":
                    t.samples = t.samples[:1]
        except (TypeError, KeyError, AttributeError, IndexError):
            pass
    if what == "text":  # mutations of the text itself: what json.dumps never writes
        text = json.dumps(doc, indent=1)
        literal = draw(st.sampled_from(["1e999", "-1e999", "1" + "0" * 400, "1" + "0" * 5000, "-0", "Infinity", "NaN"]))
        spots = [i for i, ch in enumerate(text) if ch.isdigit() and not text[i - 1].isalnum() and text[i - 1] != "."]
        if spots:
            i = rnd.choice(spots)
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] in ".eE-+"):
                j += 1
            text = text[:i] + literal + text[j:]
        room.text = draw(st.sampled_from([text, text[: len(text) // 2], "[" * 5000 + "]" * 5000, "\ud800" + text, "[]"]))
    return room


# --- the promises of a loaded scenario ------------------------------------------------------------------


def _check_loaded(sc: scenario.Scenario) -> None:
    """What the room, the pipelines and the metrics rely on."""
    assert isinstance(sc.sample_rate, int) and not isinstance(sc.sample_rate, bool) and sc.sample_rate > 0
    assert sc.participants and len(set(sc.identities)) == len(sc.identities)
    assert math.isfinite(sc.duration_s) and 0 < sc.duration_s <= MAX_TRACK_S + 1e-9
    assert isinstance(sc.name, str) and sc.name.strip() and isinstance(sc.reference, bool)
    track_s = {}
    for p in sc.participants:
        assert isinstance(p.identity, str) and p.identity.strip()
        samples = sc.read_audio(p.identity)  # what the room does with it
        assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
        assert np.isfinite(samples).all()
        track_s[p.identity] = len(samples) / sc.sample_rate
        assert math.isfinite(p.join_s) and 0 <= p.join_s < track_s[p.identity]
        assert p.leave_s is None or (math.isfinite(p.leave_s) and p.leave_s > p.join_s)
    assert max(track_s.values()) == sc.duration_s
    by_id = {p.identity: p for p in sc.participants}
    last: dict[str, float] = {}
    for u in sorted(sc.utterances, key=lambda u: (u.participant, u.start_s)):
        p = by_id[u.participant]
        assert isinstance(u.text, str) and math.isfinite(u.start_s) and math.isfinite(u.end_s)
        assert p.join_s <= u.start_s < u.end_s <= min(track_s[p.identity], p.leave_s or math.inf)
        assert u.start_s >= last.get(u.participant, 0.0)
        last[u.participant] = u.end_s


def _one_line(e: Exception) -> None:
    assert str(e) and "\n" not in str(e) and "\r" not in str(e), repr(str(e))


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def _load_or_refuse(room: Room, tmp: Path) -> scenario.Scenario | None:
    directory = room.write(tmp / "room")
    try:
        sc = scenario.load(directory)
    except ScenarioError as e:
        _one_line(e)
        event("refused: " + _reason(str(e)))  # --hypothesis-show-statistics: what the fuzzer reached
        code, err = _cli(["compare", "--scenario", str(directory), "--results", str(tmp / "results")])
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert not (tmp / "results").exists(), "nothing written for a refused scenario"
        return None
    _check_loaded(sc)
    event("loaded")
    return sc


def _reason(message: str) -> str:
    """The kind of a refusal: its words, without the path, names, numbers and quoted values."""
    import re

    message = message.split(": ", 1)[1] if message.startswith("/") else message
    return re.sub(r"'[^']*'|\"[^\"]*\"|\S*\d\S*", "_", message)[:70]


# --- the fuzz tests -------------------------------------------------------------------------------------


@given(rooms())
@pytest.mark.replay
def test_every_generated_valid_room_loads(room):
    with tempfile.TemporaryDirectory() as tmp:
        sc = _load_or_refuse(room, Path(tmp))
    assert sc is not None, "a valid room was refused"


@settings(max_examples=BUDGET)
@given(mutated_rooms())
@pytest.mark.replay
def test_a_mutated_room_is_refused_in_one_line_or_loads_whole(room):
    with tempfile.TemporaryDirectory() as tmp:
        _load_or_refuse(room, Path(tmp))


HAND_PICKED = Room(  # three people, a late joiner, an early leaver, unicode names, 44.1 kHz, clipping
    {"name": "réunion", "sample_rate": 44100, "reference": True,
     "participants": [{"identity": "ana", "audio": "a.flac"}, {"identity": "日本語", "audio": "b.wav", "join_s": 0.4},
                      {"identity": "👩‍💻 dev", "audio": "c.wav", "leave_s": 1.2}],
     "utterances": [{"participant": "ana", "start_s": 0.2, "end_s": 0.9, "text": "bonjour"},
                    {"participant": "日本語", "start_s": 0.5, "end_s": 1.5, "text": "こんにちは"},
                    {"participant": "👩‍💻 dev", "start_s": 0.1, "end_s": 1.1, "text": "hi"}]},
    {"a.flac": Track(np.sin(np.arange(88200) * 0.02).astype(np.float32) * 0.5, 44100),
     "b.wav": Track(np.sin(np.arange(88200) * 0.05).astype(np.float32) * 3.0, 44100, "float"),
     "c.wav": Track(np.zeros(66150, np.float32), 44100, "wav24")},
)  # fmt: skip
TINY = Room(  # one participant, a 1-sample track, one utterance of that sample
    {"name": "t", "sample_rate": 8000, "participants": [{"identity": "x", "audio": "x.flac"}],
     "utterances": [{"participant": "x", "start_s": 0, "end_s": 1 / 8000, "text": "x"}]},
    {"x.flac": Track(np.zeros(1, np.float32), 8000)},
)


@settings(max_examples=max(2, BUDGET // 40), deadline=None)
@example(HAND_PICKED)
@example(TINY)
@given(rooms())
@pytest.mark.replay
def test_a_loadable_room_runs_to_completion_in_console_mode(room):
    """participant_entrypoint with the calibration STT: the run completes, its tables compute."""
    with tempfile.TemporaryDirectory() as tmp:
        sc = _load_or_refuse(room, Path(tmp))
        assert sc is not None
        config = RunConfig(scenario=str(sc.path), archs=("participant_entrypoint",), stt="delay:0.1",
                           results_dir=Path(tmp) / "results")  # fmt: skip
        run_dir = run(config)
        record = json.loads((run_dir / "run.json").read_text())
        assert record["complete"], record["archs"]
        tables = metrics.compute(run_dir)
        assert len(tables.utterances[tables.utterances["kind"] == "reference"]) == len(sc.utterances)


# --- the importer ----------------------------------------------------------------------------------------


@dataclass
class Recording:
    stem: str
    samples: np.ndarray  # frames x channels
    rate: int
    kind: str  # wav16 | float | flac16
    offset: float | None = None


@st.composite
def recordings(draw) -> list[Recording]:
    out = []
    stems = draw(st.lists(st.sampled_from(["alice", "bob", "Bob Smith", "bob_smith", "josé", "Zoë 日本", "a.b", "c-3", "x"]),
                          min_size=1, max_size=3, unique=True))  # fmt: skip
    for stem in stems:
        rate = draw(st.one_of(st.sampled_from(RATES + [32000, 96000]), st.integers(1000, 192000)))
        channels = draw(st.integers(1, 3))
        n = draw(st.one_of(st.integers(rate // 4, int(MAX_TRACK_S * rate)), st.integers(0, 300)))
        kind = draw(st.sampled_from(["wav16", "float", "flac16"]))
        kind = "wav16" if kind == "flac16" and rate > 65535 else kind  # libsndfile's FLAC encoder refuses those
        mono = draw(signals(max(n, 1), rate, speech=5))[:n]
        samples = np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)
        extreme = draw(st.sampled_from([None, None, None, "nan", "inf", "huge", "tiny"]))
        if extreme and n and kind == "float":
            i, c = draw(st.integers(0, n - 1)), draw(st.integers(0, channels - 1))
            samples[i, c] = {"nan": np.nan, "inf": np.inf, "huge": 3e38, "tiny": 1e-45}[extreme]
        offset = draw(st.one_of(st.none(), st.sampled_from([0.25, -0.01, 0.0, -0.5, 1.5, -2.5])))
        out.append(Recording(stem, samples, rate, kind, offset))
    return out


def _write_recording(directory: Path, r: Recording) -> Path:
    suffix = ".flac" if r.kind == "flac16" else ".wav"
    path = directory / f"{r.stem}{suffix}"
    if r.kind == "float":
        sf.write(path, r.samples, r.rate, subtype="FLOAT", format="WAV")
    else:
        sf.write(path, np.clip(r.samples, -1, 1), r.rate, subtype="PCM_16", format="FLAC" if r.kind == "flac16" else "WAV")
    return path


def _import_or_refuse(recs: list[Recording], tmp: Path) -> scenario.Scenario | None:
    (tmp / "in").mkdir()
    args = []
    for r in recs:
        path = _write_recording(tmp / "in", r)
        args.append(str(path) + (f"@{r.offset}" if r.offset is not None else ""))
    out = tmp / "scenarios" / "room"
    try:
        sc = import_room(args, out).scenario
    except RecordingError as e:
        _one_line(e)
        event("refused: " + _reason(str(e)))
        assert not out.exists() and (not out.parent.exists() or not list(out.parent.iterdir())), "nothing half-written"
        code, err = _cli(["scenario", "import", *args, "-o", str(out)])
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert not out.exists()
        if "not finite" in str(e):  # a damaged recording is refused by name, with where
            damaged = [r for r in recs if not np.isfinite(r.samples).all()]
            assert any(str(e).startswith(f"{r.stem}.") for r in damaged) and "at sample" in str(e), str(e)
        return None
    assert all(np.isfinite(r.samples).all() for r in recs), "non-finite samples were imported"
    _check_loaded_import(sc, recs)
    event("imported")
    return sc


def _check_loaded_import(sc: scenario.Scenario, recs: list[Recording]) -> None:
    assert sc.sample_rate == RATE and len(sc.participants) == len(recs) and sc.reference is False
    lengths = {len(sc.read_audio(i)) for i in sc.identities}
    assert len(lengths) == 1, "every track padded to the longest"
    for p in sc.participants:
        assert sf.info(str(p.audio)).channels == 1
    for u in sc.utterances:
        assert u.text == "" and 0 <= u.start_s < u.end_s <= sc.duration_s


@settings(max_examples=max(5, BUDGET // 4))
@given(recordings())
@pytest.mark.replay
def test_an_imported_recording_is_refused_in_one_line_or_becomes_a_valid_room(recs):
    with tempfile.TemporaryDirectory() as tmp:
        _import_or_refuse(recs, Path(tmp))


@st.composite
def speech_recordings(draw) -> list[Recording]:
    """1-2 recordings of real speech at any rate, 1-2 channels, quiet to clipped, placed anywhere."""
    out = []
    for stem in draw(st.lists(st.sampled_from(["alice", "Bob Smith", "josé"]), min_size=1, max_size=2, unique=True)):
        rate = draw(st.one_of(st.sampled_from(RATES), st.integers(8000, 96000)))
        words = resample(_words(), 48000, rate) * draw(st.sampled_from([0.3, 1.0, 3.0]))  # 3.0: clipped
        lead = np.zeros(round(draw(st.floats(0, 0.5)) * rate), np.float32)
        mono = np.concatenate([lead, words, np.zeros(round(0.2 * rate), np.float32)])
        channels = draw(st.integers(1, 2))
        samples = np.stack([mono] * channels, axis=1)
        kind = draw(st.sampled_from(["wav16", "float", "flac16"]))
        kind = "wav16" if kind == "flac16" and rate > 65535 else kind
        out.append(Recording(stem, samples, rate, kind, draw(st.sampled_from([None, 0.3, -0.1]))))
    return out


@settings(max_examples=max(1, BUDGET // 100), deadline=None)
@given(speech_recordings())
@pytest.mark.replay
def test_an_imported_room_runs_to_completion_in_console_mode(recs):
    with tempfile.TemporaryDirectory() as tmp:
        sc = _import_or_refuse(recs, Path(tmp))
        assert sc is not None, "recordings of speech were refused"
        assert {u.participant for u in sc.utterances} == set(sc.identities), "everyone's speech was found"
        run_dir = run(RunConfig(scenario=str(sc.path), archs=("participant_entrypoint",), stt="delay:0.1",
                                results_dir=Path(tmp) / "results"))  # fmt: skip
        assert json.loads((run_dir / "run.json").read_text())["complete"]
        metrics.compute(run_dir)


def test_the_fuzz_budget_is_the_profile_s():
    """The CI profile is derandomized and bounded (conftest.py); `long` is there for hunting."""
    ci, long = settings.get_profile("ci"), settings.get_profile("long")
    assert ci.derandomize and ci.deadline is not None and ci.max_examples <= 300
    assert long.max_examples > 10 * ci.max_examples
