"""Attribution scores (kit/results/attribution.py, docs/method.md "Attribution") on hand-made finals
with known answers: words heard under a second microphone, under the wrong speaker only, by nobody,
and an utterance split in two finals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit.results import attribution
from kit.results.metrics import match_finals, normalize, utterances
from kit.room.scenario import Participant, Scenario, Utterance

ROOM = Scenario(
    name="hand-made", sample_rate=16000, path=Path("/nowhere/scenario.json"), duration_s=12.0,
    participants=(Participant("alice", Path("/nowhere/alice.wav")), Participant("bob", Path("/nowhere/bob.wav"))),
    utterances=(
        Utterance("alice", 0.0, 2.0, "Ship the release today."),
        Utterance("bob", 3.0, 5.0, "The tests are green."),
        Utterance("alice", 6.0, 8.0, "Thanks Bob, good work."),
        Utterance("alice", 9.0, 10.0, "See you."),
    ),
)  # fmt: skip


def final(participant: str, start: float, end: float, text: str, arrival: float | None = None) -> dict:
    return {"kind": "final", "arch": "d", "participant": participant, "text": text, "t": arrival or end + 0.5,
            "speech_start": start, "speech_end": end, "infer_s": np.nan, "stt_cpu_s": np.nan}  # fmt: skip


def score(finals: list[dict]) -> pd.DataFrame:
    events = pd.DataFrame(finals)
    utts = utterances(ROOM, events, 0.55, ["d"])
    return attribution.scores(ROOM, events.assign(utt=match_finals(ROOM, events)), utts, "d", normalize).set_index("participant")


def test_duplicated_misattributed_missed_and_fragmented_words_are_counted_as_defined():
    got = score([
        final("alice", 0.0, 2.1, "ship the release today"),  # her own: 4 words
        final("bob", 0.1, 2.0, "ship the release"),  # her words on his mic (bleed): 3 duplicated
        final("bob", 3.0, 4.0, "the tests"), final("bob", 4.0, 5.0, "are green"),  # his, in two finals: fragmented
        final("bob", 6.0, 8.0, "thanks bob good work"),  # hers, only under him: 4 misattributed
        final("bob", 9.0, 10.0, "you know"),  # one word of hers ("you"): too little to be her speech
    ])  # fmt: skip
    alice, bob = got.loc["alice"], got.loc["bob"]
    assert (alice["ref_words"], alice["duplicated"], alice["misattributed"], alice["missed_words"], alice["fragmented"]) == (10, 3, 4, 2, 0)
    assert (bob["ref_words"], bob["duplicated"], bob["misattributed"], bob["missed_words"], bob["fragmented"]) == (4, 0, 0, 0, 1)


def test_a_clean_room_scores_zero_even_with_recognition_errors_on_common_words():
    got = score([
        final("alice", 0.0, 2.0, "ship a release today"),
        final("bob", 2.2, 5.0, "the tests are green today"),  # his span touches no word of hers; "today" is an error
        final("alice", 6.0, 8.0, "thanks bob good work"), final("alice", 9.0, 10.0, "see you"),
    ])  # fmt: skip
    assert (got[["duplicated", "misattributed", "fragmented"]] == 0).all().all(), got
    assert got.loc["alice", "missed_words"] == 1  # "the", misheard as "a"
    assert got.loc["bob", "missed_words"] == 0


def test_a_final_without_a_vad_span_covers_the_time_since_the_speakers_last_final():
    """Your own agent's finals carry no span: one arriving at 8.6 s under bob covers 5.5 s to 8.6 s."""
    got = score([
        final("alice", 0.0, 2.0, "ship the release today"),
        final("bob", np.nan, np.nan, "the tests are green", arrival=5.5),
        final("bob", np.nan, np.nan, "thanks bob good work", arrival=8.6),
    ])  # fmt: skip
    assert got.loc["alice", "misattributed"] == 4 and got.loc["alice", "duplicated"] == 0
    assert got.loc["bob", "missed_words"] == 0
