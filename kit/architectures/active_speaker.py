"""active_speaker: one job; ONE AgentSession whose audio input follows the loudest participant
(the crosstalk workaround of room_io's set_participant on the active speaker). A baseline: when
two people talk at once, only one of them is heard. Console and live alike: the session's input
(pipeline.LoudestSpeakerInput) hears every participant's track and passes on the loudest one's,
the rule set_participant would follow, applied the same way in both modes."""

from livekit.agents import JobContext

from kit.architectures import Design
from kit.architectures.pipeline import ActiveSpeakerSession
from kit.room.scenario import Scenario
from kit.run.jobs import Job, JobRequest, run_job

_sessions: dict[str, ActiveSpeakerSession] = {}  # one per job (a job process runs one job)

DESIGN = Design(
    color="#CC79A7", jobs="1", agent_participants="1",
    per_participant="none: ONE AgentSession follows the loudest participant (a baseline; misses crosstalk)",
    livekit_parts="AgentSession, room_io set_participant",
)


def plan(scenario: Scenario) -> list[JobRequest]:
    return [JobRequest("j1")]


async def on_participant(job: Job, identity: str) -> None:
    if job.spec.job not in _sessions:
        _sessions[job.spec.job] = ActiveSpeakerSession(job.room, job.config, job.log)
    await _sessions[job.spec.job].follow(identity)


async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx, on_participant)
