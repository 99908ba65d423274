"""The VAD gate (kit/room/gate.py): what silero is spared, and that no word is ever lost to it."""

import asyncio

import numpy as np
import pytest
from livekit import rtc
from synthetic import SHORT_ROOM

from kit.config import ADAPTIVE_GATE_MARGIN_DB, SCENARIOS_DIR, VADSettings
from kit.room import scenario
from kit.room.console import FRAME_SAMPLES, ROOM_RATE
from kit.room.gate import Gate, gate_shares, gated, track_frames_kept

FIXED = VADSettings(gate_dbfs=-60.0, gate_margin_db=None)
OFF = VADSettings(gate_margin_db=None)
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

    async def through(vad, streaming=False):
        return [f async for f in gated(frames(), vad, streaming)]

    assert len(asyncio.run(through(OFF))) == 20
    assert len(asyncio.run(through(FIXED, streaming=True))) == 20, "a streaming STT hears every frame"
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
    for p in sc.participants:
        sent, kept = track_frames_kept(sc, p.identity, vad)
        for u in (u for u in sc.utterances if u.participant == p.identity):
            lost = [k for k in range(int(u.start_s / 0.02), int(np.ceil(u.end_s / 0.02))) if k in sent and k not in kept]
            assert not lost, (p.identity, u.text, f"{len(lost)} frames lost from {lost[0] * 0.02:.2f} s")


def test_the_adaptive_gate_spares_most_of_the_noisy_rooms_silence():
    """On `noisy` (pink noise at 10 dB SNR on every track) the fixed gate passes everything; the
    adaptive one about a third (the speech, its preroll and the silence that ends each turn)."""
    sc = scenario.load("noisy")
    assert (gate_shares(sc, FIXED)["kept_share"] == 1.0).all()
    assert gate_shares(sc, AUTO)["kept_share"].between(0.2, 0.5).all()
