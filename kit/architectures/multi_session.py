"""multi_session: one job; one AgentSession per participant (LiveKit's multi-user-transcriber).
Live, each session is linked to its participant with room_io.RoomOptions(participant_identity=…)."""

from livekit.agents import JobContext

from kit.architectures import Design
from kit.architectures.pipeline import run_session
from kit.room.scenario import Scenario
from kit.run.jobs import Job, JobRequest, run_job

DESIGN = Design(
    color="#0072B2", jobs="1", agent_participants="1",
    per_participant="one AgentSession (STT + VAD, no LLM/TTS)",
    livekit_parts="AgentSession, room_io participant_identity",
)


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest("j1")]


async def on_participant(job: Job, identity: str) -> None:
    await run_session(job.room, identity, job.config, job.log)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant)
