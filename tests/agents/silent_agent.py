"""A test agent that registers, joins the rooms it is dispatched to and publishes nothing: `kit live
--agent` must say so (tests/test_own_agent.py). It also makes two requests the kit's stand-in refuses, as
an agent of yours might: a voice from LiveKit Inference (inference.TTS, which the stand-in does not serve)
and a transcription signed with another secret (inference.STT with its own api_secret). Its row must name both."""

import asyncio
import logging
import os

from livekit import rtc
from livekit.agents import AgentServer, APIConnectOptions, JobContext, cli, inference

server = AgentServer(host="127.0.0.1", port=0)
log = logging.getLogger("silent-agent")


@server.rtc_session(agent_name=os.environ["KIT_AGENT_NAME"])
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    try:
        async for _ in inference.TTS("cartesia/sonic-3").synthesize("hello"):
            pass
    except Exception as e:  # the stand-in's 404: logged, and the agent carries on (as a real one might)
        log.warning("TTS failed: %s", e)
    stt = inference.STT("deepgram/nova-3", api_key=os.environ["LIVEKIT_API_KEY"], api_secret="not-the-servers-secret-0123456789")
    stream = stt.stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_frame(rtc.AudioFrame(b"\0\0" * 160, 16000, 1, 160))
    try:
        async for _ in stream:
            pass
    except Exception as e:  # the stand-in's 401
        log.warning("STT failed: %s", e)
    await asyncio.Event().wait()  # listens to nobody, says nothing


if __name__ == "__main__":
    cli.run_app(server)
