import numpy as np
import pytest
import soundfile as sf

from kit.cli import main
from kit.config import DATA_DIR, SCENARIOS_DIR, KitError
from kit.room import scenario
from kit.room.bleed import Bleed, add_bleed
from kit.room.synth import synth


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


def test_synth_reproduces_committed_shared_office_with_its_bleed(tmp_path):
    """shared-office: alice and bob share a room ([bleed] groups), carol does not."""
    out = tmp_path / "shared-office"
    assert main(["synth", str(DATA_DIR / "scripts" / "shared-office.toml"), "-o", str(out)]) == 0
    committed = SCENARIOS_DIR / "shared-office"
    assert (out / "scenario.json").read_bytes() == (committed / "scenario.json").read_bytes()
    sc = scenario.load(committed)
    for who in sc.identities:
        new, _ = sf.read(out / f"{who}.flac", dtype="int16")
        assert np.array_equal(new, sf.read(committed / f"{who}.flac", dtype="int16")[0])
    level = {}  # dB of each track during each utterance
    for u in sc.utterances:
        a, b = round(u.start_s * sc.sample_rate), round(u.end_s * sc.sample_rate)
        for who in sc.identities:
            x = sf.read(committed / f"{who}.flac", dtype="float64")[0][a:b]
            level[(u.participant, who)] = 10 * np.log10(np.mean(x**2) + 1e-20)
    assert abs(level[("bob", "alice")] - level[("bob", "bob")] + 20) < 1.0  # bob on alice's mic: 20 dB down
    assert abs(level[("alice", "bob")] - level[("alice", "alice")] + 20) < 1.0
    assert level[("bob", "carol")] < -150 and level[("alice", "carol")] < -150  # carol is elsewhere: silence
    assert level[("carol", "alice")] < -150


def test_bleed_adds_the_neighbours_lower_and_later_and_is_validated():
    rate = 16000
    tracks = {"a": np.zeros(rate, np.int16), "b": np.zeros(rate, np.int16), "c": np.zeros(rate, np.int16)}
    tracks["b"][1000:2000] = 10000
    out = add_bleed(tracks, rate, Bleed(db=-20, ms=10, groups=(("a", "b"),)))
    assert np.array_equal(out["b"], tracks["b"]) and not out["c"].any()  # b's own track unchanged; c elsewhere
    assert np.flatnonzero(out["a"]).tolist() == list(range(1160, 2160)) and (out["a"][1160:2160] == 1000).all()  # 10 ms, -20 dB
    floats = add_bleed({k: v.astype(np.float32) / 32768 for k, v in tracks.items()}, rate, Bleed(db=-6, ms=0))
    assert floats["c"].dtype == np.float32 and floats["c"][1500] == pytest.approx(10000 / 32768 * 10 ** (-6 / 20), rel=1e-4)
    for bad in (dict(db=0.0), dict(db=float("nan")), dict(ms=-1.0), dict(ms=5000.0)):
        with pytest.raises(KitError):
            Bleed(**bad)
    with pytest.raises(KitError, match="zed"):
        add_bleed(tracks, rate, Bleed(groups=(("a", "zed"),)))


def test_a_scripts_bleed_table_is_checked_before_anything_is_spoken(tmp_path, capsys):
    script = tmp_path / "bad.toml"
    script.write_text('[bleed]\ndb = -20\ngroups = [["a", "nobody"]]\n[[speakers]]\nidentity="a"\nvoice="en-us"\n'
                      '[[lines]]\nspeaker="a"\ntext="hi"\n')  # fmt: skip
    assert main(["synth", str(script), "-o", str(tmp_path / "out")]) == 2
    assert "nobody" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_scripts_mutes_reach_the_scenario_and_one_without_an_end_lasts_until_they_leave(tmp_path):
    script = tmp_path / "muted.toml"
    script.write_text(f'extends = "{DATA_DIR / "scripts" / "pair-2.toml"}"\nname = "muted-pair"\n'
                      '[[mutes]]\nparticipant = "bob"\nstart_s = 9.5\nend_s = 13.6\n'
                      '[[mutes]]\nparticipant = "alice"\nstart_s = 13.2\n')  # fmt: skip
    sc = scenario.load(synth(script, tmp_path / "room"))
    assert sc.muted("bob") == [(9.5, 13.6)] and sc.muted("alice") == [(13.2, pytest.approx(sc.duration_s))]
    script.write_text(script.read_text().replace("start_s = 13.2", "start_s = 12.0"))  # over alice's last line
    with pytest.raises(KitError, match="covers their line"):
        synth(script, tmp_path / "room2")
    assert not (tmp_path / "room2").exists()
