"""Per-participant speech pipelines shared by the architectures, and how they report events.

`transcribe_participant` is the lightweight VAD + STT pipeline (livekit's `StreamAdapter` over
silero and the kit's STT) of the participant-entrypoint design; `run_session` is one listen-only
`AgentSession` per participant, what multi-session and multi-dispatch run. Every STT/VAD
instance made here belongs to one participant.
"""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents import Agent, AgentSession, StopResponse, TurnHandlingOptions
from livekit.agents import stt as agents_stt
from livekit.agents.voice import io as voice_io
from livekit.plugins import silero

from kit.config import RunConfig
from kit.events import EventLog
from kit.room import RoomView
from kit.stt import FasterWhisperSTT, make_stt


def make_vad(config: RunConfig, *, participant: str, log: EventLog) -> silero.VAD:
    """A silero VAD instance for one participant, whose inference time goes to the event log."""
    v = config.vad
    vad = silero.VAD.load(
        min_speech_duration=v.min_speech_duration,
        min_silence_duration=v.min_silence_duration,
        prefix_padding_duration=v.prefix_padding_duration,
        activation_threshold=v.activation_threshold,
    )
    vad.on(
        "metrics_collected",
        lambda m: log.emit(
            "vad_metrics", participant=participant, vad_infer_s=m.inference_duration_total, vad_inferences=m.inference_count
        ),
    )
    return vad


def emit_final(log: EventLog, participant: str, text: str, stt: FasterWhisperSTT) -> None:
    """A final transcript reached the application; it carries the STT call that produced it."""
    rec = stt.last
    log.emit(
        "final", participant=participant, text=text,
        speech_start=rec.speech_start if rec else None, speech_end=rec.speech_end if rec else None,
        stt_cpu_s=rec.cpu_s if rec else None, infer_s=(rec.done - rec.speech_end) if rec else None,
        audio_s=rec.audio_s if rec else None,
    )  # fmt: skip


async def transcribe_participant(room: RoomView, identity: str, config: RunConfig, log: EventLog) -> None:
    """VAD + STT over one participant's audio until it leaves; every event goes to the log."""
    log.emit("participant_joined", participant=identity)
    stt = make_stt(config, participant=identity, log=log)
    vad = make_vad(config, participant=identity, log=log)
    stream = agents_stt.StreamAdapter(stt=stt, vad=vad).stream()

    async def push() -> None:
        async for frame in room.frames(identity):
            stream.push_frame(frame)
        stream.end_input()

    pusher = asyncio.create_task(push(), name=f"push-{identity}")
    try:
        async for ev in stream:
            if ev.type == agents_stt.SpeechEventType.START_OF_SPEECH:
                log.emit("speech_start", participant=identity)
            elif ev.type == agents_stt.SpeechEventType.END_OF_SPEECH:
                log.emit("speech_end", participant=identity)
            elif ev.type == agents_stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives[0].text:
                emit_final(log, identity, ev.alternatives[0].text, stt)
        await pusher
    finally:
        pusher.cancel()
        await stream.aclose()
        log.emit("participant_left", participant=identity)


class RoomAudioInput(voice_io.AudioInput):
    """An AgentSession's audio input fed from one participant's frames of the kit's room."""

    def __init__(self, room: RoomView, identity: str) -> None:
        super().__init__(label=f"kit-room-{identity}")
        self._frames = aiter(room.frames(identity))
        self.ended = asyncio.Event()

    async def __anext__(self) -> rtc.AudioFrame:
        try:
            return await anext(self._frames)
        except StopAsyncIteration:
            self.ended.set()
            raise


class Transcriber(Agent):
    """A listen-only agent: no LLM, no TTS; user turns end at the VAD and are never answered."""

    def __init__(self) -> None:
        super().__init__(instructions="Transcribe the participant. Never reply.")

    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        raise StopResponse()


async def run_session(room: RoomView, identity: str, config: RunConfig, log: EventLog) -> None:
    """One AgentSession (own VAD, own STT, VAD turn detection) over one participant until it leaves.

    The session wraps the non-streaming STT in a StreamAdapter with its VAD, so silero runs twice
    per participant (turn detection + adapter): the real cost of this design, measured, not hidden.
    """
    log.emit("participant_joined", participant=identity)
    stt = make_stt(config, participant=identity, log=log)
    session = AgentSession(
        stt=stt,
        vad=make_vad(config, participant=identity, log=log),
        llm=None,
        tts=None,
        turn_handling=TurnHandlingOptions(
            turn_detection="vad", interruption={"enabled": False}, preemptive_generation={"enabled": False}
        ),
        user_away_timeout=None,
        session_close_transcript_timeout=1.0,
    )

    @session.on("user_input_transcribed")
    def _on_transcript(ev) -> None:
        if ev.is_final and ev.transcript:
            emit_final(log, identity, ev.transcript, stt)

    @session.on("user_state_changed")
    def _on_state(ev) -> None:
        if ev.new_state == "speaking":
            log.emit("speech_start", participant=identity)
        elif ev.old_state == "speaking":
            log.emit("speech_end", participant=identity)

    audio = RoomAudioInput(room, identity)
    session.input.audio = audio
    await session.start(Transcriber(), record=False)
    try:
        await audio.ended.wait()
    finally:
        await session.aclose()
        log.emit("participant_left", participant=identity)
