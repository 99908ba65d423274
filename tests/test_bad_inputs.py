"""The README's catalogue of bad inputs: each gives one clear line, exit code 2, and leaves nothing
half-written (no results directory, no scenario directory)."""

import json
import shutil

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
    ("bad --speakers", lambda t: ["sweep", "--speakers", "1,two"], "--speakers takes comma-separated whole numbers"),
    ("synth script with an unknown speaker", lambda t: ["synth", _file(t, "s.toml", '[[speakers]]\nidentity="a"\nvoice="en-us"\n[[lines]]\nspeaker="b"\ntext="hi"\n'), "-o", str(t / "out")], "unknown speaker 'b'"),
    ("synth script that is not TOML", lambda t: ["synth", _file(t, "s.toml", "speakers = ["), "-o", str(t / "out")], "invalid TOML"),
    ("report of a directory without a run", lambda t: ["report", str(t / "empty")], "no run found"),
]


@pytest.mark.parametrize("what, argv, message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
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


def test_catalogue_is_in_the_readme():
    readme = (DATA_DIR.parent / "README.md").read_text()
    for what, _, message in CATALOGUE:
        assert message.split("'")[0].strip() in readme, what
