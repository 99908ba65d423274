"""Transcribe a room with ONE AgentSession that follows whoever the server says is speaking.

The third workaround of agents-js #1927: one session, its input switched to the active speaker
(`room_io.set_participant`) whenever LiveKit's active-speaker detection changes. The lightest
design, and a baseline: while two people talk at once only one is heard (docs/hard-rooms.md), and
a new speaker's first words may go by before the switch. Its STT as LiveKit's examples write it:
`inference.STT("deepgram/nova-3")`, LiveKit Inference, no base URL. Nothing here knows of the kit:
under `kit live --agent`, LIVEKIT_INFERENCE_URL points the client at the kit's local stand-in.

    python active_speaker_agent.py start      # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

Environment: KIT_AGENT_NAME (the name to register; explicit dispatch only).
"""

from __future__ import annotations

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

logger = logging.getLogger("active-speaker-transcriber")

AGENT_NAME = os.environ.get("KIT_AGENT_NAME") or "active-speaker-transcriber"


class Transcriber(Agent):
    """Listens only: no LLM, no TTS; every user turn stops at its transcript."""

    def __init__(self) -> None:
        super().__init__(instructions="Transcribe the participant. Never reply.")

    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        raise StopResponse()  # the transcript is already published; there is nothing to answer


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()  # defaults: 0.55 s of silence ends an utterance


server = AgentServer(
    setup_fnc=prewarm,
    host="127.0.0.1",  # the worker's health-check server (default: every interface)
    port=0,  # any free port, so several workers fit on one machine
)


@server.rtc_session(agent_name=AGENT_NAME)  # a name means explicit dispatch: joins only rooms it is sent to
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=inference.STT("deepgram/nova-3", language="en"),
        turn_handling=TurnHandlingOptions(turn_detection="vad"),
        user_away_timeout=None,
    )
    await session.start(
        agent=Transcriber(),
        room=ctx.room,
        room_options=room_io.RoomOptions(
            text_input=False,
            audio_output=False,
            text_output=True,  # each final goes to lk.transcription on behalf of the followed participant
            close_on_disconnect=False,  # the speaker it follows leaving must not end the session
        ),
    )

    def on_active_speakers_changed(speakers: list[rtc.Participant]) -> None:
        # The server's list, loudest first: follow the loudest person who is not an agent (or this job).
        for speaker in speakers:
            if isinstance(speaker, rtc.RemoteParticipant) and speaker.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                if session.room_io.linked_participant is None or session.room_io.linked_participant.identity != speaker.identity:
                    session.room_io.set_participant(speaker.identity)
                return

    ctx.room.on("active_speakers_changed", on_active_speakers_changed)


if __name__ == "__main__":
    cli.run_app(server)
