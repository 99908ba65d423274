"""`python -m kit live`: the same comparison in a real LiveKit room. Method: docs/live.md.

Per architecture, while its agent worker runs (`python -m kit agent --arch A`, on any machine):

1. create a unique room (RoomService.CreateRoom; empty_timeout, so a crashed run's room goes away);
2. connect the listener (joins and subscribes, publishes nothing) with a handler for
   `lk.transcription` text streams;
3. create the dispatch(es) to `kit-<arch>-<suffix>` (AgentDispatchService.CreateDispatch): one for a
   single-job design, one per participant for multi-dispatch, each with its JobSpec as metadata;
4. wait for the agents to join (at most START_LEAD_S - CONNECT_AHEAD_S); if none does, stop with a
   problem that says why; else set the run's start instant t0 CONNECT_AHEAD_S from now and announce
   it in the room's metadata as wall time (kit/live/common.py, "The clock");
5. each publisher joins CONNECT_AHEAD_S before its scenario join time, publishes one microphone
   track and feeds it in real time, paced like console mode (ConsoleRoom.frames: absolute deadlines
   from t0), then leaves at the end of its track or its leave time;
6. wait for the agents to leave (a job ends once everyone it serves has left and its last finals
   are out), at most END_GRACE_S after the room's end;
7. delete the dispatches and the room, whatever happened.

The listener logs each final transcription as a `final` event of the runner's log, stamped when it
arrives (latency includes the server), with the VAD span and STT cost from its `kit.*` attributes:
the run directory has the console schema and kit.results.metrics.compute reads it unchanged. When the
worker runs on this machine its jobs write their own events into the same run directory, and their
processes are sampled for CPU and memory (only the job processes: the worker's main process and
forkserver, counted in console mode, are not); from another machine, cost columns are empty (NaN).
Cold start, live: from creating the dispatch to the agent joining the room, as the server reports it
(ListParticipants joined_at_ms: the server's wall clock, the driver's when both run on one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from livekit import api, rtc

from kit import architectures
from kit.config import KitError, RunConfig, SttSpec, check_cpus, pin_threads, process_cores, thread_cores, threads_pinned
from kit.live import api as room_api
from kit.live.agents import AgentWorker, ExternalAgent, agent_env, agent_pids, kill_busiest, local_agent, your_agent
from kit.live.common import (
    TRANSCRIPTION_TOPIC,
    Credentials,
    agent_name,
    hosting_node,
    mono_at,
    redact,
    redact_log_handlers,
    room_name,
    sanitize_suffix,
    server_api,
    wall_at,
)  # fmt: skip
from kit.live.publishers import CONNECT_AHEAD_S, Listener, connect_publisher, publish
from kit.live.server import private_server
from kit.room import scenario
from kit.room.console import ConsoleRoom
from kit.run.events import EventLog
from kit.run.jobs import JobSpec
from kit.run.record import ArchRun, RunRecord
from kit.run.sampler import ResourceSampler
from kit.run.skeleton import END_GRACE_S, RunFrame, job_errors, new_run_dir, quiet_livekit, raise_interrupt, unfinished_jobs
from kit.stt import resolve_model
from kit.stt.request_log import refusals, run_service_log, stt_clients

START_LEAD_S = 8.0  # dispatch -> t0 at most: assignment, job process, model load, joining the room (0.3 s here,
# idle processes warm; several seconds for a worker that must start a process and load the model first).
# t0 comes CONNECT_AHEAD_S after the last agent joined, so a warm worker's room starts within ~3 s.
EXTERNAL_JOIN_S = 30.0  # --agent: dispatch -> the last of its agents in the room, once the first is
REDISPATCH_EVERY_S = 3.0  # --agent: a dispatch with no job this long after the last look is made again
AGENT_QUIET_S = 6.0  # --agent: the room is over for your agent once no final has come for this long
AGENT_NAME_ENV = "KIT_AGENT_NAME"  # an --agent's agent name (explicit dispatch), when it is given one


def run(
    config: RunConfig, room: str | None = None, progress_factory: Callable[[str, float], Callable[[float], None]] | None = None,
    local_agents: bool = False, local_server: bool = False, dispatch: str = "api", server_bin: str | None = None,
    console_run: Path | None = None, agent: ExternalAgent | None = None, nodes: int = 1, kill_worker_s: float | None = None,
    redispatch: bool = False,
) -> Path:  # fmt: skip
    """Run every architecture of the config live, one after the other; return the run directory.
    `local_agents`: start each architecture's agent worker on this machine for its turn.
    `local_server`: start a private livekit-server (kit/live/server.py) for this run, stopped afterwards.
    `dispatch`: "api" (AgentDispatchService.CreateDispatch) or "token" (a RoomConfiguration with
    RoomAgentDispatch in the first publisher's token: the room and its dispatches are made as it joins).
    `console_run`: the console run of the same room this one is compared with (compare --mode both).
    `nodes` > 1 (with `local_server`): a local cluster; the room's side joins through its first node,
    the agent workers register through its last. `kill_worker_s` (with `local_agents`): SIGKILL the
    agent worker running most of the design's jobs, and them, that many seconds into each room.
    `redispatch`: a watchdog dispatches a job again when its agent leaves the room before it ends.
    `agent`: your own agent worker, run (here) and measured after the kit's designs, if any; its STT
    is the run's shared service (--stt service, unless --stt service:URL names another)."""
    if dispatch not in DISPATCH_PATHS:
        raise KitError(f"--dispatch must be one of {', '.join(DISPATCH_PATHS)}, got {dispatch!r}")
    if not local_server:
        Credentials.from_env()  # fail fast, before anything is written
        if config.net or nodes > 1:
            raise KitError("--net and --nodes need --local-server: they shape the kit's own server")
    if kill_worker_s is not None and not (local_agents and config.archs):
        raise KitError("--kill-worker kills one of the kit's agent workers: it needs --local-agents and a design")
    for name in config.archs:
        architectures.get(name)
    names = {name: agent_name(name) for name in config.archs}
    sc = scenario.load(config.scenario)
    if agent is not None and not config.stt.uses_service:
        config = replace(config, stt=SttSpec("service", url=""))  # an agent of yours reaches STT only through the service
    model = resolve_model(config.model) if config.stt.run_loads_model else None
    if config.stt.needs_service_start and config.archs and not local_agents:
        raise KitError("--stt service live needs --local-agents (the kit starts the service and its agents here); "
                       "for agents running elsewhere start `python -m kit stt-service` and use --stt service:URL")  # fmt: skip
    run_dir = new_run_dir(config.results_dir)
    quiet_livekit(run_dir)
    workers: dict[str, list[subprocess.Popen]] = {}
    frame: RunFrame | None = None  # --stt service: the run's STT service is part of every design's cost
    sampler = ResourceSampler(run_dir / "resources.jsonl", roots=lambda arch: agent_pids(run_dir / "events", workers, arch)
                              + ([frame.service.pid] if frame and frame.service else []))  # fmt: skip
    with contextlib.ExitStack() as stack:
        for signum in (signal.SIGINT, signal.SIGTERM):  # raised where the main thread is, whatever it awaits
            stack.callback(signal.signal, signum, signal.signal(signum, raise_interrupt))
        srv = stack.enter_context(private_server(run_dir, server_bin, config.net, nodes)) if local_server else None
        creds = replace(Credentials.from_env(), url=srv.url) if srv else Credentials.from_env()
        redact_log_handlers(creds.api_secret)
        n_rooms = len(config.archs) + (agent is not None)
        rooms = {name: room_name(room, names[name], run_dir.name, n_rooms) for name in config.archs}
        if agent is not None:
            rooms[agent.label] = room_name(room, f"kit-{sanitize_suffix(agent.label)}", run_dir.name, n_rooms)
            names[agent.label] = agent.name or "(automatic dispatch)"
        live = {"server": creds.http_url, "server_version": srv.version if srv else None, "local_server": bool(srv),
                "nodes": len(srv.nodes) if srv else None, "dispatch": dispatch, "kill_worker_s": kill_worker_s, "redispatch": redispatch, "agents": names, "rooms": rooms,
                "console_run": str(console_run) if console_run else None}  # fmt: skip
        record = RunRecord.new(run_dir, config, sc, model, mode="live", live=live)
        record.cores = check_cpus(config.cpus) if config.cpus and local_agents else None  # the agents' cores
        # the room's side (this process's publishers and listener, the run's own server) on the other cores,
        # so the agent's cores measure the agent (none left with --cpus = every core: shared, as without it)
        room_side = sorted(os.sched_getaffinity(0) - set(record.cores)) if record.cores else []
        if srv and room_side:
            for pid in srv.pids:
                pin_threads(pid, room_side)
        record.save(run_dir)
        frame = stack.enter_context(RunFrame(run_dir, record, sampler, config))
        config = frame.jobs_config  # the agents get "service:<its URL>"
        try:
            for name in config.archs:
                progress = progress_factory(name, sc.duration_s) if progress_factory else None
                with local_agent(name, config, workers) if local_agents else contextlib.nullcontext() as fleet:
                    pids = [w.proc.pid for w in fleet] if fleet else []
                    victim = (kill_worker_s, pids) if kill_worker_s is not None and pids else None
                    worker_cores = process_cores(pids) if pids else None
                    run = RoomRun(name, config, sc, run_dir, creds, rooms[name], dispatch, srv, kill=victim, watchdog=redispatch)
                    with threads_pinned(room_side):  # after the worker started: it must not inherit them
                        result = asyncio.run(run.run(sampler, progress))
                        if room_side:
                            result.room_cores = sorted(set(thread_cores(os.getpid()) + [c for p in (srv.pids if srv else []) for c in thread_cores(p)]))
                    if fleet:
                        result.worker_pids, result.worker_cores = pids, worker_cores
                frame.add(name, result)
            if agent is not None:
                name = agent.label
                progress = progress_factory(name, sc.duration_s) if progress_factory else None
                frame.add(name, run_external(agent, config, sc, run_dir, creds, rooms[name], srv, sampler, workers, progress))
            if srv:  # which node each room lived on; the publishers joined through node 0, the agents through the last
                record.live["room_nodes"] = {arch: hosting_node(srv, room) for arch, room in rooms.items()}
        except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM: the running design cleaned up its room; keep what was measured
            signum = getattr(e, "signum", signal.SIGINT)
            frame.add(name, record.archs.get(name) or ArchRun(arch=name, problems=[f"interrupted by {signal.Signals(signum).name}"],
                                                             interrupted=signum))  # fmt: skip
            frame.interrupted = signum  # leaving the frame raises Interrupted, as in console (exit 128 + the signal)
    return run_dir


DISPATCH_PATHS = ("api", "token")


def run_external(agent: ExternalAgent, config: RunConfig, sc: scenario.Scenario, run_dir: Path, creds: Credentials,
                 room: str, srv, sampler: ResourceSampler, workers: dict[str, list[subprocess.Popen]],
                 progress: Callable[[float], None] | None) -> ArchRun:  # fmt: skip
    """Your agent's turn: start it (its environment: the server's credentials, the STT service's URL,
    its agent name), wait for it to register, replay the room to it, stop it. A worker that never
    registers, exits or publishes nothing is a problem of its row, not the end of the run."""
    env = agent_env(dict(os.environ), config.stt.url, replace(creds, url=srv.agent_url) if srv else creds)
    if agent.name:
        env[AGENT_NAME_ENV] = agent.name
    try:
        with your_agent(agent, config, env, run_dir, creds.api_secret) as fleet:
            workers[agent.label] = [w.proc for w in fleet]
            # a production worker that says it is full gets no job, and a dispatch is not retried: wait
            deadline = time.monotonic() + EXTERNAL_JOIN_S
            while any(w.full for w in fleet) and time.monotonic() < deadline and not any(w.exited() for w in fleet):
                time.sleep(0.2)
            pids = [w.proc.pid for w in fleet]
            cores = process_cores(pids)  # the shells', as their children's
            try:
                result = asyncio.run(RoomRun(agent.label, config, sc, run_dir, creds, room, server=srv, external=agent,
                                             fleet=fleet).run(sampler, progress))  # fmt: skip
            finally:
                workers.pop(agent.label, None)
            result.worker_pids, result.worker_cores = pids, cores
            return result
    except KitError as e:  # never registered: nothing was measured, the row says why
        return ArchRun(arch=agent.label, jobs=len(agent.metadata(sc.identities)), room=room, agent_name=agent.name,
                       command=agent.command, problems=[redact(str(e), creds.api_secret)])  # fmt: skip


def job_specs(name: str, config: RunConfig, sc: scenario.Scenario, run_dir: Path, t_submit: float) -> list[JobSpec]:
    """The dispatch metadata of one architecture's jobs (a job serves its participant, or all)."""
    return [
        JobSpec(name, req.job, req.participant, "live", str(sc.path), str(run_dir), config.to_dict(), t_submit,
                identities=[req.participant] if req.participant else sc.identities)  # fmt: skip
        for req in architectures.get(name).plan(sc)
    ]


class RoomRun:
    """One architecture in a real room: steps 1-7 of the module docstring."""

    def __init__(self, name: str, config: RunConfig, sc: scenario.Scenario, run_dir: Path, creds: Credentials, room: str,
                 dispatch: str = "api", server=None, external: ExternalAgent | None = None,
                 fleet: list[AgentWorker] = (), kill: tuple[float, list[int]] | None = None, watchdog: bool = False) -> None:  # fmt: skip
        self.name, self.config, self.sc, self.run_dir, self.creds, self.room = name, config, sc, run_dir, creds, room
        self.kill = kill  # --kill-worker: (seconds into the room, the fleet's worker pids: the busiest is killed)
        self.watchdog, self.replaced = watchdog, set()  # --redispatch; the agents whose jobs it dispatched again
        self.dispatch, self.server = dispatch, server  # server: the run's private LocalServer, if any
        self.external, self.fleet = external, fleet  # your agent (--agent), and its worker processes when they run here
        self.t_submit = time.time()
        self.t0 = mono_at(self.t_submit + START_LEAD_S)  # at the latest; set once the agents are in (wait_for_agents)
        if external is None:
            self.agent: str | None = agent_name(name)
            self.specs = job_specs(name, config, sc, run_dir, self.t_submit)
            self.metadata = [spec.to_json() for spec in self.specs]
        else:  # your agent knows nothing of the kit: no JobSpec, no t0; its finals are stamped on arrival
            self.agent, self.specs = external.name, []
            self.metadata = external.metadata(sc.identities)
            self.dispatch = "none" if external.dispatch == "auto" else "api"
        self.result = ArchRun(arch=name, jobs=len(self.metadata), room=room, agent_name=self.agent,
                              command=external.command if external else None)  # fmt: skip
        self.events = EventLog(run_dir / "events" / f"{name}-runner.jsonl", t0=self.t0, arch=name, job="runner", wall_clock=True)
        self.listener: Listener  # made in run(): an rtc.Room belongs to the loop it is made in
        self.dispatches: list[str] = []
        self.agents_seen: dict[str, float] = {}  # agent identity -> when it joined (server's wall clock), ever
        self.agents_now: set[str] = set()  # the agents in the room at the server's last listing
        self.first: rtc.Room | None = None  # token dispatch: the first publisher's connection

    async def run(self, sampler: ResourceSampler, progress: Callable[[float], None] | None = None) -> ArchRun:
        result, creds = self.result, self.creds
        self.listener = Listener(self.events, self.sc.identities)
        sampler.arch = self.name
        watch = None
        try:
            if self.dispatch == "token":  # the first publisher's join creates the room and its dispatches
                self.first = await connect_publisher(creds, self.room, self.sc.identities[0], self.token_dispatches())
            else:
                # a cluster: the room on the publishers' node, so the agents (through the last node) cross nodes
                await room_api.create_room(creds, self.room, self.server.nodes[0].node_id if self.server and len(self.server.nodes) > 1 else None)
            await self.listener.connect(creds, self.room)
            if self.dispatch == "api":
                self.dispatches = await room_api.create_dispatches(creds, self.room, self.agent, self.metadata)
            watch = asyncio.create_task(self.watch_server())
            await self.wait_for_agents()
            joined = len(self.agents_seen)
            result.cold_start_s = {who: at - self.t_submit for who, at in self.agents_seen.items()}
            if joined == 0:
                result.problems.append(self.nobody_joined())
            else:
                if joined < len(self.metadata):
                    by = EXTERNAL_JOIN_S if self.external else START_LEAD_S - CONNECT_AHEAD_S
                    result.problems.append(f"only {joined} of {len(self.metadata)} agents had joined {by:.0f} s after dispatch")
                sampler.mark()  # the job processes exist now: the CPU window starts on a sample of each
                # and one PSS sample inside the window, however short the room (PSS is read only every 30 s)
                asyncio.get_running_loop().call_later(max(0.0, self.t0 + 1.0 - time.monotonic()), sampler.mark)
                await self.replay(progress)
        except Exception as e:  # one line, secrets out: the run directory records it, the run is incomplete
            result.problems.append(redact(f"{type(e).__name__}: {e}", creds.api_secret))
        finally:
            if progress:
                progress(float("inf"))
            if watch:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            result.agent_participants = len(self.agents_seen)
            if result.worker_killed_s is not None:  # agents that joined after the kill: the server dispatched again
                result.rejoined_after_s = sorted(at - self.kill_wall for at in self.agents_seen.values() if at > self.kill_wall)
            if self.server_alive():
                result.server_jobs = await room_api.count_jobs(creds, self.room)
                result.problems += await room_api.close_room(creds, self.room, self.dispatches, find=self.dispatch == "token")
            await self.listener.close()
            if self.first is not None:
                await self.first.disconnect()
            for p in result.problems:
                self.events.emit("error", detail=p)
            self.events.emit("run_end")
            self.events.close()
        if self.external is not None and self.agents_seen and not self.listener.finals:
            result.problems.append(self.published_nothing())
        result.problems += job_errors(self.run_dir, self.name)
        result.problems += unfinished_jobs(self.run_dir, self.name, self.specs, started_only=True)
        since, until, log = mono_at(self.t_submit), time.monotonic(), run_service_log(self.run_dir)
        result.problems += refusals(log, since, until)
        result.stt_api, result.stt_model = stt_clients(log, since, until)
        result.complete = not result.problems
        return result

    async def wait_for_agents(self) -> None:
        """Until every agent has joined (at most START_LEAD_S - CONNECT_AHEAD_S after dispatch); then t0 is
        CONNECT_AHEAD_S away, announced to the kit's jobs, and the publishers connect (a late one never
        catches up: its source plays in real time, so its whole track lags). Your agent (--agent) is never
        told t0: the room waits up to EXTERNAL_JOIN_S after dispatch for all of its agents (a worker that
        starts a process per job on a busy machine, or one that was full, whose jobless dispatches are
        made again); its cold start still counts from the first dispatch."""
        async def until(deadline: float) -> None:
            while len(self.agents_seen) < len(self.metadata) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                self.check_server()

        dispatched = mono_at(self.t_submit)
        await until(dispatched + START_LEAD_S - CONNECT_AHEAD_S)
        if self.external is not None:
            deadline = dispatched + EXTERNAL_JOIN_S
            while len(self.agents_seen) < len(self.metadata) and time.monotonic() < deadline:
                if self.dispatches:  # a dispatch the worker could not take (it was full) is never offered again
                    self.dispatches = await room_api.redispatch_jobless(self.creds, self.room, self.agent, self.dispatches, self.metadata)
                await until(min(deadline, time.monotonic() + REDISPATCH_EVERY_S))
        self.t0 = self.events.t0 = time.monotonic() + CONNECT_AHEAD_S
        if self.external is None and self.agents_seen:
            await room_api.announce_t0(self.creds, self.room, wall_at(self.t0))

    def token_dispatches(self) -> api.RoomConfiguration:
        """The room configuration a token carries for token dispatch: one RoomAgentDispatch per job."""
        return api.RoomConfiguration(empty_timeout=room_api.EMPTY_TIMEOUT_S,
                                     agents=[api.RoomAgentDispatch(agent_name=self.agent, metadata=m) for m in self.metadata])  # fmt: skip

    def nobody_joined(self) -> str:
        waited = f"within {EXTERNAL_JOIN_S if self.external else START_LEAD_S - CONNECT_AHEAD_S:.0f} s"
        if self.external is None:
            return (f"no agent {self.agent!r} joined {waited}: is `python -m kit agent --arch {self.name}` running against "
                    f"this server, with the same LIVEKIT_AGENT_SUFFIX?")  # fmt: skip
        last = f"Its last output: {' / '.join(w.last_output() for w in self.fleet) or '?'}"
        if self.fleet and all(w.full for w in self.fleet):
            last = (f"Its worker says it is at full capacity, so the server gave it no job: a production worker's "
                    f"load is this machine's CPU, refused from 0.7 (load_threshold); run it on a quieter machine. {last}")  # fmt: skip
        if self.external.dispatch == "auto":
            return f"no agent joined {waited} (automatic dispatch): does the worker register without an agent name? {last}"
        return (f"no agent joined {waited} after dispatching to {self.agent!r}: does the worker register with that agent "
                f"name (agentName / agent_name; {AGENT_NAME_ENV} holds it)? {last}")  # fmt: skip

    def published_nothing(self) -> str:
        seen = self.listener.streams
        return (f"the agent published no final transcription: {len(self.agents_seen)} agent participant(s) joined, "
                f"{seen} {TRANSCRIPTION_TOPIC} text stream(s) arrived, none with lk.transcription_final=true and text "
                f"(does it publish transcriptions to the room, e.g. AgentSession's default transcription output?)")  # fmt: skip

    async def replay(self, progress) -> None:
        """Steps 5-6: the publishers replay the scenario from t0; then the agents finish and leave."""
        self.result.t0_mono = self.t0
        self.events.emit("run_start", t=0.0, detail=f"{self.result.jobs} jobs, room {self.room}, dispatch by {self.dispatch}")
        replay = ConsoleRoom(self.sc, self.t0)
        publishers = [asyncio.create_task(publish(self.creds, self.room, replay, i, self.listener.track_owner, self.events,
                                                  conn=self.first if self.first and i == self.sc.identities[0] else None))
                      for i in replay.identities]  # fmt: skip
        work = asyncio.gather(*publishers, return_exceptions=True)
        while not work.done():
            if progress:
                progress(time.monotonic() - replay.t0)
            if self.kill and self.result.worker_killed_s is None and time.monotonic() - replay.t0 >= self.kill[0]:
                self.kill_worker(self.kill[1])
            await asyncio.wait([work], timeout=0.2)
            self.check_server()
            if self.watchdog:
                await self.redispatch_lost()
        self.result.problems += [redact(f"publisher {i}: {type(r).__name__}: {r}", self.creds.api_secret) if isinstance(r, BaseException) else r
                                 for i, r in zip(replay.identities, work.result()) if r is not None]  # fmt: skip
        until = self.t0 + self.sc.duration_s + END_GRACE_S
        if self.external is not None:  # your agent's jobs stay until the room goes: wait for its last finals
            await self.settle(until)
            return
        while self.agents_now and time.monotonic() < until:
            await asyncio.sleep(0.1)
            self.check_server()
        if self.agents_now:
            self.result.problems.append(f"agent(s) still in the room {END_GRACE_S:.0f} s after it ended")

    def kill_worker(self, pids: list[int]) -> None:
        """--kill-worker: SIGKILL the worker running most of this design's jobs, and its job processes,
        at once, as a machine that dies."""
        self.result.killed_worker, pid, under = kill_busiest(pids, self.run_dir / "events", self.name)
        self.result.worker_killed_s, self.kill_wall = self.events.now(), time.time()
        self.events.emit("worker_killed", detail=f"agent worker {pid} and {under} process(es) under it: SIGKILL")

    async def redispatch_lost(self) -> None:
        """--redispatch: an agent gone while someone its job serves is still in the room (a job ends by
        itself once they have all left) was lost with its worker or process: dispatch its job again."""
        if gone := set(self.agents_seen) - self.agents_now - self.replaced:
            self.replaced |= gone
            now, leave = self.events.now(), {p.identity: p.leave_s for p in self.sc.participants}
            needed = [m for m in self.metadata if any(leave[i] is None or leave[i] > now for i in JobSpec.from_json(m).identities)]
            if again := await room_api.redispatch_departed(self.creds, self.room, self.agent, gone, set(needed)):
                self.dispatches += again
                self.events.emit("redispatched", detail=f"{len(again)} job(s) whose agent left the room before it ended")

    async def settle(self, until: float) -> None:
        """After the room: until no final has arrived for AGENT_QUIET_S, or END_GRACE_S have passed."""
        seen, quiet_since = self.listener.finals, time.monotonic()
        while time.monotonic() < until and time.monotonic() - quiet_since < AGENT_QUIET_S:
            await asyncio.sleep(0.1)
            self.check_server()
            if self.listener.finals != seen:
                seen, quiet_since = self.listener.finals, time.monotonic()

    def server_alive(self) -> bool:
        """False only when the run's own server is known dead (a server elsewhere is always tried)."""
        return self.server is None or self.server.running

    def check_server(self) -> None:
        """A server that died (or a lost connection) ends the run at once, with what it measured."""
        if self.server is not None and not self.server.running:
            raise ServerLost(f"the LiveKit server stopped during the run ({self.server.stopped()})")
        if self.listener.lost.is_set():
            raise ServerLost(f"lost the connection to the LiveKit server at {self.creds.url}")
        if gone := next(filter(None, (w.exited() for w in self.fleet)), None):
            raise AgentLost(gone)

    async def watch_server(self) -> None:
        """The agent participants in the room as the server lists them (ListParticipants), twice a
        second: who is there, and when each joined. The listener would hear of an agent, which
        publishes no track, only at the server's next batched update, up to 3 s late."""
        while True:
            with contextlib.suppress(Exception):
                async with server_api(self.creds, timeout_s=3, room_admin=True, room=self.room) as lk:
                    res = await lk.room.list_participants(api.ListParticipantsRequest(room=self.room))
                agents = [p for p in res.participants if p.kind == api.ParticipantInfo.Kind.AGENT]
                self.agents_now = {p.identity for p in agents}
                for p in agents:
                    self.agents_seen.setdefault(p.identity, p.joined_at_ms / 1000 if p.joined_at_ms else float(p.joined_at))
            await asyncio.sleep(0.5)


class ServerLost(Exception):
    """The LiveKit server went away in the middle of a run."""


class AgentLost(Exception):
    """Your agent worker (--agent) exited in the middle of a run."""
