"""multi_dispatch: one explicitly dispatched job (own process, own agent participant) per
participant; each job runs one AgentSession for the participant named in its metadata."""

from livekit.agents import JobContext

from kit.architectures import Design
from kit.architectures.pipeline import run_session
from kit.room.scenario import Scenario
from kit.run.jobs import Job, JobRequest, run_job

DESIGN = Design(
    color="#009E73", jobs="N", agent_participants="N",
    per_participant="one dispatched job, in its own process",
    livekit_parts="AgentServer agent_name, explicit dispatch, metadata",
)


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest(f"j{i}", participant=p.identity) for i, p in enumerate(scenario.participants, start=1)]


async def on_participant(job: Job, identity: str) -> None:
    await run_session(job.room, identity, job.config, job.log)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant)
