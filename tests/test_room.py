import asyncio
import time

import numpy as np
import pytest

from kit.room import scenario
from kit.room.audio import downsample, to_float32
from kit.room.console import FRAME_S, FRAME_SAMPLES, ROOM_RATE, ConsoleRoom


@pytest.mark.replay
def test_replay_frame_count_pacing_and_samples():
    sc = scenario.load("pair-2")
    room = ConsoleRoom(sc, time.monotonic() + 0.3)
    got: dict[str, list] = {}

    async def listen(identity):
        frames, lateness = [], []
        async for k, frame in _indexed(room, identity):
            lateness.append(time.monotonic() - (room.t0 + (k + 1) * FRAME_S))
            frames.append(frame)
        got[identity] = (frames, lateness)

    asyncio.run(_gather(listen(i) for i in room.identities))
    for identity in room.identities:
        frames, lateness = got[identity]
        expected = int(np.ceil(sc.duration_s / FRAME_S - 1e-9))
        assert len(frames) == expected
        assert all(f.sample_rate == ROOM_RATE and f.samples_per_channel == FRAME_SAMPLES for f in frames)
        assert 0 <= min(lateness) and lateness[-1] < 0.020, "pacing drifted"  # generous sanity bound
        pcm48 = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
        back = downsample(to_float32(pcm48), 3)[: int(sc.duration_s * sc.sample_rate)]
        src = sc.read_audio(identity)[: len(back)]
        inner = slice(100, len(back) - 100)  # the filter's edges see the zero padding
        assert np.max(np.abs(back[inner] - src[inner])) < 0.01


def test_late_joiner_and_leaver_frame_ranges():
    sc = scenario.load("comings-and-goings")  # ken joins at 8.0 s, lia leaves at 12.0 s
    room = ConsoleRoom(sc, time.monotonic(), identities=["ken", "lia"])
    assert room.frame_range("ken").start == 400  # 8.0 s / 20 ms: ken's first frame
    assert room.frame_range("lia").start == 0
    assert room.frame_range("lia").stop == 600  # lia's last frame covers 11.98-12.00 s
    assert room.frame_range("ken").stop == -(-len(room._pcm["ken"]) // FRAME_SAMPLES)  # to its track end, the last frame padded


async def _indexed(room, identity):
    k = room.frame_range(identity).start
    async for frame in room.frames(identity):
        yield k, frame
        k += 1


async def _gather(coros):
    await asyncio.gather(*coros)
