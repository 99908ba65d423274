import numpy as np
import soundfile as sf

from kit.cli import main
from kit.config import DATA_DIR, SCENARIOS_DIR
from kit.room import scenario


def test_synth_reproduces_committed_pair2(tmp_path, capsys):
    out = tmp_path / "pair-2"
    assert main(["synth", str(DATA_DIR / "scripts" / "pair-2.toml"), "-o", str(out)]) == 0
    assert "4 utterances" in capsys.readouterr().out
    committed = SCENARIOS_DIR / "pair-2"
    assert (out / "scenario.json").read_bytes() == (committed / "scenario.json").read_bytes()
    for who in ("alice", "bob"):
        new, _ = sf.read(out / f"{who}.flac", dtype="int16")
        old, _ = sf.read(committed / f"{who}.flac", dtype="int16")
        assert np.array_equal(new, old)


def test_ground_truth_is_the_speech_span():
    sc = scenario.load("pair-2")
    for u in sc.utterances:
        track = sc.read_audio(u.participant)
        a, b = round(u.start_s * sc.sample_rate), round(u.end_s * sc.sample_rate)
        assert abs(track[a]) > 1e-3 and abs(track[b - 1]) > 1e-3  # speech starts and ends exactly there
        assert np.all(np.abs(track[a - 160 : a]) == 0) or a < 160  # silence just before


def test_synth_rejects_unknown_speaker(tmp_path, capsys):
    script = tmp_path / "bad.toml"
    script.write_text('[[speakers]]\nidentity="a"\nvoice="en-us"\n[[lines]]\nspeaker="b"\ntext="hi"\n')
    assert main(["synth", str(script), "-o", str(tmp_path / "out")]) == 2
    assert "unknown speaker 'b'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
