"""Per-participant speech pipelines shared by the architectures, and how they report events.

`transcribe_participant` is the lightweight VAD + STT pipeline (livekit's `StreamAdapter` over
silero and the kit's STT) that the participant-entrypoint and multi-dispatch designs run per
participant. Every STT/VAD instance made here belongs to one participant.
"""

from __future__ import annotations

import asyncio

from livekit.agents import stt as agents_stt
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
        lambda m: log.emit("vad_metrics", participant=participant, vad_cpu_s=m.inference_duration_total),
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
