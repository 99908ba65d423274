"""participant_entrypoint: one job; a VAD + STT pipeline per participant, no AgentSession.

Live, `on_participant` is what `ctx.add_participant_entrypoint` calls for each participant; a
console (fake) job never fires participant entrypoints, so the job calls it for each participant
of the console room as it joins.
"""

from livekit.agents import JobContext

from kit.jobs import Job, JobRequest, run_job
from kit.pipeline import transcribe_participant
from kit.scenario import Scenario


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest("j1")]


async def on_participant(job: Job, identity: str) -> None:
    await transcribe_participant(job.room, identity, job.config, job.log)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant)
