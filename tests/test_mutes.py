"""Muted microphones: what a design sends its STT and transcribes while a participant is muted
(kit/results/mutes.py), on hand-made events, and the console replay's silence while muted; the
live run beside the console one is in tests/test_live_server.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from kit.results import mutes
from kit.room import scenario
from kit.room.console import ROOM_RATE, ConsoleRoom
from kit.room.scenario import Mute

PAIR = scenario.load("pair-2")
BOB_MUTED = replace(PAIR, mutes=(Mute("bob", 9.5, 13.6),))  # while alice speaks, before his last turn


def event(kind: str, t: float, **fields) -> dict:
    return {"kind": kind, "t": t, "participant": "bob", "speech_start": np.nan, "speech_end": np.nan, "audio_s": np.nan, **fields}


def test_a_stream_is_billed_for_the_muted_time_and_vad_turns_are_not():
    streamed = pd.DataFrame([event("stt_sent", 17.0, audio_s=17.0)])  # a stream open from 0 to 17 s: every frame
    gated = pd.DataFrame([event("recognized", 9.9, speech_start=4.86, speech_end=9.25, audio_s=4.39),  # ends before
                          event("recognized", 16.9, speech_start=13.35, speech_end=16.71, audio_s=3.36)])  # starts before
    spoken = pd.DataFrame([event("final", 12.0, speech_start=10.0, speech_end=11.8),  # while muted
                           event("final", 9.9, speech_start=4.86, speech_end=9.7)])  # its tail only
    # finals alone: no STT audio of its own was reported (your agent), so that is not measured, not 0
    for events, sent, finals in ((streamed, 4.1, 0), (gated, 0.25, 0), (spoken, np.nan, 1)):
        bob = mutes.usage(BOB_MUTED, events).set_index("participant").loc["bob"]
        assert bob["muted_s"] == pytest.approx(4.1)
        assert bob["muted_stt_audio_s"] == pytest.approx(sent, nan_ok=True) and bob["muted_finals"] == finals
    alice = mutes.usage(BOB_MUTED, streamed.assign(participant="alice")).set_index("participant").loc["alice"]
    assert alice["muted_s"] == 0 and alice["muted_stt_audio_s"] == 0


def test_the_console_room_hears_digital_silence_at_the_usual_pace_while_muted():
    """What a live AudioStream gives a muted track's subscriber (docs/scenarios.md, "Mutes")."""
    muted, clean = ConsoleRoom(BOB_MUTED, identities=["bob"]), ConsoleRoom(PAIR, identities=["bob"])
    assert muted.frame_range("bob") == clean.frame_range("bob")  # every frame still comes
    pcm, before = muted.heard("bob"), clean.heard("bob")
    a, b = round(9.5 * ROOM_RATE), round(13.6 * ROOM_RATE)
    assert not pcm[a:b].any() and np.array_equal(pcm[:a], before[:a]) and np.array_equal(pcm[b:], before[b:])
    assert pcm[round(13.9 * ROOM_RATE) : b + ROOM_RATE].any()  # his last turn, after the mute, is untouched
