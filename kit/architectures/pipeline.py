"""Per-participant speech pipelines shared by the architectures, and how they report events.

`transcribe_participant` is the lightweight VAD + STT pipeline (livekit's `StreamAdapter` over
silero and the kit's STT) of the participant-entrypoint design; `run_session` is one listen-only
`AgentSession` per participant, what multi-session and multi-dispatch run. Every STT/VAD
instance made here belongs to one participant. Both work on any kit room (console or live).
"""

from __future__ import annotations

import asyncio

from livekit.agents import Agent, AgentSession, StopResponse, TurnHandlingOptions
from livekit.agents import stt as agents_stt
from livekit.plugins import silero

from kit.config import RunConfig, VADSettings
from kit.room.console import RoomView
from kit.room.gate import gated
from kit.run.events import EventLog
from kit.stt import FasterWhisperSTT, StreamingSTT, make_stt


def load_vad(v: VADSettings) -> silero.VAD:
    """Silero with the kit's VAD settings (the designs' VADs, and the STT service's endpointing)."""
    return silero.VAD.load(
        min_speech_duration=v.min_speech_duration,
        min_silence_duration=v.min_silence_duration,
        prefix_padding_duration=v.prefix_padding_duration,
        activation_threshold=v.activation_threshold,
    )


def make_vad(config: RunConfig, *, participant: str, log: EventLog) -> silero.VAD:
    """A silero VAD instance for one participant, whose inference time goes to the event log."""
    vad = load_vad(config.vad)
    vad.on(
        "metrics_collected",
        lambda m: log.emit(
            "vad_metrics", participant=participant, vad_infer_s=m.inference_duration_total, vad_inferences=m.inference_count
        ),
    )
    return vad


def emit_final(room: RoomView, log: EventLog, participant: str, text: str, stt: FasterWhisperSTT | StreamingSTT) -> None:
    """A final transcript reached the application; it carries the STT call that produced it.
    The room decides where it goes: the event log (console) or the room as a transcription (live)."""
    rec = stt.last
    room.deliver_final(
        log, participant, text,
        speech_start=rec.speech_start if rec else None, speech_end=rec.speech_end if rec else None,
        stt_cpu_s=rec.cpu_s if rec else None, infer_s=rec.infer_s if rec else None,
        audio_s=rec.audio_s if rec else None,
    )  # fmt: skip


async def transcribe_participant(room: RoomView, identity: str, config: RunConfig, log: EventLog) -> None:
    """VAD + STT over one participant's audio until it leaves; every event goes to the log. A
    streaming STT (`--stt stream`) is given every frame and finds the turns itself: no VAD here."""
    log.emit("participant_joined", participant=identity)
    stt = make_stt(config, participant=identity, log=log)
    if stt.capabilities.streaming:
        stream = stt.stream()
    else:
        stream = agents_stt.StreamAdapter(stt=stt, vad=make_vad(config, participant=identity, log=log)).stream()

    async def push() -> None:
        async for frame in gated(room.frames(identity), config.vad, streaming=stt.capabilities.streaming):
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
                emit_final(room, log, identity, ev.alternatives[0].text, stt)
        await pusher
    finally:
        pusher.cancel()
        await stream.aclose()
        await stt.aclose()
        log.emit("participant_left", participant=identity)


def turn_metrics_logger(log: EventLog, participant):
    """livekit-agents' own per-turn numbers beside the kit's: the user message's `transcription_delay`
    (end of speech by its VAD -> final transcript), as the session hands it to the agent (the kit's
    Transcriber stops every turn there, so it never reaches the conversation items).
    `participant`: an identity, or a callable giving the one the turn belongs to."""

    def on_turn(message) -> None:
        delay = (getattr(message, "metrics", None) or {}).get("transcription_delay")
        if delay is not None:
            who = participant() if callable(participant) else participant
            log.emit("turn_metrics", participant=who, lk_transcription_delay_s=float(delay))

    return on_turn


def make_session(config: RunConfig, stt: FasterWhisperSTT | StreamingSTT, vad: silero.VAD) -> AgentSession:
    """A listen-only AgentSession: STT + VAD, no LLM/TTS, VAD turn detection, never away."""
    return AgentSession(
        stt=stt,
        vad=vad,
        llm=None,
        tts=None,
        turn_handling=TurnHandlingOptions(
            turn_detection="vad", interruption={"enabled": False}, preemptive_generation={"enabled": False}
        ),
        user_away_timeout=None,
        # session_close_transcript_timeout: livekit's default (2 s), as the design ships: a participant who
        # leaves within it of their last words still gets that final
    )


class Transcriber(Agent):
    """A listen-only agent: no LLM, no TTS; user turns end at the VAD and are never answered."""

    def __init__(self, on_turn=None) -> None:
        super().__init__(instructions="Transcribe the participant. Never reply.")
        self.on_turn = on_turn  # given each completed user message (turn_metrics_logger)

    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        if self.on_turn:
            self.on_turn(new_message)
        raise StopResponse()


async def run_session(room: RoomView, identity: str, config: RunConfig, log: EventLog) -> None:
    """One AgentSession (own VAD, own STT, VAD turn detection) over one participant until it leaves.

    The session wraps the non-streaming STT in a StreamAdapter with its VAD, so silero runs twice
    per participant (turn detection + adapter): the real cost of this design, measured, not hidden.
    A streaming STT (`--stt stream`) the session streams to natively (no StreamAdapter); its VAD
    still detects the turns (turn_detection="vad"), the finals come from the STT's own endpoints.
    """
    log.emit("participant_joined", participant=identity)
    stt = make_stt(config, participant=identity, log=log)
    session = make_session(config, stt, make_vad(config, participant=identity, log=log))

    @session.on("user_input_transcribed")
    def _on_transcript(ev) -> None:
        if ev.is_final and ev.transcript:
            emit_final(room, log, identity, ev.transcript, stt)

    @session.on("user_state_changed")
    def _on_state(ev) -> None:
        if ev.new_state == "speaking":
            log.emit("speech_start", participant=identity)
        elif ev.old_state == "speaking":
            log.emit("speech_end", participant=identity)

    left = await room.start_session(session, Transcriber(turn_metrics_logger(log, identity)), identity)
    try:
        await left.wait()
    finally:
        await session.aclose()
        await stt.aclose()
        log.emit("lk_stt_usage", participant=identity, audio_s=stt_usage_audio_s(session))
        log.emit("participant_left", participant=identity)


def stt_usage_audio_s(session: AgentSession) -> float:
    """The seconds of STT audio livekit-agents itself counts for a session (`session.usage`: the
    audio_duration of its STTModelUsage rows), to set beside what the STT was actually sent."""
    from livekit.agents.metrics.usage import STTModelUsage

    return float(sum(u.audio_duration for u in session.usage.model_usage if isinstance(u, STTModelUsage)))
