import numpy as np
import pytest
import soundfile as sf
from conftest import edit_json

from kit.cli import main
from kit.room import scenario
from kit.room.scenario import ScenarioError


def test_bundled_rooms_load():
    pair = scenario.load("pair-2")
    assert pair.identities == ["alice", "bob"] and len(pair.utterances) == 4
    assert 12 < pair.duration_s < 20
    standup = scenario.load("standup-4")
    assert len(standup.participants) == 4 and 50 < standup.duration_s < 70
    late = [p for p in standup.participants if p.join_s > 0]
    assert late, "standup-4 has a late joiner"
    spans = sorted((u.start_s, u.end_s) for u in standup.utterances)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "standup-4 has an overlap"


def _bad(path, match):
    with pytest.raises(ScenarioError, match=match):
        scenario.load(path)


def test_missing_scenario_file(tmp_path):
    _bad(tmp_path / "nope", "scenario not found")


def test_invalid_json(pair2_copy):
    pair2_copy.write_text("{not json")
    _bad(pair2_copy, "invalid JSON")


def test_missing_audio(pair2_copy):
    (pair2_copy.parent / "bob.flac").unlink()
    _bad(pair2_copy, "audio of 'bob' not found")


def test_unreadable_audio(pair2_copy):
    (pair2_copy.parent / "bob.flac").write_bytes(b"this is not audio")
    _bad(pair2_copy, "audio of 'bob' is unreadable")


def test_audio_not_mono(pair2_copy):
    sf.write(pair2_copy.parent / "bob.flac", np.zeros((16000 * 20, 2), dtype=np.int16), 16000)
    _bad(pair2_copy, "must be mono")


def test_wrong_sample_rate(pair2_copy):
    sf.write(pair2_copy.parent / "bob.flac", np.zeros(8000 * 20, dtype=np.int16), 8000)
    _bad(pair2_copy, "8000 Hz, the scenario declares 16000 Hz")


def test_unknown_participant(pair2_copy):
    edit_json(pair2_copy, lambda d: d["utterances"][0].update(participant="mallory"))
    _bad(pair2_copy, "unknown participant 'mallory'")


def test_utterance_outside_track(pair2_copy):
    edit_json(pair2_copy, lambda d: d["utterances"][-1].update(end_s=99.0))
    _bad(pair2_copy, "outside its track")


def test_short_track(pair2_copy):
    sf.write(pair2_copy.parent / "bob.flac", np.zeros(16000 * 3, dtype=np.int16), 16000)
    _bad(pair2_copy, "utterance of 'bob' .* outside its track")


def test_overlapping_utterances_of_one_speaker(pair2_copy):
    def overlap(d):
        first = d["utterances"][0]
        d["utterances"].append(dict(first, start_s=first["start_s"] + 1, end_s=first["end_s"] + 1, text="again"))

    edit_json(pair2_copy, overlap)
    _bad(pair2_copy, "two utterances of 'alice' overlap")


def test_duplicate_identities(pair2_copy):
    edit_json(pair2_copy, lambda d: d["participants"].append(dict(d["participants"][0])))
    _bad(pair2_copy, "duplicate participant identity 'alice'")


def test_no_participants(pair2_copy):
    edit_json(pair2_copy, lambda d: d.update(participants=[], utterances=[]))
    _bad(pair2_copy, "no participants")


def test_cli_bad_scenario_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["transcribe", "--scenario", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: scenario not found") and err.count("\n") == 1 and "Traceback" not in err


# --- issue 19: what the loader refuses now (the CLI rows are in tests/test_bad_inputs.py) ---------------


def _text_edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "old, new, match",
    [
        ('"join_s": 0.0', '"join_s": Infinity', r"participants\[0\]\.join_s is Infinity"),
        ('"join_s": 0.0', '"join_s": -Infinity', r"participants\[0\]\.join_s is -Infinity"),
        ('"end_s": 4.5603125', '"end_s": NaN', r"utterances\[0\]\.end_s is NaN"),
        ('"join_s": 0.0', '"join_s": 1' + "0" * 400, r"participants\[0\]\.join_s is too large"),
        ('"sample_rate": 16000', '"sample_rate": true', "sample_rate must be a positive whole number of Hz, not True"),
        ('"sample_rate": 16000', '"sample_rate": "16000"', "sample_rate must be a positive whole number"),
        ('"sample_rate": 16000', '"sample_rate": 0', "sample_rate must be a positive whole number"),
        ('"identity": "bob"', '"identity": ""', r"participants\[1\]\.identity must not be empty"),
        ('"identity": "bob"', '"identity": "b\\nob"', r"has a control character"),
        ('"name": "pair-2"', '"name": 2', "name must be a string, not 2"),
        ('"participants": [', '"participants": {"x": [', "invalid JSON"),
        ('"leave_s": null', '"leave_s": false', r"participants\[0\]\.leave_s must be a number of seconds, not False"),
    ],
)  # fmt: skip
def test_every_number_finite_and_every_field_typed(pair2_copy, old, new, match):
    _text_edit(pair2_copy, old, new)
    with pytest.raises(ScenarioError, match=match) as e:
        scenario.load(pair2_copy)
    assert "\n" not in str(e.value)


def test_an_integral_float_sample_rate_is_a_whole_number(pair2_copy):
    _text_edit(pair2_copy, '"sample_rate": 16000', '"sample_rate": 16000.0')
    assert scenario.load(pair2_copy).sample_rate == 16000 and isinstance(scenario.load(pair2_copy).sample_rate, int)


def test_a_line_break_in_any_message_is_escaped():
    assert str(ScenarioError("a\nb\rc")) == "a\\nb\\rc"


def test_a_truncated_track_is_refused(pair2_copy):
    bob = pair2_copy.parent / "bob.flac"
    bob.write_bytes(bob.read_bytes()[: 2000])
    _bad(pair2_copy, "audio of 'bob' is (unreadable|empty)")


def test_a_float_track_with_infinity_is_refused_with_where(pair2_copy):
    edit_json(pair2_copy, lambda d: d["participants"][1].update(audio="bob.wav"))
    x = np.zeros(16000 * 20, dtype=np.float32)
    x[32000] = -np.inf
    sf.write(pair2_copy.parent / "bob.wav", x, 16000, subtype="FLOAT")
    _bad(pair2_copy, r"bob.wav has -inf at sample 32000 \(2.000 s\)")


def test_read_audio_is_what_libsndfile_reads():
    sc = scenario.load("standup-4")
    for identity in sc.identities:
        samples, _ = sf.read(sc.participant(identity).audio, dtype="float32")
        assert np.array_equal(sc.read_audio(identity), samples)


def test_mutes_load_and_are_validated_like_the_rest(pair2_copy):
    edit_json(pair2_copy, lambda d: d.update(mutes=[{"participant": "bob", "start_s": 0.5, "end_s": 5.0},
                                                     {"participant": "bob", "start_s": 9.0, "end_s": 13.5}]))  # fmt: skip
    sc = scenario.load(pair2_copy)
    assert sc.muted("bob") == [(0.5, 5.0), (9.0, 13.5)] and sc.muted("alice") == []
    for mutes, match in [
        ([{"participant": "mallory", "start_s": 1, "end_s": 2}], "mute of unknown participant 'mallory'"),
        ([{"participant": "bob", "start_s": 3, "end_s": 2}], "ends before it starts"),
        ([{"participant": "bob", "start_s": 1, "end_s": 99}], "outside 'bob'.s presence"),
        ([{"participant": "bob", "start_s": 1, "end_s": 3}, {"participant": "bob", "start_s": 2, "end_s": 4}], "two mutes of 'bob' overlap"),
        ([{"participant": "bob", "start_s": 6, "end_s": 7}], "covers their utterance at 5.36-8.70 s"),
        ([{"participant": "bob", "start_s": "1", "end_s": 2}], r"mutes\[0\].start_s must be a number"),
        ([{"participant": "bob", "end_s": 2}], "missing field 'start_s' in mutes"),
        ({"participant": "bob"}, "'mutes' must be a list"),
    ]:  # fmt: skip
        edit_json(pair2_copy, lambda d, m=mutes: d.update(mutes=m))
        _bad(pair2_copy, match)
