"""participant_entrypoint: one job; a VAD + STT pipeline per participant, no AgentSession.

Live, the job learns of each participant through `ctx.add_participant_entrypoint` (registered
before `ctx.connect()`, so those already in the room are not missed) and starts its pipeline then.
A console (fake) job never fires participant entrypoints, so there the job starts it for each
participant of the console room as it joins.
"""

from livekit.agents import JobContext

from kit.architectures import Design
from kit.architectures.pipeline import transcribe_participant
from kit.room.scenario import Scenario
from kit.run.jobs import Job, JobRequest, run_job

DESIGN = Design(
    color="#E69F00", jobs="1", agent_participants="1",
    per_participant="a VAD + STT pipeline (StreamAdapter), started per participant",
    livekit_parts="JobContext.add_participant_entrypoint, stt.StreamAdapter",
)


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest("j1")]


async def on_participant(job: Job, identity: str) -> None:
    await transcribe_participant(job.room, identity, job.config, job.log)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant, joins_from_participant_entrypoint=True)
