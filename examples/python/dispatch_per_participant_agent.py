"""Transcribe ONE participant per job: each participant gets its own explicitly dispatched job (and so
its own agent participant and process), the participant named in the dispatch metadata,
`{"participant_identity": "..."}`. One AgentSession per job, the pattern AgentSession was made for.

Its STT is Deepgram's live API through livekit-plugins-deepgram. That plugin reads DEEPGRAM_API_KEY
but no base-URL variable, so this is the one line an agent must write to be measured by the kit:
the base URL from the environment, Deepgram's own by default. `kit live --agent` sets
DEEPGRAM_BASE_URL to its local stand-in; deployed, leave it unset.

    python dispatch_per_participant_agent.py start   # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

Environment: KIT_AGENT_NAME (the name to register; explicit dispatch only), DEEPGRAM_API_KEY,
DEEPGRAM_BASE_URL (optional).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    AutoSubscribe,
    CloseEvent,
    JobContext,
    JobProcess,
    StopResponse,
    TurnHandlingOptions,
    cli,
    room_io,
)
from livekit.plugins import deepgram, silero

logger = logging.getLogger("per-participant-transcriber")

AGENT_NAME = os.environ.get("KIT_AGENT_NAME") or "per-participant-transcriber"
LAST_FINAL_S = 5.0  # after its participant leaves, how long the job waits for the final of their last sentence
DEEPGRAM_URL = os.environ.get("DEEPGRAM_BASE_URL") or "https://api.deepgram.com/v1/listen"


class Transcriber(Agent):
    """Listens only: no LLM, no TTS; every user turn stops at its transcript."""

    def __init__(self) -> None:
        super().__init__(instructions="Transcribe the participant. Never reply.")

    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        raise StopResponse()  # the transcript is already published; there is nothing to answer


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()  # defaults: 0.55 s of silence ends an utterance


server = AgentServer(setup_fnc=prewarm, host="127.0.0.1", port=0)  # health check on loopback, any free port


@server.rtc_session(agent_name=AGENT_NAME)  # a name means explicit dispatch: joins only rooms it is sent to
async def entrypoint(ctx: JobContext) -> None:
    try:
        identity = json.loads(ctx.job.metadata or "{}").get("participant_identity")
    except (json.JSONDecodeError, AttributeError):
        identity = None
    if not identity:
        logger.error("dispatch metadata names no participant_identity: %r", ctx.job.metadata)
        ctx.shutdown("no participant to transcribe")
        return
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=deepgram.STT(model="nova-3", language="en", base_url=DEEPGRAM_URL),
        turn_handling=TurnHandlingOptions(turn_detection="vad"),  # the audio turn detector only matters for replying
        user_away_timeout=None,
    )

    @session.on("close")
    def on_close(event: CloseEvent) -> None:
        ctx.shutdown("session closed")

    @ctx.room.on("participant_disconnected")
    def on_left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == identity:
            closing.add(asyncio.create_task(finish()))

    async def finish() -> None:
        # Its participant left: the job is done once their last sentence is out. A track that ends with
        # words never gives the STT the silence that ends that turn, and AgentSession's own close at the
        # disconnect (close_on_disconnect) stops publishing before that final comes. So: flush the STT
        # (deepgram.STT sends Finalize) and wait for the final, then close.
        with contextlib.suppress(Exception):
            await session.commit_user_turn(transcript_timeout=LAST_FINAL_S, skip_reply=True)
        await session.aclose()

    closing: set[asyncio.Task] = set()  # a reference to the task until the job ends
    await session.start(
        agent=Transcriber(),
        room=ctx.room,
        room_options=room_io.RoomOptions(participant_identity=identity, text_input=False, audio_output=False,
                                         text_output=True, close_on_disconnect=False),  # fmt: skip
    )


if __name__ == "__main__":
    cli.run_app(server)
