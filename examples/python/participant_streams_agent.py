"""Transcribe every participant of a room from ONE job, without AgentSession: per participant a silero
VAD + STT stream (`ctx.add_participant_entrypoint`), the job publishing each final transcript itself.

The lightest design: one agent participant, one VAD per speaker, no session machinery. Its STT is
OpenAI's transcription API as the plugin's docs write it, `openai.STT(model=...)`, no base URL: the
OpenAI client reads OPENAI_BASE_URL and OPENAI_API_KEY, which `kit live --agent` points at the kit's
local stand-in; deployed, the same line reaches api.openai.com. Nothing here knows of the kit.

    python participant_streams_agent.py start   # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

Environment: KIT_AGENT_NAME (the name to register; explicit dispatch only), OPENAI_API_KEY.
"""

from __future__ import annotations

import asyncio
import logging
import os

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess, cli, stt, utils
from livekit.plugins import openai, silero

logger = logging.getLogger("participant-streams-transcriber")

AGENT_NAME = os.environ.get("KIT_AGENT_NAME") or "participant-streams-transcriber"


def prewarm(proc: JobProcess) -> None:
    # Runs once per job process: the model loads before a job arrives, and every stream shares it.
    proc.userdata["vad"] = silero.VAD.load()  # defaults: 0.55 s of silence ends an utterance


server = AgentServer(
    setup_fnc=prewarm,
    host="127.0.0.1",  # the worker's health-check server (default: every interface)
    port=0,  # any free port, so several workers fit on one machine
)


@server.rtc_session(agent_name=AGENT_NAME)  # a name means explicit dispatch: joins only rooms it is sent to
async def entrypoint(ctx: JobContext) -> None:
    # gpt-4o-transcribe is not a streaming STT: the StreamAdapter cuts the audio into utterances with
    # the VAD and sends each one to the transcription API when it ends.
    transcriber = stt.StreamAdapter(stt=openai.STT(model="gpt-4o-transcribe", language="en"), vad=ctx.proc.userdata["vad"])

    async def on_participant(ctx: JobContext, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return  # never transcribe other agents
        track = await wait_for_microphone(ctx.room, participant)
        await transcribe(ctx.room, transcriber, track, participant.identity)

    # Before connect(): it fires for everyone already in the room, and for each later joiner.
    ctx.add_participant_entrypoint(on_participant)
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)


async def wait_for_microphone(room: rtc.Room, participant: rtc.RemoteParticipant) -> rtc.Track:
    """The participant's subscribed microphone track, once there is one."""
    subscribed: utils.aio.Chan[rtc.Track] = utils.aio.Chan()

    def on_subscribed(track: rtc.Track, publication: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant) -> None:
        if who.identity == participant.identity and publication.source == rtc.TrackSource.SOURCE_MICROPHONE:
            subscribed.send_nowait(track)

    room.on("track_subscribed", on_subscribed)
    try:
        for publication in participant.track_publications.values():
            if publication.source == rtc.TrackSource.SOURCE_MICROPHONE and publication.track is not None:
                return publication.track
        return await subscribed.recv()
    finally:
        room.off("track_subscribed", on_subscribed)


async def transcribe(room: rtc.Room, transcriber: stt.StreamAdapter, track: rtc.Track, identity: str) -> None:
    speech = transcriber.stream()
    audio = rtc.AudioStream(track, sample_rate=16000, num_channels=1)  # what silero and the STT use

    async def pump() -> None:
        async for event in audio:
            speech.push_frame(event.frame)
        speech.end_input()  # the track ended: flush the last utterance

    pushing = asyncio.create_task(pump())
    try:
        async for event in speech:
            text = event.alternatives[0].text if event.alternatives else ""
            if event.type != stt.SpeechEventType.FINAL_TRANSCRIPT or not text:
                continue
            # LiveKit's transcription format, what AgentSession publishes and what LiveKit clients read:
            # a text stream on lk.transcription, sent on behalf of the speaker, naming their track.
            writer = await room.local_participant.stream_text(
                topic="lk.transcription",
                sender_identity=identity,
                attributes={"lk.transcription_final": "true", "lk.transcribed_track_id": track.sid,
                            "lk.segment_id": utils.shortuuid("SG_")},  # fmt: skip
            )
            await writer.write(text)
            await writer.aclose()
    finally:
        pushing.cancel()
        await speech.aclose()
        await audio.aclose()


if __name__ == "__main__":
    cli.run_app(server)
