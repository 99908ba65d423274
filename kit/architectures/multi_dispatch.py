"""multi_dispatch: one explicitly dispatched job (own process, own agent participant) per
participant; each job runs one AgentSession for the participant named in its metadata."""

from livekit.agents import JobContext

from kit.jobs import Job, JobRequest, run_job
from kit.pipeline import run_session
from kit.scenario import Scenario


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest(f"j{i}", participant=p.identity) for i, p in enumerate(scenario.participants, start=1)]


async def on_participant(job: Job, identity: str) -> None:
    await run_session(job.room, identity, job.config, job.log)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant)
