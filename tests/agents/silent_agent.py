"""A test agent that registers, joins the rooms it is dispatched to and publishes nothing: `kit live
--agent` must say so (tests/test_own_agent.py)."""

import asyncio
import os

from livekit.agents import AgentServer, JobContext, cli

server = AgentServer(host="127.0.0.1", port=0)


@server.rtc_session(agent_name=os.environ["KIT_AGENT_NAME"])
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    await asyncio.Event().wait()  # listens to nobody, says nothing


if __name__ == "__main__":
    cli.run_app(server)
