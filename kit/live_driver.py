"""`python -m kit live`: the same comparison in a real LiveKit room (DESIGN §3).

Per architecture, while its agent worker runs (`python -m kit agent --arch A`, on any machine):

1. create a unique room (RoomService.CreateRoom; empty_timeout, so a crashed run's room goes away);
2. connect the listener (joins and subscribes, publishes nothing) with a handler for
   `lk.transcription` text streams;
3. create the dispatch(es) to `kit-<arch>-<suffix>` (AgentDispatchService.CreateDispatch): one for a
   single-job design, one per participant for multi-dispatch, each with its JobSpec as metadata
   and the run's start instant t0 = now + START_LEAD_S as wall time (kit/live.py, "The clock");
4. wait until t0 for the agents to join; if none does, stop with a problem that says why;
5. each publisher joins CONNECT_AHEAD_S before its scenario join time, publishes one microphone
   track and feeds it in real time, paced like console mode (ConsoleRoom.frames: absolute deadlines
   from t0), then leaves at the end of its track or its leave time;
6. wait for the agents to leave (a job ends once everyone it serves has left and its last finals
   are out), at most END_GRACE_S after the room's end;
7. delete the dispatches and the room, whatever happened.

The listener logs each final transcription as a `final` event of the runner's log, stamped when it
arrives (latency includes the server), with the VAD span and STT cost from its `kit.*` attributes:
the run directory has the console schema and kit.metrics.compute reads it unchanged. When the
worker runs on this machine its jobs write their own events into the same run directory, and their
processes are sampled for CPU and memory (only the job processes: the worker's main process and
forkserver, counted in console mode, are not); from another machine, cost columns are empty (NaN).
Cold start, live: from creating the dispatch to the agent joining the room, as the listener saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from livekit import api, rtc

from kit import architectures, scenario
from kit.config import KitError, RunConfig
from kit.events import EventLog
from kit.jobs import JobSpec
from kit.live import (
    TRANSCRIPTION_TOPIC, Credentials, RedactingFormatter, agent_name, final_fields,
    listener_token, mono_at, publisher_token, redact, server_api,
)  # fmt: skip
from kit.record import ArchRun, RunRecord
from kit.room import ROOM_RATE, ConsoleRoom, sleep_until
from kit.runner import END_GRACE_S, job_errors, new_run_dir, quiet_livekit
from kit.sampler import ResourceSampler
from kit.stt import resolve_model, stt_delay

START_LEAD_S = 15.0  # dispatch -> t0: assignment, job process, model load, joining the room
CONNECT_AHEAD_S = 2.0  # a publisher joins this early, so its first words are not lost to set-up
EMPTY_TIMEOUT_S = 60  # the server closes an abandoned room after this long empty
AGENT_REGISTER_TIMEOUT_S = 60.0  # --local-agents: start-up and registration of a worker
AGENT_STOP_TIMEOUT_S = 30.0
AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT



def run(
    config: RunConfig, room: str | None = None, progress_factory: Callable[[str, float], Callable[[float], None]] | None = None,
    local_agents: bool = False,
) -> Path:  # fmt: skip
    """Run every architecture of the config live, one after the other; return the run directory.
    `local_agents`: start each architecture's agent worker on this machine for its turn."""
    creds = Credentials.from_env()
    for name in config.archs:
        architectures.get(name)
    names = {name: agent_name(name) for name in config.archs}
    sc = scenario.load(config.scenario)
    model = resolve_model(config.model) if config.stt == "whisper" else None
    stt_delay(config.stt)  # fail fast on a bad --stt (the model is loaded by the agents)
    run_dir = new_run_dir(config.results_dir)
    quiet_livekit(run_dir)
    _redact_log_handlers(creds.api_secret)
    rooms = {name: _room_name(room, names[name], run_dir.name, len(config.archs)) for name in config.archs}
    record = RunRecord.new(run_dir, config, sc, model, mode="live", live={"server": creds.http_url, "agents": names, "rooms": rooms})
    record.save(run_dir)
    sampler = ResourceSampler(run_dir / "resources.jsonl", roots=partial(job_pids, run_dir / "events"))
    interrupted = False
    sampler.start()
    try:
        for name in config.archs:
            progress = progress_factory(name, sc.duration_s) if progress_factory else None
            with local_agent(name, config) if local_agents else contextlib.nullcontext():
                result = asyncio.run(run_arch(name, config, sc, run_dir, creds, rooms[name], sampler, progress))
            record.archs[name] = result
            record.save(run_dir)
    except KeyboardInterrupt:  # Ctrl-C: the running design cleaned up its room; keep what was measured
        interrupted = True
    finally:
        sampler.stop()
        record.finish(run_dir, interrupted=interrupted)
    return run_dir


@contextlib.contextmanager
def local_agent(arch: str, config: RunConfig):
    """`python -m kit agent --arch <arch>` as a child process, registered before the run goes on;
    stopped (SIGTERM: it drains, then exits) afterwards. Its output goes to the terminal."""
    cmd = [sys.executable, "-m", "kit", "agent", "--arch", arch, "--stt", config.stt, "--compute-type", config.compute_type]
    worker = subprocess.Popen(cmd + (["--model", config.model] if config.model else []), stdout=subprocess.PIPE, text=True)
    try:
        _wait_registered(worker, arch)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(AGENT_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _wait_registered(worker: subprocess.Popen, arch: str) -> None:
    """Echo the worker's output (a thread: a silent worker must not block the timeout) until it says
    it registered."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_echo, args=(worker.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + AGENT_REGISTER_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise KitError(f"the {arch} agent worker exited before registering (exit code {worker.wait()})")
        if "registered" in line:
            return
    raise KitError(f"the {arch} agent worker did not register within {AGENT_REGISTER_TIMEOUT_S:.0f} s")


def _echo(stream, lines: queue.Queue) -> None:
    for line in stream:
        print(line, end="", flush=True)
        lines.put(line)
    lines.put(None)


def _room_name(given: str | None, agent: str, run_id: str, n_archs: int) -> str:
    if given:
        return given if n_archs == 1 else f"{given}-{agent}"
    return f"{agent}-{run_id}"


def _redact_log_handlers(secret: str) -> None:
    """livekit.log (set up by kit.runner.quiet_livekit) gets the secret and tokens scrubbed."""
    for h in logging.getLogger().handlers:
        if getattr(h, "_kit", False):
            h.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secret))


def job_specs(name: str, config: RunConfig, sc: scenario.Scenario, run_dir: Path, t_submit: float, t0_wall: float) -> list[JobSpec]:
    """The dispatch metadata of one architecture's jobs (a job serves its participant, or all)."""
    return [
        JobSpec(name, req.job, req.participant, "live", str(sc.path), str(run_dir), config.to_dict(), t_submit,
                identities=[req.participant] if req.participant else sc.identities, t0_wall=t0_wall)  # fmt: skip
        for req in architectures.get(name).plan(sc)
    ]


async def run_arch(
    name: str, config: RunConfig, sc: scenario.Scenario, run_dir: Path, creds: Credentials, room: str,
    sampler: ResourceSampler, progress: Callable[[float], None] | None = None,
) -> ArchRun:  # fmt: skip
    """One architecture in a real room: steps 1-7 of the module docstring."""
    t_submit = time.time()
    t0_wall = t_submit + START_LEAD_S
    t0 = mono_at(t0_wall)
    specs = job_specs(name, config, sc, run_dir, t_submit, t0_wall)
    result = ArchRun(arch=name, jobs=len(specs), problems=[])
    events = EventLog(run_dir / "events" / f"{name}-runner.jsonl", t0=t0, arch=name, job="runner", wall_clock=True)
    sampler.arch = name
    listener = Listener(events, sc.identities)
    dispatches: list[str] = []
    try:
        await create_room(creds, room)
        await listener.connect(creds, room)
        dispatches = await create_dispatches(creds, room, agent_name(name), specs)
        joined = await listener.wait_for_agents(len(specs), until=t0)
        result.cold_start_s = {who: at - (t0 - START_LEAD_S) for who, at in listener.agent_joined.items()}
        if joined == 0:
            result.problems.append(f"no agent {agent_name(name)!r} joined within {START_LEAD_S:.0f} s: is "
                                   f"`python -m kit agent --arch {name}` running against this server, with the same "
                                   f"LIVEKIT_AGENT_SUFFIX?")  # fmt: skip
        else:
            if joined < len(specs):
                result.problems.append(f"only {joined} of {len(specs)} agents had joined at t0")
            await _run_room(result, events, sc, t0, creds, room, listener, progress)
    except Exception as e:  # one line, secrets out: the run directory records it, the run is incomplete
        result.problems.append(redact(f"{type(e).__name__}: {e}", creds.api_secret))
    finally:
        if progress:
            progress(float("inf"))
        result.problems += await close_room(creds, room, dispatches)
        await listener.close()
        for p in result.problems:
            events.emit("error", detail=p)
        events.emit("run_end")
        events.close()
    result.problems += job_errors(run_dir, name)
    result.complete = not result.problems
    return result


async def _run_room(result: ArchRun, events: EventLog, sc, t0: float, creds: Credentials, room: str, listener, progress) -> None:
    """Steps 5-6: the publishers replay the scenario from t0; then the agents finish and leave."""
    result.t0_mono = t0
    events.emit("run_start", t=0.0, detail=f"{result.jobs} jobs, room {room}")
    result.problems += await _replay(creds, room, ConsoleRoom(sc, t0), listener, progress)
    if not await listener.wait_agents_left(until=t0 + sc.duration_s + END_GRACE_S):
        result.problems.append(f"agent(s) still in the room {END_GRACE_S:.0f} s after it ended")


# --- the server API (each call with its own least-privilege token) -------------------------------------


async def create_room(creds: Credentials, room: str) -> None:
    async with server_api(creds, room_create=True) as lk:
        await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=EMPTY_TIMEOUT_S))


async def create_dispatches(creds: Credentials, room: str, agent: str, specs: list[JobSpec]) -> list[str]:
    """One explicit dispatch per job, its JobSpec as metadata; returns the dispatch ids."""
    ids = []
    async with server_api(creds, room_admin=True, room=room) as lk:
        for spec in specs:
            d = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(agent_name=agent, room=room, metadata=spec.to_json()))
            ids.append(d.id)
    return ids


async def close_room(creds: Credentials, room: str, dispatches: list[str]) -> list[str]:
    """Delete the dispatches (finished ones may be gone already) and the room; returns problems."""
    problems = []
    try:
        async with server_api(creds, room_admin=True, room=room) as lk:
            for dispatch_id in dispatches:
                try:
                    await lk.agent_dispatch.delete_dispatch(dispatch_id, room)
                except api.ServerError as e:
                    if e.status != 404:
                        problems.append(f"deleting dispatch {dispatch_id}: {e.code} {e.message}")
        async with server_api(creds, room_create=True) as lk:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room))
    except Exception as e:
        problems.append(redact(f"cleaning up room {room}: {type(e).__name__}: {e}", creds.api_secret))
    return problems


# --- the room: listener and publishers -------------------------------------------------------------------


def final_event(text: str, attributes: dict[str, str], sender: str, track_owner: dict[str, str]) -> dict | None:
    """The `final` event fields of one received transcription, or None if it is not a final.
    Its participant: the owner of the transcribed track, else the stream's sender identity."""
    if attributes.get("lk.transcription_final") != "true" or not text.strip():
        return None
    participant = track_owner.get(attributes.get("lk.transcribed_track_id", "")) or sender
    return {"participant": participant, "text": text, **final_fields(attributes)}


class Listener:
    """The driver's one listening connection: logs final transcriptions, watches the agents come and go."""

    def __init__(self, events: EventLog, identities: list[str]) -> None:
        self.events = events
        self.identities = set(identities)
        self.track_owner: dict[str, str] = {}  # the publishers' track sid -> identity
        self.agent_joined: dict[str, float] = {}  # agent identity -> time.monotonic() it was seen
        self.room = rtc.Room()
        self._reading: set[asyncio.Task] = set()

    async def connect(self, creds: Credentials, room: str) -> None:
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_stream)
        self.room.on("participant_connected", self._on_participant)
        await self.room.connect(creds.url, listener_token(creds, room), rtc.RoomOptions(auto_subscribe=False))
        for p in self.room.remote_participants.values():
            self._on_participant(p)

    def agents(self) -> int:
        return sum(p.kind == AGENT for p in self.room.remote_participants.values())

    async def wait_for_agents(self, n: int, until: float) -> int:
        """Wait until n agents are in the room, but never past `until` (t0); returns how many came."""
        while len(self.agent_joined) < n and time.monotonic() < until:
            await asyncio.sleep(0.1)
        await sleep_until(until)
        return len(self.agent_joined)

    async def wait_agents_left(self, until: float) -> bool:
        while self.agents() and time.monotonic() < until:
            await asyncio.sleep(0.2)
        return not self.agents()

    def record(self, text: str, attributes: dict[str, str], sender: str) -> None:
        ev = final_event(text, attributes, sender, self.track_owner)
        if ev is None:
            return
        if ev["participant"] not in self.identities:
            self.events.emit("error", detail=f"a final transcription for {ev['participant']!r}, not a participant of the scenario")
            return
        self.events.emit("final", **ev)

    async def close(self) -> None:
        await asyncio.gather(*list(self._reading), return_exceptions=True)
        await self.room.disconnect()

    def _on_participant(self, p: rtc.RemoteParticipant) -> None:
        if p.kind == AGENT:
            self.agent_joined.setdefault(p.identity, time.monotonic())

    def _on_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        task = asyncio.create_task(self._read(reader, sender))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _read(self, reader: rtc.TextStreamReader, sender: str) -> None:
        try:
            text = await reader.read_all()
        except Exception as e:
            self.events.emit("error", detail=redact(f"reading a transcription from {sender}: {type(e).__name__}: {e}"))
            return
        self.record(text, dict(reader.info.attributes or {}), sender)


async def _replay(creds: Credentials, room: str, replay: ConsoleRoom, listener: Listener, progress) -> list[str]:
    """Every publisher at once; returns the problems (one publisher failing does not stop the others)."""
    publishers = [asyncio.create_task(publish(creds, room, replay, i, listener.track_owner)) for i in replay.identities]
    work = asyncio.gather(*publishers, return_exceptions=True)
    while not work.done():
        if progress:
            progress(time.monotonic() - replay.t0)
        await asyncio.wait([work], timeout=0.2)
    return [redact(f"publisher {i}: {type(r).__name__}: {r}", creds.api_secret)
            for i, r in zip(replay.identities, work.result()) if isinstance(r, BaseException)]  # fmt: skip


async def publish(creds: Credentials, room: str, replay: ConsoleRoom, identity: str, track_owner: dict[str, str]) -> None:
    """One scenario participant: join, publish a microphone, feed its track in real time, leave."""
    await sleep_until(replay.t0 + replay.scenario.participant(identity).join_s - CONNECT_AHEAD_S)
    conn = rtc.Room()
    await conn.connect(creds.url, publisher_token(creds, room, identity), rtc.RoomOptions(auto_subscribe=False))
    source = rtc.AudioSource(ROOM_RATE, 1, queue_size_ms=100)  # small: frames are pushed in real time anyway
    try:
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        # No DTX: silence is sent as audio, as in console mode, so the agents' VAD hears each turn end.
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, dtx=False)
        pub = await conn.local_participant.publish_track(track, options)
        track_owner[pub.sid] = identity
        async for frame in replay.frames(identity):
            await source.capture_frame(frame)
        await source.wait_for_playout()
    finally:
        await conn.disconnect()
        await source.aclose()


def job_pids(events_dir: Path, arch: str) -> list[int]:
    """The pids of this run's local job processes of the design being measured: a local job's event
    log is named <arch>-<job>-<pid>.jsonl in the run directory."""
    stems = (f.stem.rsplit("-", 1) for f in events_dir.glob(f"{arch}-*.jsonl"))
    return sorted({int(tail) for _, tail in stems if tail.isdigit()})
