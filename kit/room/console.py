"""The room as the architectures see it: participants joining, and each one's audio frames.

Console mode replays the scenario in real time: each participant's track is resampled once to
48 kHz at load time and delivered as 20 ms `rtc.AudioFrame`s, each at its absolute deadline
t0 + (k + 1) * 20 ms (the moment its last sample "happened"), so pacing never drifts and every
process given the same t0 replays in step with the others. A participant's frames run from its
join time to its leave time (or the end of its track); while their microphone is muted (the
scenario's `mutes`), the frames go on, digital silence, as a live AudioStream delivers them.

Live mode (a real LiveKit room) implements the same interface: `kit.live.common.LiveRoom`. What differs
between the modes is only here: where joins and audio come from, how an AgentSession is attached
to one participant, and where a final transcript goes (console: the job's event log; live: the
room, as a LiveKit transcription, logged by the room driver when it arrives).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import numpy as np
from livekit import rtc
from livekit.agents.voice import io as voice_io

from kit.config import VADSettings
from kit.room.audio import resample, to_int16
from kit.room.gate import FRAME_S, gated
from kit.room.scenario import Scenario
from kit.run.events import EventLog

ROOM_RATE = 48_000
FRAME_SAMPLES = int(ROOM_RATE * FRAME_S)


class RoomView(Protocol):
    identities: list[str]

    def joins(self) -> AsyncIterator[str]:
        """Yields each participant's identity when it joins."""

    def frames(self, identity: str) -> AsyncIterator[rtc.AudioFrame]:
        """The participant's audio, in real time, until it leaves."""

    async def start_session(self, session: Any, agent: Any, identity: str) -> asyncio.Event:
        """Start an AgentSession listening to the participant; the event is set once it has left."""

    def deliver_final(self, log: EventLog, participant: str, text: str, **fields: Any) -> None:
        """Hand a final transcript (and its timing fields, see kit.run.events.Event) to the application."""

    async def aclose(self) -> None:
        """Wait for anything still on its way out."""


class ConsoleRoom:
    """The scenario replayed in this process, aligned on the run's start instant t0."""

    def __init__(self, scenario: Scenario, t0: float = 0.0, identities: Iterable[str] | None = None,
                 vad: VADSettings | None = None) -> None:  # fmt: skip
        self.scenario = scenario
        self.vad = vad or VADSettings()  # its gate applies to the sessions' audio input
        self.t0 = t0  # may be set later, once every job is ready (audio is loaded here, before)
        self.identities = list(identities) if identities is not None else scenario.identities
        self._pcm = {i: self.heard(i) for i in self.identities}
        # Every frame made now, before t0, as a network hands them over ready-made: during the room
        # the replay only paces them (the loop's wake-ups per frame are the design's, as they are live).
        self._frames = {i: [self._frame(i, k) for k in self.frame_range(i)] for i in self.identities}

    def heard(self, identity: str) -> np.ndarray:
        """The participant's track at the room's rate as an agent receives it: while their microphone
        is muted, digital silence at the usual pace (what a live AudioStream gives: docs/scenarios.md, "Mutes")."""
        pcm = to_int16(resample(self.scenario.read_audio(identity), self.scenario.sample_rate, ROOM_RATE))
        for start, end in self.scenario.muted(identity):
            pcm[round(start * ROOM_RATE) : round(end * ROOM_RATE)] = 0
        return pcm

    def frame_range(self, identity: str) -> range:
        """Indices k of the 20 ms frames the participant sends (frame k covers [k, k+1) * 20 ms)."""
        p = self.scenario.participant(identity)
        track_s = len(self._pcm[identity]) / ROOM_RATE
        end_s = track_s if p.leave_s is None else min(p.leave_s, track_s)
        return range(math.floor(p.join_s / FRAME_S + 1e-9), math.ceil(end_s / FRAME_S - 1e-9))

    async def joins(self) -> AsyncIterator[str]:
        for identity in sorted(self.identities, key=lambda i: self.scenario.participant(i).join_s):
            await sleep_until(self.t0 + self.scenario.participant(identity).join_s)
            yield identity

    def _frame(self, identity: str, k: int) -> rtc.AudioFrame:
        chunk = self._pcm[identity][k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.pad(chunk, (0, FRAME_SAMPLES - len(chunk)))
        return rtc.AudioFrame(chunk.tobytes(), ROOM_RATE, 1, FRAME_SAMPLES)

    async def frames(self, identity: str) -> AsyncIterator[rtc.AudioFrame]:
        frames = self._frames[identity]
        for k, frame in zip(self.frame_range(identity), frames):
            await sleep_until(self.t0 + (k + 1) * FRAME_S)
            yield frame

    async def start_session(self, session: Any, agent: Any, identity: str) -> asyncio.Event:
        streaming = session.stt is not None and session.stt.capabilities.streaming  # the gate's frames: kit/room/gate.py
        audio = RoomAudioInput(self, identity, self.vad, streaming)
        session.input.audio = audio  # no room: the session reads the replay (no RoomIO)
        await session.start(agent, record=False)
        return audio.ended

    def deliver_final(self, log: EventLog, participant: str, text: str, **fields: Any) -> None:
        log.emit("final", participant=participant, text=text, **fields)

    async def aclose(self) -> None:
        pass


class RoomAudioInput(voice_io.AudioInput):
    """An AgentSession's audio input fed from one participant's frames of the kit's room."""

    def __init__(self, room: RoomView, identity: str, vad: VADSettings, streaming: bool = False) -> None:
        super().__init__(label=f"kit-room-{identity}")
        self._frames = aiter(gated(room.frames(identity), vad, streaming))
        self.ended = asyncio.Event()

    async def __anext__(self) -> rtc.AudioFrame:
        try:
            return await anext(self._frames)
        except StopAsyncIteration:
            self.ended.set()
            raise


async def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
