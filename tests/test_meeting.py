"""Meeting rooms (kit/room/meeting.py): deterministic scripts, the documented statistics, the statistics
themselves on a hand-made room with known numbers, and one real synthesised room, cached."""

import hashlib
import itertools
import json
import math
import tomllib

import numpy as np
import pytest
import soundfile as sf

from kit.config import KitError
from kit.results import sweep
from kit.room import meeting, scenario, synth


def own_gaps(utterances) -> list[float]:
    """Silence between consecutive utterances of the same participant."""
    by: dict[str, list] = {}
    for u in sorted(utterances, key=lambda u: u[1]):
        by.setdefault(u[0], []).append(u)
    return [b[1] - a[2] for us in by.values() for a, b in itertools.pairwise(us)]


def test_same_arguments_same_script_other_seed_other_meeting():
    assert meeting.meeting_script(8) == meeting.meeting_script(8, 60.0, 0)
    assert meeting.meeting_script(8, seed=1) != meeting.meeting_script(8)
    assert meeting.meeting_script(8, duration_s=30) != meeting.meeting_script(8)
    doc = tomllib.loads(meeting.meeting_script(16, seed=3))
    ids = [s["identity"] for s in doc["speakers"]]
    assert ids == [f"p{i:02d}" for i in range(1, 17)]
    talkers = {line["speaker"] for line in doc["lines"]}
    assert talkers < set(ids) and len(talkers) == meeting.speaker_count(16) == 4
    texts = {line["text"] for line in doc["lines"]}
    assert texts <= set(meeting.SENTENCES) | set(meeting.BACKCHANNELS)
    assert texts & set(meeting.BACKCHANNELS), "backchannels"
    assert any(line.get("gap_s", 0) < 0 and line["text"] in meeting.SENTENCES for line in doc["lines"]), "early starts"
    voices = [s["voice"] for s in doc["speakers"] if s["identity"] in talkers]
    assert len(set(voices)) == len(voices), "every speaker sounds different"


def test_a_majority_never_speaks_from_eight_participants():
    assert [meeting.speaker_count(n) for n in (1, 2, 3, 4, 8, 16, 32, 64)] == [1, 2, 3, 3, 3, 4, 5, 6]
    assert all(meeting.speaker_count(n) < n / 2 for n in range(8, 129))


def test_bad_arguments_are_refused():
    with pytest.raises(KitError, match="at least 1"):
        meeting.meeting_script(0)
    with pytest.raises(KitError, match="at least 10 s"):
        meeting.meeting_script(4, duration_s=5)


@pytest.mark.parametrize("n", [8, 32])
def test_meeting_statistics_within_the_documented_bounds(n, tmp_path):
    script = meeting.meeting_script(n)
    per, room = meeting.script_statistics(script)
    assert 0.10 <= room["overlap_share"] <= 0.15
    assert room["max_simultaneous"] == 2  # one main speaker; a line overlaps only the one before it
    assert room["participants"] == n and room["speakers"] == meeting.speaker_count(n)
    assert n - room["speakers"] > n / 2, "a majority never speaks"
    assert room["late_joiners"] == 1 + round(n / 8)  # the last-ranked speaker and round(N/8) silent ones
    assert abs(room["duration_s"] - 60) <= 4
    assert per["left_s"].isna().all() and (per["joined_s"] < room["duration_s"]).all(), "everyone stays connected"
    talkers = per[per["utterances"] > 0]["speech_s"]
    assert room["top_share"] > 1 / room["speakers"] and talkers.max() >= 2 * talkers.min(), "skewed talk"
    late = per[(per["joined_s"] > 0) & (per["utterances"] > 0)]
    assert len(late) == 1, "a late joiner who speaks"
    path = tmp_path / "script.toml"
    path.write_text(script)
    placed = synth.place(path)
    utts = [(u["participant"], u["start_s"], u["end_s"]) for u in placed.utterances()]
    late_id = late["participant"].iloc[0]
    assert min(s for who, s, _ in utts if who == late_id) >= late["joined_s"].iloc[0] + 2.0
    assert min(own_gaps(utts)) >= 0.7, "each sentence its own VAD turn (0.55 s of silence ends one)"


def test_statistics_of_a_hand_made_room(tmp_path):
    """a and b overlap 1.0 s, d joins them for 0.5 s (three at once), a and b overlap 0.5 s later,
    b's last utterance touches a's next (no overlap); c never speaks; b joins late and leaves early."""
    spans = [("a", 1.0, 4.0), ("b", 3.0, 5.0), ("d", 3.5, 4.5), ("a", 6.0, 8.0), ("b", 7.5, 8.5), ("a", 8.5, 9.5)]
    presence = {"a": (0.0, None), "b": (2.0, 9.0), "c": (0.0, None), "d": (0.0, None)}
    for who in presence:
        sf.write(tmp_path / f"{who}.flac", np.zeros(160_000, np.int16), 16000, format="FLAC")
    doc = {
        "name": "hand-made", "sample_rate": 16000,
        "participants": [{"identity": w, "audio": f"{w}.flac", "join_s": j, "leave_s": le} for w, (j, le) in presence.items()],
        "utterances": [{"participant": w, "start_s": s, "end_s": e, "text": "hello"} for w, s, e in spans],
    }  # fmt: skip
    (tmp_path / "scenario.json").write_text(json.dumps(doc))
    per, room = meeting.room_statistics(scenario.load(tmp_path))
    # talk [1, 5] and [6, 9.5]; two or more [3, 4.5] and [7.5, 8]; speaker time 6 + 3 + 1
    assert room["talk_s"] == pytest.approx(7.5) and room["overlap_s"] == pytest.approx(2.0)
    assert room["speech_s"] == pytest.approx(10.0)
    assert room["overlap_share"] == pytest.approx(2.0 / 7.5)
    assert room["overlap_der_share"] == pytest.approx(0.25)  # (0.5 + 2 x 0.5 + 0.5 + 0.5) / 10
    assert room["max_simultaneous"] == 3
    assert (room["participants"], room["speakers"], room["late_joiners"], room["utterances"]) == (4, 3, 1, 6)
    assert room["duration_s"] == pytest.approx(10.0) and room["top_share"] == pytest.approx(0.6)
    assert room.name == "hand-made"
    per = per.set_index("participant")
    assert per["speech_s"].to_dict() == pytest.approx({"a": 6.0, "b": 3.0, "c": 0.0, "d": 1.0})
    assert per["share"].to_dict() == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.0, "d": 0.1})
    assert per["utterances"].to_dict() == {"a": 3, "b": 2, "c": 0, "d": 1}
    assert per.loc["b", "joined_s"] == 2.0 and per.loc["b", "left_s"] == 9.0 and math.isnan(per.loc["a", "left_s"])


def test_talk_time_edges():
    assert meeting.talk_time([]) == (0.0, 0.0, 0)
    assert meeting.talk_time([(0.0, 1.0), (1.0, 2.0)]) == (2.0, 0.0, 1)  # touching is not overlapping
    assert meeting.talk_time([(0.0, 3.0), (1.0, 2.0)]) == (3.0, 1.0, 2)  # one inside another


def test_all_talk_rooms_overlap_far_more():
    _, room = meeting.script_statistics(sweep.sweep_script(4, lines=1))
    assert room["speakers"] == 4 and room["max_simultaneous"] >= 3 and room["overlap_share"] > 0.5


def test_a_synthesised_meeting_room_is_cached_and_is_its_script(tmp_path):
    room = meeting.meeting_room(8, cache=tmp_path)
    digest = hashlib.sha256(meeting.meeting_script(8).encode()).hexdigest()[:10]
    assert room == tmp_path / f"meeting-8-{digest}"
    built = (room / "scenario.json").stat().st_mtime_ns
    assert meeting.meeting_room(8, cache=tmp_path) == room and (room / "scenario.json").stat().st_mtime_ns == built
    assert [p.name for p in tmp_path.iterdir()] == [room.name], "no temporary directory left"
    sc = scenario.load(room)
    per, stats = meeting.room_statistics(sc)
    per_script, stats_script = meeting.script_statistics(meeting.meeting_script(8))
    assert stats.equals(stats_script) and per.equals(per_script), "the dry run is the room"
    frames = round(sc.duration_s * sc.sample_rate)
    for p, row in zip(sc.participants, per.itertuples()):
        audio = sc.read_audio(p.identity)
        assert len(audio) == frames, "every track spans the room"
        if row.utterances == 0:
            assert not audio.any(), f"{p.identity} is connected and silent"
        assert not audio[: round(p.join_s * sc.sample_rate)].any(), "nothing before joining"
    assert min(own_gaps([(u.participant, u.start_s, u.end_s) for u in sc.utterances])) >= 0.7


def test_sweep_rooms_keep_their_cache_key(tmp_path):
    room = sweep.sweep_room(1, lines=1, cache=tmp_path)
    assert room.name == f"sweep-1x1-{hashlib.sha256(sweep.sweep_script(1, 1).encode()).hexdigest()[:10]}"
    assert sweep.GENERATED_DIR == synth.GENERATED_DIR and sweep.VOICES is synth.VOICES
