"""A test agent that registers, joins the rooms it is dispatched to and publishes nothing: `kit live
--agent` must say so (tests/test_own_agent.py). It also asks LiveKit Inference for a voice (inference.TTS,
as an agent that speaks would), which the kit's stand-in does not serve: its row must say that too."""

import asyncio
import logging
import os

from livekit.agents import AgentServer, JobContext, cli, inference

server = AgentServer(host="127.0.0.1", port=0)


@server.rtc_session(agent_name=os.environ["KIT_AGENT_NAME"])
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    try:
        async for _ in inference.TTS("cartesia/sonic-3").synthesize("hello"):
            pass
    except Exception as e:  # the stand-in's 404: logged, and the agent carries on (as a real one might)
        logging.getLogger("silent-agent").warning("TTS failed: %s", e)
    await asyncio.Event().wait()  # listens to nobody, says nothing


if __name__ == "__main__":
    cli.run_app(server)
