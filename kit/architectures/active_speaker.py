"""active_speaker: one job; ONE AgentSession whose audio input follows the loudest participant
(the crosstalk workaround of room_io's set_participant on the active speaker). A baseline: when
two people talk at once, only one of them is heard. Console and live alike: the session's input
(LoudestSpeakerInput, below) hears every participant's track and passes on the loudest one's,
the rule set_participant would follow, applied the same way in both modes."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc
from livekit.agents import JobContext
from livekit.agents.voice import io as voice_io

from kit.architectures import Design
from kit.architectures.pipeline import Transcriber, emit_final, make_session, make_vad, turn_metrics_logger
from kit.config import RunConfig
from kit.room.console import RoomView
from kit.room.scenario import Scenario
from kit.run.events import EventLog
from kit.run.jobs import Job, JobRequest, run_job
from kit.stt import make_stt

DESIGN = Design(
    color="#CC79A7", jobs="1", agent_participants="1",
    per_participant="none: ONE AgentSession follows the loudest participant (a baseline; misses crosstalk)",
    livekit_parts="AgentSession, room_io set_participant",
)


SWITCH_MARGIN_DB = 6.0  # another participant must be this much louder to take the session over
SILENCE_DBFS = -50.0  # below this the current speaker counts as silent: anyone audible takes over
LEVEL_SMOOTHING = 0.8  # per 20 ms frame: a level that follows speech over about 100 ms


class LoudestSpeakerInput(voice_io.AudioInput):
    """One AgentSession's audio input over many participants: at every frame it passes on the frames
    of the participant who is loudest (with a margin against flapping), as LiveKit's active-speaker
    switching with room_io's set_participant would. Everyone else is not heard."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(label="kit-active-speaker")
        self.log = log
        self.selected: str | None = None
        self.history: list[tuple[float, str | None]] = [(float("-inf"), None)]  # (t, selected from t on)
        self.levels: dict[str, float] = {}
        self._out: asyncio.Queue[rtc.AudioFrame | None] = asyncio.Queue()

    async def follow(self, room: RoomView, identity: str) -> None:
        """Feed one participant's frames until it leaves."""
        self.levels[identity] = -120.0
        async for frame in room.frames(identity):
            self._update(identity, frame)
            if identity == self.selected:
                self._out.put_nowait(frame)
        del self.levels[identity]
        if self.selected == identity:
            self._select(max(self.levels, key=self.levels.get, default=None))

    def end(self) -> None:
        self._out.put_nowait(None)

    def _update(self, identity: str, frame: rtc.AudioFrame) -> None:
        pcm = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
        dbfs = 10 * np.log10(float(np.mean(pcm**2)) + 1e-12)
        self.levels[identity] = LEVEL_SMOOTHING * self.levels[identity] + (1 - LEVEL_SMOOTHING) * dbfs
        current = self.levels.get(self.selected, -120.0) if self.selected else -120.0
        loudest = max(self.levels, key=self.levels.get)
        if loudest != self.selected and (
            self.levels[loudest] > current + SWITCH_MARGIN_DB or (current < SILENCE_DBFS < self.levels[loudest])
        ):
            self._select(loudest)

    def _select(self, identity: str | None) -> None:
        self.selected = identity
        self.history.append((self.log.now(), identity))
        self.log.emit("speaker_switch", participant=identity)

    def owner(self, start: float, end: float) -> str | None:
        """Who held the input longest between start and end (seconds since t0)."""
        held: dict[str | None, float] = {}
        bounds = [t for t, _ in self.history[1:]] + [float("inf")]
        for (t, who), until in zip(self.history, bounds):
            overlap = min(end, until) - max(start, t)
            if overlap > 0:
                held[who] = held.get(who, 0.0) + overlap
        return max(held, key=held.get) if held else self.selected

    async def __anext__(self) -> rtc.AudioFrame:
        frame = await self._out.get()
        if frame is None:
            raise StopAsyncIteration
        return frame


class ActiveSpeakerSession:
    """The one session of an active-speaker job; participants are added as they join."""

    def __init__(self, room: RoomView, config: RunConfig, log: EventLog) -> None:
        self.room, self.config, self.log = room, config, log
        self.input = LoudestSpeakerInput(log)
        self.followers = 0
        self.stt = make_stt(config, participant=ACTIVE, log=log)
        self.session = make_session(config, self.stt, make_vad(config, participant=ACTIVE, log=log))
        self.session.on("user_state_changed", self._on_state)
        self.session.on("user_input_transcribed", self._on_transcript)
        self.started: asyncio.Task | None = None

    def _on_state(self, ev) -> None:
        if ev.new_state == "speaking":
            self.log.emit("speech_start", participant=self.input.selected)
        elif ev.old_state == "speaking":
            self.log.emit("speech_end", participant=self.input.selected)

    def _on_transcript(self, ev) -> None:
        if ev.is_final and ev.transcript:  # the turn belongs to whoever held the input during it
            rec = self.stt.last
            who = self.input.owner(rec.speech_start, rec.speech_end) if rec else self.input.selected
            emit_final(self.room, self.log, who or ACTIVE, ev.transcript, self.stt)

    async def follow(self, identity: str) -> None:
        self.log.emit("participant_joined", participant=identity)
        if self.started is None:
            self.session.input.audio = self.input
            on_turn = turn_metrics_logger(self.log, lambda: self.input.selected or ACTIVE)
            self.started = asyncio.create_task(self.session.start(Transcriber(on_turn), record=False))
        self.followers += 1
        try:
            await self.input.follow(self.room, identity)
        finally:
            self.followers -= 1
            self.log.emit("participant_left", participant=identity)
            if self.followers == 0:  # the last one left: the session ends
                self.input.end()
                await self.started
                await self.session.aclose()
                await self.stt.aclose()


ACTIVE = "(active speaker)"  # the label of the one STT/VAD, which serve whoever is selected


_sessions: dict[str, ActiveSpeakerSession] = {}  # one per job (a job process runs one job)


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest("j1")]


async def on_participant(job: Job, identity: str) -> None:
    if job.spec.job not in _sessions:
        _sessions[job.spec.job] = ActiveSpeakerSession(job.room, job.config, job.log)
    await _sessions[job.spec.job].follow(identity)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant)
