"""The VAD gate (kit/room/gate.py): what silero is spared, and that no word is ever lost to it."""

import asyncio

import numpy as np
import pytest
from livekit import rtc
from synthetic import SHORT_ROOM

from kit.config import ADAPTIVE_GATE_MARGIN_DB, SCENARIOS_DIR, VADSettings
from kit.room import scenario
from kit.room.audio import to_int16
from kit.room.console import FRAME_SAMPLES, ROOM_RATE
from kit.room.gate import Gate, gated

FIXED = VADSettings(gate_dbfs=-60.0)
AUTO = VADSettings(gate_margin_db=ADAPTIVE_GATE_MARGIN_DB)
ROOMS = sorted(d.name for d in SCENARIOS_DIR.iterdir() if (d / "scenario.json").is_file()) + [SHORT_ROOM]


def tone(level_dbfs: float, n: int = FRAME_SAMPLES) -> np.ndarray:
    return np.sin(np.arange(n) / 5) * 32768 * 10 ** (level_dbfs / 20) * np.sqrt(2)


def passed(vad: VADSettings, chunks: list[np.ndarray], duration: float = 0.02) -> list[int]:
    """The indices of the chunks the gate hands the VAD, in order."""
    gate = Gate(vad)
    return [i for k, pcm in enumerate(chunks) for i in gate.admit(k, pcm.astype(np.int16), duration)]


def test_no_gate_passes_every_frame_and_keeps_them_frames():
    quiet = np.zeros(FRAME_SAMPLES, dtype=np.int16)

    async def frames():
        for _ in range(20):
            yield rtc.AudioFrame(quiet.tobytes(), ROOM_RATE, 1, FRAME_SAMPLES)

    async def through(vad):
        return [f async for f in gated(frames(), vad)]

    assert len(asyncio.run(through(VADSettings()))) == 20
    out = asyncio.run(through(FIXED))
    assert out == [] or all(isinstance(f, rtc.AudioFrame) for f in out)
    with pytest.raises(Exception, match="not both"):
        VADSettings(gate_dbfs=-60.0, gate_margin_db=6.0)


def test_the_fixed_gate_keeps_the_preroll_the_speech_and_the_silence_that_ends_it():
    quiet, loud = np.zeros(FRAME_SAMPLES), tone(-20.0)
    chunks = [quiet] * 50 + [loud] * 10 + [quiet] * 100  # 1 s of silence, 0.2 s of tone, 2 s of silence
    out = passed(FIXED, chunks)
    assert out == list(range(25, 60 + 50)), "0.5 s before the tone (its preroll), the tone, 1 s after it"


def test_the_adaptive_gate_follows_each_tracks_noise_floor():
    rng = np.random.default_rng(1)
    noise = [rng.normal(0, 32768 * 10 ** (-40 / 20), FRAME_SAMPLES) for _ in range(300)]  # -40 dBFS
    speech = [n + tone(-30.0) for n in noise[:10]]  # 10 dB above the noise
    whisper_ = [n + tone(-43.0) for n in noise[:10]]  # under the margin: the noise's own level
    chunks = noise[:100] + speech + noise[100:200] + whisper_ + noise[200:300]
    out = set(passed(AUTO, chunks))
    assert set(range(100, 110)) <= out, "speech above a noise floor the fixed gate would take for speech"
    assert not set(range(220, 230)) & out and len(out) < len(chunks) / 2, "the rest of the noise is spared"
    assert passed(AUTO, [np.zeros(FRAME_SAMPLES)] * 100) == [], "digital silence is never loud"


@pytest.mark.parametrize("vad", [FIXED, AUTO], ids=["fixed", "auto"])
@pytest.mark.parametrize("room", ROOMS, ids=lambda r: r.rsplit("/", 1)[-1])
def test_no_frame_of_any_utterance_is_ever_dropped(room, vad):
    """Every bundled room (real recordings, noise, overlap, silent participants) and the tests' short
    one, each track through the gate: every 20 ms frame of every reference utterance reaches the VAD."""
    sc = scenario.load(room)
    per_frame = int(sc.sample_rate * 0.02)
    for p in sc.participants:
        audio = to_int16(sc.read_audio(p.identity))  # in room time, as the replay sends it from its join
        last = len(audio) // per_frame if p.leave_s is None else min(len(audio) // per_frame, int(p.leave_s / 0.02))
        first = int(p.join_s / 0.02 + 1e-9)
        sent = range(first, last)
        kept = {first + i for i in passed(vad, [audio[k * per_frame : (k + 1) * per_frame] for k in sent])}
        for u in (u for u in sc.utterances if u.participant == p.identity):
            lost = [k for k in range(int(u.start_s / 0.02), int(np.ceil(u.end_s / 0.02))) if k in sent and k not in kept]
            assert not lost, (p.identity, u.text, f"{len(lost)} frames lost from {lost[0] * 0.02:.2f} s")
