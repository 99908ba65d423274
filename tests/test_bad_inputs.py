"""The README's catalogue of bad inputs: each gives one clear line, exit code 2, and leaves nothing
half-written (no results directory, no scenario directory)."""

import json
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

from kit.cli import main
from kit.config import DATA_DIR, SCENARIOS_DIR


def _room(tmp, change=None, audio=None):
    """A copy of pair-2 with its json or bob's audio spoilt."""
    room = tmp / "room"
    shutil.copytree(SCENARIOS_DIR / "pair-2", room)
    if change:
        doc = json.loads((room / "scenario.json").read_text())
        change(doc)
        (room / "scenario.json").write_text(json.dumps(doc))
    if audio is not None:
        sf.write(room / "bob.flac", *audio)
    return str(room)


def _overlap(doc):
    u = doc["utterances"][0]
    doc["utterances"].append(dict(u, start_s=u["start_s"] + 1, end_s=u["end_s"] + 1))


def _file(tmp, name, text):
    (tmp / name).write_text(text)
    return str(tmp / name)


def _raw_track(tmp, data: bytes):
    """pair-2 with bob's track replaced by these bytes."""
    room = _room(tmp)
    (tmp / "room" / "bob.flac").write_bytes(data)
    return room


def _flac_without_samples(rate=16000):
    """A valid FLAC stream header declaring 0 samples (libsndfile: length unknown), and no frame."""
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + ((rate << 44) | (15 << 36)).to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def _float_wav_room(tmp):
    """pair-2 with bob's track a float WAV holding NaN and Infinity."""
    room = _room(tmp, change=lambda d: d["participants"][1].update(audio="bob.wav"))
    x, rate = sf.read(tmp / "room" / "bob.flac", dtype="float32")
    x[16000], x[16001] = np.nan, np.inf
    sf.write(tmp / "room" / "bob.wav", x, rate, subtype="FLOAT")
    return room


def _text(tmp, old, new):
    """pair-2 with its scenario.json edited as text (what json.dumps would never write)."""
    room = _room(tmp)
    path = tmp / "room" / "scenario.json"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return room


def _recording(tmp, samples, rate=16000, name="alice.wav", subtype="FLOAT"):
    (tmp / "in").mkdir(exist_ok=True)
    sf.write(tmp / "in" / name, samples, rate, subtype=subtype)
    return str(tmp / "in" / name)


def _nan_recording(tmp):
    x = (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    x[8000], x[8001] = np.nan, np.inf
    return _recording(tmp, x)


CATALOGUE = [
    # (what, argv builder, message)
    ("unknown architecture", lambda t: ["run", "--arch", "telepathy", "--scenario", "pair-2"], "unknown architecture 'telepathy'"),
    ("missing scenario", lambda t: ["compare", "--scenario", str(t / "nowhere")], "scenario not found"),
    ("scenario that is not JSON", lambda t: ["compare", "--scenario", _file(t, "s.json", "{oops")], "invalid JSON"),
    ("stereo audio", lambda t: ["compare", "--scenario", _room(t, audio=(np.zeros((16000 * 20, 2), "int16"), 16000))], "must be mono"),
    ("audio at another rate", lambda t: ["compare", "--scenario", _room(t, audio=(np.zeros(8000 * 20, "int16"), 8000))], "8000 Hz, the scenario declares 16000 Hz"),
    ("two turns of one speaker overlap", lambda t: ["compare", "--scenario", _room(t, change=_overlap)], "two utterances of 'alice' overlap"),
    ("utterance of an unknown participant", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["utterances"][0].update(participant="eve"))], "unknown participant 'eve'"),
    ("missing model", lambda t: ["compare", "--scenario", "pair-2", "--model", str(t / "no-model")], "Whisper model not found"),
    ("unknown STT", lambda t: ["compare", "--scenario", "pair-2", "--stt", "delay:soon"], "unknown STT 'delay:soon'"),
    ("missing pricing file", lambda t: ["compare", "--scenario", "pair-2", "--pricing", str(t / "p.csv")], "pricing file not found"),
    ("pricing without a source", lambda t: ["compare", "--scenario", "pair-2", "--pricing", _file(t, "p.csv", "item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,0.01,u,,2026-01-01,\n")], "needs a source_url"),
    ("results directory is a file", lambda t: ["compare", "--scenario", "pair-2", "--results", _file(t, "results-file", "")], "results directory is a file"),
    ("results directory cannot be created", lambda t: ["compare", "--scenario", "pair-2", "--results", _file(t, "f", "") + "/sub"], "cannot write results to"),
    ("bad --participants", lambda t: ["sweep", "--participants", "1,two"], "--participants takes comma-separated whole numbers"),
    ("--cpus beyond the machine", lambda t: ["compare", "--scenario", "pair-2", "--cpus", "999", "--results", str(t / "r")], "--cpus must be between 1 and"),
    ("bad stt-bench settings", lambda t: ["stt-bench", "--settings", "2x1"], "each item is three positive integers"),
    ("synth script with an unknown speaker", lambda t: ["synth", _file(t, "s.toml", '[[speakers]]\nidentity="a"\nvoice="en-us"\n[[lines]]\nspeaker="b"\ntext="hi"\n'), "-o", str(t / "out")], "unknown speaker 'b'"),
    ("synth script that is not TOML", lambda t: ["synth", _file(t, "s.toml", "speakers = ["), "-o", str(t / "out")], "invalid TOML"),
    ("report of a directory without a run", lambda t: ["report", str(t / "empty")], "no run found"),
]


# The loader's and the importer's last holes (issue 19), each found by hand or by tests/test_fuzz.py.
# Their rows are not in the docs' catalogue yet: once they are, join them to CATALOGUE.
LOADER_AND_IMPORT = [
    ("a track with zero samples", lambda t: ["compare", "--scenario", _raw_track(t, _flac_without_samples())], "audio of 'bob' is empty"),
    ("a track of 0 bytes", lambda t: ["compare", "--scenario", _raw_track(t, b"")], "audio of 'bob' is empty: bob.flac is a file of 0 bytes"),
    ("NaN in scenario.json", lambda t: ["compare", "--scenario", _text(t, '"join_s": 0.0', '"join_s": NaN')], "participants[0].join_s is NaN: every number must be finite"),
    ("Infinity or 1e999 in scenario.json", lambda t: ["compare", "--scenario", _text(t, '"sample_rate": 16000', '"sample_rate": 1e999')], "sample_rate is Infinity: every number must be finite"),
    ("a number too long to read", lambda t: ["compare", "--scenario", _text(t, '"join_s": 0.0', '"join_s": 1' + "0" * 5000)], "invalid JSON: Exceeds the limit (4300 digits)"),
    ("JSON nested too deeply", lambda t: ["compare", "--scenario", _file(t, "s.json", "[" * 100000 + "]" * 100000)], "invalid JSON: nested too deeply"),
    ("a negative time", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["utterances"][0].update(start_s=-1))], "utterances[0].start_s is negative (-1 s)"),
    ("a time that is not a number", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["participants"][1].update(join_s="soon"))], "participants[1].join_s must be a number of seconds, not 'soon'"),
    ("a missing field", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["participants"][1].pop("audio"))], "missing field 'audio' in participants[1]"),
    ("leave_s before join_s", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["participants"][1].update(join_s=2.0, leave_s=1.0))], "'bob' leaves at 1.0 s, before joining at 2.0 s"),
    ("an utterance before its speaker joins", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["participants"][1].update(join_s=6.0))], "starts before 'bob' joins (6.00 s)"),
    ("an utterance after its speaker leaves", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d["participants"][1].update(leave_s=7.0))], "ends after 'bob' leaves (7.00 s)"),
    ("a participant joining after its track ends", lambda t: ["compare", "--scenario", _room(t, change=lambda d: (d["participants"][1].update(join_s=100.0), d.update(utterances=d["utterances"][:1])))], "'bob' joins at 100.0 s, after its track ends"),
    ("a sample rate that is not a positive whole number", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d.update(sample_rate=16000.5))], "sample_rate must be a positive whole number of Hz, not 16000.5"),
    ("an identity that is not valid Unicode", lambda t: ["compare", "--scenario", _text(t, '"identity": "bob"', '"identity": "\\ud800"')], "participants[1].identity is not valid Unicode text"),
    ("a room where nobody speaks", lambda t: ["compare", "--scenario", _room(t, change=lambda d: d.update(utterances=[]))], "no utterances: a room where nobody speaks has nothing to measure"),
    ("a track with NaN or infinite samples", lambda t: ["compare", "--scenario", _float_wav_room(t)], "audio of 'bob' has samples that are not finite numbers: bob.wav has nan at sample 16000 (1.000 s)"),
    ("import of a recording with NaN or infinite samples", lambda t: ["scenario", "import", _nan_recording(t), "-o", str(t / "out")], "alice.wav: 2 samples are not finite numbers (NaN or infinity), the first nan at sample 8000 (0.500 s)"),
    ("import of recordings where nobody speaks", lambda t: ["scenario", "import", _recording(t, np.zeros(16000, np.float32)), "-o", str(t / "out")], "no utterance in alice.wav (the speech detector found none)"),
    ("import with an offset in the wrong unit", lambda t: ["scenario", "import", _recording(t, np.zeros(16000, np.float32)) + "@90000", "-o", str(t / "out")], "an offset of 90000 s is more than 4 hours"),
    ("import with --min-silence nan", lambda t: ["scenario", "import", _recording(t, np.zeros(16000, np.float32)), "-o", str(t / "out"), "--min-silence", "nan"], "--min-silence must be a number of seconds of at least 0, not nan"),
]  # fmt: skip


@pytest.mark.parametrize("what, argv, message", CATALOGUE + LOADER_AND_IMPORT, ids=[c[0] for c in CATALOGUE + LOADER_AND_IMPORT])
def test_bad_input(what, argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default results/ would land here
    args = argv(tmp_path)
    if "--results" not in args and args[0] in ("run", "compare", "sweep"):
        args += ["--results", str(tmp_path / "results")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "results").exists(), "nothing half-written"
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*")), "no temporary import directory left"


def test_catalogue_is_in_the_docs():
    root = DATA_DIR.parent
    docs = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file())
    for what, _, message in CATALOGUE + LOADER_AND_IMPORT:
        assert message.split("'")[0].strip() in docs, what
