"""Transcribe every participant of a room from ONE job, one AgentSession per participant.

The pattern of LiveKit's multi-user-transcriber example (livekit/agents, examples/other/transcription),
with its STT as LiveKit's examples write it: `inference.STT("deepgram/nova-3")`, LiveKit Inference,
no base URL. Nothing here knows of the kit: under `kit live --agent`, LIVEKIT_INFERENCE_URL points
the client at the kit's local stand-in; deployed, the same line reaches LiveKit Cloud.

    python multi_session_agent.py start      # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

Environment: KIT_AGENT_NAME (the name to register; explicit dispatch only). Unlike agents-js 1.9.0
(issue #1927), livekit-agents runs several AgentSessions in one room.
"""

from __future__ import annotations

import asyncio
import logging
import os

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    AutoSubscribe,
    JobContext,
    JobProcess,
    StopResponse,
    TurnHandlingOptions,
    cli,
    inference,
    room_io,
)
from livekit.plugins import silero

logger = logging.getLogger("multi-session-transcriber")

AGENT_NAME = os.environ.get("KIT_AGENT_NAME") or "multi-session-transcriber"


class Transcriber(Agent):
    """Listens only: no LLM, no TTS; every user turn stops at its transcript."""

    def __init__(self) -> None:
        super().__init__(instructions="Transcribe the participant. Never reply.")

    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        raise StopResponse()  # the transcript is already published; there is nothing to answer


def prewarm(proc: JobProcess) -> None:
    # Runs once per job process: the model loads before a job arrives, and every session shares it.
    proc.userdata["vad"] = silero.VAD.load()  # defaults: 0.55 s of silence ends an utterance


server = AgentServer(
    setup_fnc=prewarm,
    host="127.0.0.1",  # the worker's health-check server (default: every interface)
    port=0,  # any free port, so several workers fit on one machine
)


@server.rtc_session(agent_name=AGENT_NAME)  # a name means explicit dispatch: joins only rooms it is sent to
async def entrypoint(ctx: JobContext) -> None:
    sessions: dict[str, AgentSession] = {}
    tasks: set[asyncio.Task] = set()

    def run(coro) -> None:  # keep a reference to each background task until it ends
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_track_published(publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        # A speaker is a participant who publishes a microphone: a session starts at the first one
        # (late joiners too), never for an agent or for someone who only listens.
        if (
            publication.source != rtc.TrackSource.SOURCE_MICROPHONE
            or participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            or participant.identity in sessions
        ):
            return
        # Transcription only: STT + VAD, no LLM, no TTS. The streaming STT finds each turn's end
        # itself; the session's room output publishes every final to lk.transcription on the
        # participant's behalf.
        session = AgentSession(
            vad=ctx.proc.userdata["vad"],
            stt=inference.STT("deepgram/nova-3", language="en"),
            turn_handling=TurnHandlingOptions(turn_detection="vad"),  # the audio turn detector only matters for replying
            user_away_timeout=None,
        )
        sessions[participant.identity] = session
        run(
            session.start(
                agent=Transcriber(),
                room=ctx.room,
                room_options=room_io.RoomOptions(
                    participant_identity=participant.identity,
                    text_input=False,  # one room-wide chat topic cannot feed several sessions
                    audio_output=False,
                    text_output=True,
                    # Closing at the disconnect drops a final still on its way (a last sentence
                    # before leaving); the session stays, and picks the participant up again if
                    # they rejoin. The job (and every session) ends with the room.
                    close_on_disconnect=False,
                ),
            )
        )

    ctx.room.on("track_published", on_track_published)
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    for participant in ctx.room.remote_participants.values():
        for publication in participant.track_publications.values():
            on_track_published(publication, participant)


if __name__ == "__main__":
    cli.run_app(server)
