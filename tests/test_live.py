"""Live mode's parts, below what the real-server tests (tests/test_live_server.py) can see.

Exercised: the requests and the tokens the driver and the doctor send (a loopback stub of the
server's HTTP API, Twirp over protobuf, records them), the agent worker's registration (its name,
job type and permissions), the driver's clean-up when no agent joins, and each architecture's
entrypoint in a simulated live job: a real livekit-agents JobContext (and, for the session designs,
a real AgentSession with its RoomIO) over a stand-in for rtc.Room whose audio is the console replay.
What the real server covers (a run end to end with local agents, no secret written, rooms deleted)
is not repeated here.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import nbformat
import pytest
from aiohttp import WSMsgType, web
from conftest import edit_json
from livekit import api, rtc
from livekit.agents import JobContext, JobExecutorType, JobProcess
from livekit.agents.job import JobAcceptArguments, RunningJobInfo, _JobContextVar
from livekit.protocol import agent, models
from livekit.rtc.event_emitter import EventEmitter
from nbclient import NotebookClient
from synthetic import SHORT_ROOM

from kit.architectures import NAMES
from kit.cli import main
from kit.config import REPO_ROOT, KitError, RunConfig
from kit.live import api as live_api
from kit.live import common as live
from kit.live import driver as live_driver
from kit.live import publishers
from kit.live import worker as kit_agent
from kit.results import metrics
from kit.room import scenario
from kit.room.console import ConsoleRoom
from kit.run.events import EventLog, read_events
from kit.run.jobs import JobSpec
from kit.run.record import ArchRun, RunRecord
from kit.run.runner import stop_helper_processes

KEY = "kit-test-key"
SECRET = "kit-FAKE-SECRET-c0ffee-0123456789abcdef"  # recognisable: searched for in everything a run writes


# --- a loopback stub of the server: Twirp API, health check, agent registration -------------------------


@dataclass
class Call:
    service: str
    method: str
    request: object
    claims: api.access_token.Claims
    ttl_s: float


TWIRP = {
    ("RoomService", "CreateRoom"): (api.CreateRoomRequest, lambda r: api.Room(name=r.name, sid="RM_stub")),
    ("RoomService", "DeleteRoom"): (api.DeleteRoomRequest, lambda r: api.DeleteRoomResponse()),
    ("RoomService", "ListRooms"): (api.ListRoomsRequest, lambda r: api.ListRoomsResponse(rooms=[api.Room(name="other")])),
    ("AgentDispatchService", "CreateDispatch"): (
        api.CreateAgentDispatchRequest,
        lambda r: api.AgentDispatch(id=f"AD_{r.metadata[-8:]}", agent_name=r.agent_name, room=r.room, metadata=r.metadata),
    ),
    ("AgentDispatchService", "DeleteDispatch"): (api.DeleteAgentDispatchRequest, lambda r: api.AgentDispatch(id=r.dispatch_id)),
    ("RoomService", "UpdateRoomMetadata"): (api.UpdateRoomMetadataRequest, lambda r: api.Room(name=r.room, metadata=r.metadata)),
}


class ServerStub:
    """What a LiveKit server answers on its HTTP port, for the calls the kit makes; it records each
    call with the verified claims of its bearer token and answers 401 to a token it cannot verify."""

    def __init__(self, secret: str = SECRET) -> None:
        self.verifier = api.TokenVerifier(KEY, secret)
        self.calls: list[Call] = []
        self.registrations: list[tuple[agent.RegisterWorkerRequest, api.access_token.Claims]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ServerStub:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/", self._health)
        app.router.add_post("/twirp/livekit.{service}/{method}", self._twirp)
        app.router.add_get("/agent", self._agent_ws)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    def _claims(self, request: web.Request) -> tuple[api.access_token.Claims, float] | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            claims = self.verifier.verify(token)
        except Exception:
            return None
        body = jwt.decode(token, options={"verify_signature": False})  # exp/nbf are not on Claims
        return claims, float(body["exp"] - body["nbf"])

    async def _twirp(self, request: web.Request) -> web.Response:
        service, method = request.match_info["service"], request.match_info["method"]
        if (service, method) not in TWIRP:
            return web.json_response({"code": "bad_route", "msg": "no such method"}, status=404)
        verified = self._claims(request)
        if verified is None:
            return web.json_response({"code": "unauthenticated", "msg": "invalid token"}, status=401)
        assert request.content_type == "application/protobuf"
        req_class, answer = TWIRP[(service, method)]
        req = req_class.FromString(await request.read())
        self.calls.append(Call(service, method, req, *verified))
        return web.Response(body=answer(req).SerializeToString(), content_type="application/protobuf")

    async def _agent_ws(self, request: web.Request) -> web.StreamResponse:
        verified = self._claims(request)
        if verified is None:
            return web.Response(status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg = await ws.receive()
        if msg.type == WSMsgType.BINARY:
            self.registrations.append((agent.WorkerMessage.FromString(msg.data).register, verified[0]))
            await ws.send_bytes(agent.ServerMessage(register=agent.RegisterWorkerResponse(worker_id="AW_stub")).SerializeToString())
        async for _ in ws:  # keep the worker connected until it leaves
            pass
        return ws


@pytest.fixture
def stub(monkeypatch):
    with ServerStub() as s:
        monkeypatch.setenv("LIVEKIT_URL", s.url)
        monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
        monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
        monkeypatch.setenv("LIVEKIT_AGENT_SUFFIX", "CI Runner")
        yield s


@pytest.fixture
def short_room(pair2_copy) -> Path:
    """pair-2 cut to its first two utterances: everyone leaves at 9.5 s (before alice speaks again)."""

    def cut(doc):
        doc["utterances"] = doc["utterances"][:2]
        for p in doc["participants"]:
            p["leave_s"] = LEAVE_S

    edit_json(pair2_copy, cut)
    return pair2_copy


LEAVE_S = 9.5


def creds() -> live.Credentials:
    return live.Credentials.from_env()


# --- names, tokens, credentials ------------------------------------------------------------------------


def test_agent_suffix_is_sanitised_to_lowercase_letters_digits_and_dashes(monkeypatch):
    assert live.sanitize_suffix("Jack") == "jack"
    assert live.sanitize_suffix("  Jill O'Neil (laptop) ") == "jill-o-neil-laptop"
    assert live.sanitize_suffix("dev_team.42") == "dev-team-42"
    assert live.sanitize_suffix("x" * 50) == "x" * 32
    assert live.agent_name("multi_session", "jack") == "kit-multi-session-jack"
    monkeypatch.delenv("LIVEKIT_AGENT_SUFFIX", raising=False)
    monkeypatch.setattr(live.getpass, "getuser", lambda: "Root User")
    assert live.agent_name("multi_dispatch") == "kit-multi-dispatch-root-user"
    monkeypatch.setenv("LIVEKIT_AGENT_SUFFIX", "__--__")
    with pytest.raises(KitError, match="no letters or digits"):
        live.agent_suffix()


def test_publisher_and_listener_tokens_carry_least_grants_and_expire_in_10_minutes():
    c = live.Credentials("ws://x", KEY, SECRET)
    verifier = api.TokenVerifier(KEY, SECRET)
    pub = verifier.verify(live.publisher_token(c, "room-1", "alice"))
    assert pub.identity == "alice"
    v = pub.video
    assert (v.room_join, v.room, v.can_publish, v.can_subscribe, v.can_publish_data) == (True, "room-1", True, False, False)
    assert v.can_publish_sources == ["microphone"] and not (v.room_admin or v.room_create or v.room_list or v.agent)
    lis = verifier.verify(live.listener_token(c, "room-1")).video
    assert (lis.room_join, lis.room, lis.can_publish, lis.can_subscribe, lis.can_publish_data) == (True, "room-1", False, True, False)
    assert not (lis.room_admin or lis.room_create)
    for token in (live.publisher_token(c, "room-1", "alice"), live.listener_token(c, "room-1")):
        body = jwt.decode(token, options={"verify_signature": False})
        assert body["exp"] - body["nbf"] <= 600
    with pytest.raises(Exception):
        api.TokenVerifier(KEY, "another-secret-also-long-enough-for-hs256").verify(live.listener_token(c, "room-1"))
    assert SECRET not in repr(c)


def test_credentials_come_from_the_environment_with_clear_problems():
    assert live.credential_problems({}) == [
        "LIVEKIT_URL is not set (e.g. ws://localhost:7880)",
        "LIVEKIT_API_KEY is not set (devkey for livekit-server --dev)",
        "LIVEKIT_API_SECRET is not set (secret for livekit-server --dev)",
    ]
    ok = {"LIVEKIT_URL": "wss://p.livekit.cloud", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}
    assert live.credential_problems(ok) == []
    assert "must start with ws://" in live.credential_problems({**ok, "LIVEKIT_URL": "localhost:7880"})[0]
    assert live.Credentials.from_env({**ok, "LIVEKIT_URL": "ws://localhost:7880"}).http_url == "http://localhost:7880"
    assert live.Credentials.from_env(ok).http_url == "https://p.livekit.cloud"
    token = live.listener_token(live.Credentials("ws://x", KEY, SECRET), "r")
    assert live.redact(f"url?access_token={token} {SECRET}", SECRET) == "url?access_token=[redacted-token] [redacted]"
    record = logging.LogRecord("livekit", logging.WARNING, "", 0, "join ws://h/rtc?access_token=%s with %s", (token, SECRET), None)
    line = live.RedactingFormatter("%(message)s", SECRET).format(record)
    assert token not in line and SECRET not in line


# --- the server API: room and dispatches, against the stub ---------------------------------------------


def test_driver_creates_room_and_one_dispatch_per_participant_with_least_privilege_tokens(stub):
    sc = scenario.load("pair-2")
    config = RunConfig(scenario="pair-2", stt="delay:0.1", archs=("multi_dispatch",))
    t_submit = time.time()
    specs = live_driver.job_specs("multi_dispatch", config, sc, Path("/tmp/run-x"), t_submit)

    async def control_plane():
        await live_api.create_room(creds(), "room-7")
        ids = await live_api.create_dispatches(creds(), "room-7", "kit-multi-dispatch-ci-runner", [s.to_json() for s in specs])
        await live_api.announce_t0(creds(), "room-7", t_submit + 3)
        problems = await live_api.close_room(creds(), "room-7", ids)
        return ids, problems

    ids, problems = asyncio.run(control_plane())
    assert problems == [] and len(ids) == 2
    methods = [c.method for c in stub.calls if not c.method.startswith("List")]  # the driver also polls ListParticipants
    assert methods == ["CreateRoom", "CreateDispatch", "CreateDispatch", "UpdateRoomMetadata", "DeleteDispatch", "DeleteDispatch",
                       "DeleteRoom"]  # fmt: skip
    (create,) = stub.of("CreateRoom")
    assert create.request.name == "room-7" and create.request.empty_timeout == live_api.EMPTY_TIMEOUT_S
    assert create.claims.video.room_create and not create.claims.video.room_admin
    for call, who in zip(stub.of("CreateDispatch"), ["alice", "bob"]):
        assert (call.request.agent_name, call.request.room) == ("kit-multi-dispatch-ci-runner", "room-7")
        spec = JobSpec.from_json(call.request.metadata)
        assert (spec.mode, spec.arch, spec.participant, spec.identities) == ("live", "multi_dispatch", who, [who])
        assert spec.t_submit == t_submit and spec.config["stt"] == "delay:0.1"
        assert call.claims.video.room_admin and call.claims.video.room == "room-7" and not call.claims.video.room_create
    (announce,) = stub.of("UpdateRoomMetadata")  # t0, as wall time, for the jobs ("The clock")
    assert announce.request.room == "room-7" and json.loads(announce.request.metadata) == {live.T0_METADATA_KEY: t_submit + 3}
    assert announce.claims.video.room_admin and announce.claims.video.room == "room-7"
    assert [c.request.dispatch_id for c in stub.of("DeleteDispatch")] == ids
    assert all(c.ttl_s <= 600 and c.claims.identity == "" for c in stub.calls)
    assert all(not (c.claims.video.can_publish or c.claims.video.can_subscribe) for c in stub.calls)


def test_single_job_designs_get_one_dispatch_serving_everyone():
    sc = scenario.load("pair-2")
    for arch in ("multi_session", "participant_entrypoint"):
        (spec,) = live_driver.job_specs(arch, RunConfig(scenario="pair-2"), sc, Path("/r"), 1.0)
        assert spec.participant is None and spec.identities == ["alice", "bob"]


def test_agent_worker_registers_its_crosstalk_safe_name_for_explicit_dispatch(stub):
    config = RunConfig(scenario="pair-2", stt="delay:0.1", archs=("multi_session",))
    server = kit_agent.make_agent_server("multi_session", config, creds())

    async def register():
        registered = asyncio.Event()
        server.on("worker_registered", lambda *_: registered.set())
        running = asyncio.create_task(server.run(devmode=False))  # production defaults
        try:
            await asyncio.wait_for(registered.wait(), 30)
        finally:
            await server.aclose()
            await asyncio.gather(running, return_exceptions=True)

    try:
        asyncio.run(register())
    finally:
        stop_helper_processes()  # the forkserver outlives the server (it would end with a worker's process)
    ((req, claims),) = stub.registrations
    assert req.agent_name == "kit-multi-session-ci-runner" and req.type == agent.JT_ROOM
    assert claims.video.agent and not claims.video.room_join
    perms = req.allowed_permissions
    assert (perms.can_publish, perms.can_subscribe, perms.can_publish_data) == (False, True, True)
    assert server._job_executor_type == JobExecutorType.PROCESS


# --- doctor -------------------------------------------------------------------------------------------------


def _doctor(capsys) -> tuple[int, str, str]:
    code = main(["doctor"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_doctor_all_good_against_the_stub(stub, capsys):
    code, out, err = _doctor(capsys)
    assert code == 0 and err == ""
    assert "reachable and accepts the credentials (1 rooms open)" in out and "kit-<arch>-ci-runner" in out
    (call,) = stub.calls
    assert call.method == "ListRooms" and call.claims.video.room_list and not call.claims.video.room_create


def test_doctor_reports_each_missing_variable_and_a_bad_scheme(monkeypatch, capsys):
    for var in live.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    code, out, err = _doctor(capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == ["doctor: LIVEKIT_URL is not set (e.g. ws://localhost:7880)",
                                "doctor: LIVEKIT_API_SECRET is not set (secret for livekit-server --dev)"]  # fmt: skip
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.setenv("LIVEKIT_URL", "ftp://localhost:7880")
    code, _, err = _doctor(capsys)
    assert code == 2 and err.splitlines() == ["doctor: LIVEKIT_URL must start with ws://, wss://, http:// or https:// (got 'ftp://localhost:7880')"]


def test_doctor_reports_an_unreachable_server_within_the_timeout(monkeypatch, capsys):
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: refused at once
    monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{port}")
    code, _, err = _doctor(capsys)
    assert code == 2 and err.startswith(f"doctor: cannot reach LiveKit at http://127.0.0.1:{port}:") and len(err.splitlines()) == 1
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        code, _, err = _doctor(capsys)
    assert code == 2 and "no answer within 3 s" in err and time.monotonic() - started < 5


def test_doctor_reports_rejected_credentials(monkeypatch, capsys):
    with ServerStub(secret="the-server-knows-another-secret-0123456789") as s:
        monkeypatch.setenv("LIVEKIT_URL", s.url)
        monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
        monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
        code, out, err = _doctor(capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"doctor: LiveKit at {s.url} rejected the credentials (HTTP 401): check LIVEKIT_API_KEY and LIVEKIT_API_SECRET"]


# --- the room driver end to end up to the network boundary; nothing secret is written -----------------------


def _files_mention(root: Path, *needles: str) -> list[str]:
    found = []
    for f in root.rglob("*"):
        if f.is_file():
            text = f.read_bytes().decode("utf-8", "replace")
            found += [f"{f.relative_to(root)}: {n[:12]}…" for n in needles if n in text]
    return found


def test_live_run_with_no_agent_says_so_and_deletes_dispatches_and_room(stub, short_room, tmp_path, capfd, monkeypatch):
    """With the listener's connection stood in (no media server), the run goes as far as waiting for
    agents at t0: its dispatches are created with the spec, then deleted with the room."""

    async def no_connect(self, creds, room):
        pass

    monkeypatch.setattr(publishers.Listener, "connect", no_connect)
    monkeypatch.setattr(live_driver, "START_LEAD_S", 3.0)  # agents may join until 1 s (3 - CONNECT_AHEAD_S)
    results = tmp_path / "results"
    code = main(["live", "--arch", "multi_dispatch", "--scenario", str(short_room), "--results", str(results), "--stt", "delay:0.1"])
    out = capfd.readouterr()
    assert code == 1
    methods = [c.method for c in stub.calls if not c.method.startswith("List")]  # the driver also polls ListParticipants
    assert methods == ["CreateRoom", "CreateDispatch", "CreateDispatch", "DeleteDispatch", "DeleteDispatch", "DeleteRoom"]
    specs = [JobSpec.from_json(c.request.metadata) for c in stub.of("CreateDispatch")]
    assert [s.identities for s in specs] == [["alice"], ["bob"]]
    assert not stub.of("UpdateRoomMetadata")  # no agent: no start to announce
    assert "no agent 'kit-multi-dispatch-ci-runner' joined within 1 s" in out.err
    assert _files_mention(results, SECRET, "eyJ") == []
    assert SECRET not in out.out + out.err and "eyJ" not in out.out + out.err


# --- each architecture in a simulated live job ------------------------------------------------------------------
#
# A real JobContext (connect, participant entrypoints, shutdown) and, for the session designs, a real
# AgentSession whose RoomIO links to the participant, over FakeRoom: an rtc.Room stand-in with the
# calls they make. Its audio is the console replay (rtc.AudioStream.from_participant/from_track are
# replaced), each participant's stream ending when it leaves; what the job publishes is captured and
# handed to the room driver's Listener, as a real room would carry it.


class FakePublication:
    def __init__(self, room: FakeRoom, owner: str) -> None:
        self.sid, self.source, self.kind = f"TR_{owner}", rtc.TrackSource.SOURCE_MICROPHONE, rtc.TrackKind.KIND_AUDIO
        self.subscribed, self.track, self.audio_features = False, None, []
        self._room, self._owner = room, owner

    def set_subscribed(self, subscribed: bool) -> None:
        self.subscribed = subscribed
        if subscribed and self.track is None:
            self.track = FakeTrack(self.sid)
            self._room.emit("track_subscribed", self.track, self, self._room.remote_participants[self._owner])


class FakeTrack:
    def __init__(self, sid: str) -> None:
        self.sid, self.kind, self.name = sid, rtc.TrackKind.KIND_AUDIO, "microphone"


class FakeParticipant:
    def __init__(self, room: FakeRoom, identity: str, kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD) -> None:
        self.identity, self.kind, self.sid, self.name, self.attributes = identity, kind, f"PA_{identity}", identity, {}
        self.disconnect_reason = rtc.DisconnectReason.CLIENT_INITIATED
        self.track_publications = {} if kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT or identity == live.LISTENER_IDENTITY else {
            f"TR_{identity}": FakePublication(room, identity)
        }  # fmt: skip


class FakeWriter:
    def __init__(self, local: FakeLocalParticipant, topic: str, sender: str, attributes: dict) -> None:
        self.local, self.topic, self.sender, self.attributes, self.text = local, topic, sender, attributes, ""

    async def write(self, text: str) -> None:
        self.text += text

    async def aclose(self, attributes=None) -> None:
        self.local.published.append(self)
        self.local.deliver(self)  # the room carries it to the listener at once


class FakeLocalParticipant:
    identity, sid, kind, attributes = "agent-AJ_fake", "PA_agent", rtc.ParticipantKind.PARTICIPANT_KIND_AGENT, {}

    def __init__(self, deliver) -> None:
        self.published: list[FakeWriter] = []
        self.deliver = deliver

    async def stream_text(self, *, topic="", sender_identity=None, attributes=None, **_) -> FakeWriter:
        return FakeWriter(self, topic, sender_identity, dict(attributes or {}))

    async def set_attributes(self, attributes) -> None:
        self.attributes = {**self.attributes, **attributes}

    async def send_bytes(self, *_, **__) -> None:  # the primary session's transport (lk.agent.session)
        pass


class FakeRoom(EventEmitter):
    """One job's connection to the room: what JobContext, LiveRoom and RoomIO call on an rtc.Room."""

    def __init__(self, name: str, deliver) -> None:
        super().__init__()
        self.name, self.remote_participants, self.local_participant = name, {}, FakeLocalParticipant(deliver)
        self.connected_with, self._handlers, self.publications = None, {}, []
        self.metadata = ""

    async def connect(self, url, token, options=None) -> None:
        self.connected_with = options

    def isconnected(self) -> bool:
        return self.connected_with is not None

    async def disconnect(self) -> None:
        self.connected_with = None

    def register_byte_stream_handler(self, topic, handler) -> None:
        if topic in self._handlers:
            raise ValueError(f"byte stream handler for topic '{topic}' already set")
        self._handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic) -> None:
        self._handlers.pop(topic, None)

    register_text_stream_handler, unregister_text_stream_handler = register_byte_stream_handler, unregister_byte_stream_handler

    def join(self, identity: str, kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD) -> None:
        p = self.remote_participants[identity] = FakeParticipant(self, identity, kind)
        self.publications += p.track_publications.values()
        if self.isconnected():
            self.emit("participant_connected", p)

    def leave(self, identity: str) -> None:
        self.emit("participant_disconnected", self.remote_participants.pop(identity))


class ReplayStream:
    """rtc.AudioStream's stand-in: the participant's replayed frames, until closed (it left)."""

    def __init__(self, replay: ConsoleRoom, identity: str) -> None:
        self._frames, self._closed = aiter(replay.frames(identity)), asyncio.Event()

    def __aiter__(self):
        return self

    async def __anext__(self) -> rtc.AudioFrameEvent:
        frame, closed = asyncio.ensure_future(anext(self._frames)), asyncio.ensure_future(self._closed.wait())
        await asyncio.wait([frame, closed], return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if frame.done() and frame.exception() is None:
            return rtc.AudioFrameEvent(frame.result())
        frame.cancel()
        await self._closed.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._closed.set()


def _job_context(room: FakeRoom, spec: JobSpec, ended: asyncio.Event) -> JobContext:
    info = RunningJobInfo(
        accept_arguments=JobAcceptArguments(identity=room.local_participant.identity, name="", metadata=""),
        job=agent.Job(id=f"AJ_{spec.job}", room=models.Room(name=room.name, sid="RM_fake"), metadata=spec.to_json(), agent_name="kit-x"),
        url="ws://fake", token="", worker_id="AW_fake", fake_job=False,
    )  # fmt: skip
    proc = JobProcess(executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None)
    return JobContext(proc=proc, info=info, room=room, on_connect=lambda: None, on_shutdown=lambda _: ended.set(), inference_executor=None)


async def _run_job(arch: str, ctx: JobContext) -> None:
    _JobContextVar.set(ctx)  # what the job process does: sessions see they run inside a job
    await importlib.import_module(f"kit.architectures.{arch}").entrypoint(ctx)


async def _simulate(sc: scenario.Scenario, run_dir: Path, config: RunConfig, monkeypatch) -> dict:
    """Every architecture's jobs at once on one simulated room, each architecture with the room
    driver's Listener receiving what its jobs publish; returns the jobs and what connect() saw."""
    t_submit = time.time()
    t0_wall = t_submit + 1.5
    replay = ConsoleRoom(sc, live.mono_at(t0_wall))
    monkeypatch.setattr(rtc.AudioStream, "from_participant", classmethod(lambda cls, participant, **_: ReplayStream(replay, participant.identity)))
    monkeypatch.setattr(rtc.AudioStream, "from_track", classmethod(lambda cls, track, **_: ReplayStream(replay, track.sid[3:])))
    jobs, listeners = {}, {}
    for arch in NAMES:
        log = EventLog(run_dir / "events" / f"{arch}-runner.jsonl", t0=replay.t0, arch=arch, job="runner", wall_clock=True)
        listeners[arch] = publishers.Listener(log, sc.identities)
        listeners[arch].track_owner.update({f"TR_{i}": i for i in sc.identities})
        for spec in live_driver.job_specs(arch, config, sc, run_dir, t_submit):
            deliver = lambda w, _l=listeners[arch]: _l.record(w.text, w.attributes, w.local.identity)  # noqa: E731
            room, ended = FakeRoom(f"room-{arch}", deliver), asyncio.Event()
            room.metadata = live.t0_metadata(t0_wall)  # announced before the job joins
            room.join("alice")  # already there when the job connects
            jobs[(arch, spec.job)] = (room, _job_context(room, spec, ended), ended, spec)
    connect_saw = {}
    for key, (_, ctx, _, _) in jobs.items():

        async def connect(*a, _ctx=ctx, _real=ctx.connect, _key=key, **kw):
            connect_saw[_key] = len(_ctx._participant_entrypoints)  # registered before connect?
            await _real(*a, **kw)

        ctx.connect = connect
    tasks = [asyncio.create_task(_run_job(arch, ctx)) for (arch, _), (_, ctx, _, _) in jobs.items()]
    await asyncio.sleep(0.3)
    for room, *_ in jobs.values():
        room.join("bob")  # joins after the job connected
        room.join(live.LISTENER_IDENTITY)  # the driver's listener: never transcribed
        room.join("agent-AJ_other", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)  # another agent: never transcribed
    await asyncio.sleep(replay.t0 + LEAVE_S + 0.1 - time.monotonic())
    for room, *_ in jobs.values():
        room.leave("alice")
        room.leave("bob")
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for listener in listeners.values():
        listener.events.emit("run_end")
        listener.events.close()
    return {"jobs": jobs, "connect_saw": connect_saw, "t0": replay.t0}


@pytest.mark.replay
def test_each_architecture_in_a_simulated_live_job(short_room, tmp_path, monkeypatch):
    sc = scenario.load(short_room)
    config = RunConfig(scenario=str(short_room), stt="delay:0.05")
    run_dir = tmp_path / "run"
    (run_dir / "events").mkdir(parents=True)
    sim = asyncio.run(_simulate(sc, run_dir, config, monkeypatch))

    for (arch, job), (room, _, ended, spec) in sim["jobs"].items():
        assert ended.is_set(), f"{arch}/{job}: the job shut itself down"
        assert room.connected_with.auto_subscribe is False  # it subscribes only to whom it serves
        assert sorted(p.sid for p in room.publications if p.subscribed) == [f"TR_{i}" for i in spec.identities]
        assert room.local_participant.published, f"{arch}/{job} published its finals"
        for w in room.local_participant.published:
            assert w.topic == "lk.transcription" and w.attributes["lk.transcription_final"] == "true"
            assert w.sender in spec.identities and w.attributes["lk.transcribed_track_id"] == f"TR_{w.sender}"
    assert sim["connect_saw"][("participant_entrypoint", "j1")] == 1, "participant entrypoint registered before connect()"
    assert sim["connect_saw"][("multi_session", "j1")] == 0

    events = read_events(run_dir)
    assert events["wall"].notna().all(), "every live event records wall time"
    for arch in NAMES:
        ev = events[events["arch"] == arch]
        served = ev[ev["kind"] == "participant_joined"].groupby("job")["participant"].apply(sorted).to_dict()
        assert served == ({"j1": ["alice"], "j2": ["bob"]} if arch == "multi_dispatch" else {"j1": ["alice", "bob"]}), arch
        assert (ev["kind"] == "error").sum() == 0, ev[ev["kind"] == "error"]["detail"].tolist()
        assert (ev["kind"] == "job_start").sum() == (ev["kind"] == "job_end").sum() == len(served)
        assert set(ev.loc[ev["kind"] == "final", "job"]) == {"runner"}, "finals are what the listener received"
    # the same tables as console mode (no resources sampled here: cost is "not measured", NaN)
    record = RunRecord.new(run_dir, config, sc, mode="live")
    record.archs = {a: ArchRun(arch=a, t0_mono=sim["t0"], complete=True, cold_start_s={}) for a in NAMES}
    record.save(run_dir)
    tables = metrics.compute(run_dir)
    utts = tables.utterances
    assert len(utts) == 2 * len(NAMES) and not utts["missed"].any() and (utts["kind"] == "reference").all()
    assert utts["vad_latency_s"].between(0.04, 1.0).all() and utts["latency_s"].between(0.3, 3.0).all()
    archs = tables.architectures.set_index("arch")
    assert archs.loc[list(NAMES), "jobs"].tolist() == [1, 1, 2] and archs["cpu_s"].isna().all()


def test_session_room_options_link_one_participant_listen_only():
    opts = live.session_room_options("alice")
    audio = opts.audio_input
    assert opts.participant_identity == "alice" and not opts.close_on_disconnect
    assert (audio.sample_rate, audio.num_channels, audio.frame_size_ms) == (48000, 1, 20)
    assert audio.pre_connect_audio is False and audio.auto_gain_control is False
    assert (opts.text_input, opts.audio_output, opts.text_output) == (False, False, False)


def test_transcription_attributes_round_trip_and_non_finals_are_ignored():
    attrs = live.final_attributes("TR_1", {"speech_start": 1.5, "speech_end": 4.25, "stt_cpu_s": 0.3, "infer_s": None})
    assert attrs["lk.transcription_final"] == "true" and attrs["lk.transcribed_track_id"] == "TR_1" and attrs["lk.segment_id"].startswith("SG_")
    assert live.final_fields(attrs) == {"speech_start": 1.5, "speech_end": 4.25, "stt_cpu_s": 0.3}
    assert publishers.final_event("hi", attrs, "agent-1", {"TR_1": "alice"})["participant"] == "alice"
    assert publishers.final_event("hi", {**attrs, "lk.transcribed_track_id": "TR_9"}, "bob", {})["participant"] == "bob"
    assert publishers.final_event("hi", {**attrs, "lk.transcription_final": "false"}, "bob", {}) is None


# --- notebooks/05-live.ipynb ---------------------------------------------------------------------------------------


def _run_notebook(**params) -> str:
    """Execute 05-live headless with `params` injected after its parameters cell; all its output text."""
    book = nbformat.read(REPO_ROOT / "notebooks" / "05-live.ipynb", as_version=4)
    at = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
    book.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items())))
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    return "\n".join(o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values()) for o in outputs)


@pytest.mark.replay
def test_live_notebook_starts_its_own_server_and_compares_console_with_live(monkeypatch, tmp_path):
    for var in live.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    text = _run_notebook(scenario=SHORT_ROOM, archs=["participant_entrypoint"], stt="delay:0.3",
                         results_dir=str(tmp_path / "results"))  # fmt: skip
    assert "a private server for this run" in text and "exit code 0" in text
    assert "latency_p50_live" in text and "<Figure" in text
    jwt_shape = re.compile(r"eyJ[\w-]{8,}\.[\w-]+\.[\w-]+")  # base64 images may hold "eyJ" by chance, never the dots
    assert not jwt_shape.search(text)
    for f in (tmp_path / "results").rglob("*"):
        assert not (f.is_file() and jwt_shape.search(f.read_bytes().decode("utf-8", errors="replace"))), f
