"""Live mode, the parts shared by the agent worker, the jobs and the room driver (docs/live.md).

- **Credentials** come from LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET only. The secret is
  never printed, logged or written: `redact` scrubs it (and anything shaped like a token) from
  every message the kit writes in live mode.
- **Agent names** are `kit-<arch>-<suffix>`, so several developers can share one LiveKit project
  without crosstalk (LiveKit's guide "Avoiding crosstalk when multiple developers share a LiveKit project"): the suffix is LIVEKIT_AGENT_SUFFIX, or the OS user name, made of
  lowercase letters, digits and single dashes (anything else becomes a dash; at most 32
  characters); the architecture's underscores become dashes too: `kit-multi-session-jack`.
  Setting an agent name switches the worker to explicit dispatch: it joins a room only when
  the room driver creates a dispatch for that name, never automatically.
- **Tokens** live 10 minutes and carry the least each role needs: a publisher may join its one
  room and publish its microphone (no subscribe, no data); the listener may join and subscribe
  (no publish); each server-API call gets its own token with only that call's grant.
- **The clock.** Console mode shares one `time.monotonic()` across processes of one machine. In
  live mode the agent may run on another machine, whose monotonic clock is unrelated, so the run's
  start instant t0 travels as wall time (time.time()): once every agent has joined (or the wait for
  them is over), the room driver sets t0 CONNECT_AHEAD_S ahead and announces it in the room's
  metadata (`{"kit_t0_wall": ...}`, `StartAnnouncement`); each job waits for it, maps it once onto its
  own monotonic clock (`mono_at`) and then measures as in console mode, in seconds since t0; every
  event also records `wall`, when it was written. Times from two machines agree to within their
  wall clocks' offset (NTP: a few ms). (Console mode's twin: the runner writes t0 to a file once
  every job is ready.)
- **LiveRoom** is `kit.room.console.RoomView` over the job's real `rtc.Room`: the architectures' code is the
  same in both modes; only this adapter differs.
- **Finals.** In console mode a final goes into the job's event log. Live, the job publishes it
  to the room as a LiveKit transcription (an `lk.transcription` text stream, sender_identity = the
  transcribed participant, `lk.transcription_final`, `lk.transcribed_track_id`, `lk.segment_id`),
  and the room driver logs it when it arrives, so latency includes the trip through the server.
  The timing the metrics need (the VAD span, the STT's cost) rides along as `kit.*` attributes.
  An AgentSession's own room transcription output would publish the same text but cannot carry
  extra attributes, so it is switched off and every design publishes through `LiveRoom`.
"""

from __future__ import annotations

import asyncio
import getpass
import html
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import aiohttp
from livekit import api, rtc

from kit.config import KitError
from kit.room.console import FRAME_S, ROOM_RATE
from kit.run.events import EventLog

ENV_VARS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
SUFFIX_ENV = "LIVEKIT_AGENT_SUFFIX"
SCHEMES = ("ws", "wss", "http", "https")
TOKEN_TTL = timedelta(minutes=10)
LISTENER_IDENTITY = "kit-listener"
TRANSCRIPTION_TOPIC = "lk.transcription"
T0_METADATA_KEY = "kit_t0_wall"  # the room metadata field that announces t0 ("The clock")
T0_WAIT_S = 60.0  # a job gives up on an announcement this long after joining (the driver waits less for agents)
FINAL_FIELDS = ("speech_start", "speech_end", "stt_cpu_s", "infer_s", "audio_s")  # carried as kit.<name>


# --- credentials, names, tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str
    api_secret: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        problems = credential_problems(env)
        if problems:
            raise KitError("; ".join(problems) + " (see `python -m kit doctor`)")
        return cls(env["LIVEKIT_URL"], env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"])

    @property
    def http_url(self) -> str:
        """The server's HTTP origin (the API and the health check live there; ws -> http)."""
        u = urlparse(self.url)
        return f"{u.scheme.replace('ws', 'http', 1)}://{u.netloc}"


def credential_problems(env: Mapping[str, str] = os.environ) -> list[str]:
    """What is missing or malformed in the environment, one line each (empty: usable)."""
    hints = {"LIVEKIT_URL": "e.g. ws://localhost:7880", "LIVEKIT_API_KEY": "devkey for livekit-server --dev",
             "LIVEKIT_API_SECRET": "secret for livekit-server --dev"}  # fmt: skip
    problems = [f"{var} is not set ({hints[var]})" for var in ENV_VARS if not env.get(var, "").strip()]
    url = env.get("LIVEKIT_URL", "").strip()
    if url:
        u = urlparse(url)
        if u.scheme not in SCHEMES:
            problems.append(f"LIVEKIT_URL must start with ws://, wss://, http:// or https:// (got {url!r})")
        elif not u.hostname:
            problems.append(f"LIVEKIT_URL has no host name (got {url!r})")
        elif u.username or u.password:
            problems.append("LIVEKIT_URL must not carry a user name or password (credentials go in LIVEKIT_API_KEY/SECRET)")
    return problems


def sanitize_suffix(raw: str) -> str:
    """The rule LiveKit-safe names follow here: lowercase letters, digits, single dashes, <= 32 chars."""
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:32].strip("-")


def agent_suffix(env: Mapping[str, str] = os.environ) -> str:
    """LIVEKIT_AGENT_SUFFIX, else the OS user name, sanitised (see `sanitize_suffix`)."""
    raw = env.get(SUFFIX_ENV, "").strip()
    if not raw:
        try:
            raw = getpass.getuser()
        except (OSError, KeyError):
            raise KitError(f"cannot tell your user name: set {SUFFIX_ENV} (e.g. your first name)") from None
    suffix = sanitize_suffix(raw)
    if not suffix:
        raise KitError(f"{SUFFIX_ENV} {raw!r} has no letters or digits")
    return suffix


def agent_name(arch: str, suffix: str | None = None) -> str:
    return f"kit-{arch.replace('_', '-')}-{suffix or agent_suffix()}"


def _token(creds: Credentials, grants: api.VideoGrants, identity: str = "") -> str:
    return api.AccessToken(creds.api_key, creds.api_secret).with_identity(identity).with_ttl(TOKEN_TTL).with_grants(grants).to_jwt()


def publisher_token(creds: Credentials, room: str, identity: str, room_config: api.RoomConfiguration | None = None) -> str:
    """Join this one room and publish a microphone; no subscribing, no data. `room_config`: token
    dispatch (the crosstalk guide's second path): the room this join creates gets these agents."""
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_publish_sources=["microphone"],
                             can_subscribe=False, can_publish_data=False)  # fmt: skip
    token = api.AccessToken(creds.api_key, creds.api_secret).with_identity(identity).with_ttl(TOKEN_TTL).with_grants(grants)
    return (token.with_room_config(room_config) if room_config else token).to_jwt()


def listener_token(creds: Credentials, room: str) -> str:
    """Join this one room and receive what is published (the agents' transcriptions); publish nothing."""
    grants = api.VideoGrants(room_join=True, room=room, can_publish=False, can_subscribe=True, can_publish_data=False)
    return _token(creds, grants, LISTENER_IDENTITY)


@asynccontextmanager
async def server_api(creds: Credentials, timeout_s: float = 10.0, **grants: Any):
    """A LiveKitAPI client whose one token carries only `grants` (e.g. room_create=True) for 10 min."""
    token = _token(creds, api.VideoGrants(can_publish=False, can_subscribe=False, can_publish_data=False, **grants))
    lk = api.LiveKitAPI.with_token(token, creds.url, timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        yield lk
    finally:
        await lk.aclose()


_TOKEN_SHAPE = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")  # a JWT: base64url of '{"', two dots
_SECRET_KEY = re.compile(r"secret|token|password|api_?key", re.IGNORECASE)


def redact(value: Any, secret: str | None = None) -> Any:
    """The one redaction helper. `value` (text, or a JSON-like dict or list) with the API secret and
    key (the given `secret`, and LIVEKIT_API_SECRET / LIVEKIT_API_KEY of the environment), also
    HTML-escaped, and anything shaped like an access token replaced; in a dict, every value under a
    secret-looking key too."""
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_KEY.search(str(k)) else redact(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secret) for v in value]
    if not isinstance(value, str):
        return value
    known = [secret or "", os.environ.get("LIVEKIT_API_SECRET", ""), os.environ.get("LIVEKIT_API_KEY", "")]
    for s in sorted({s for s in known if len(s) >= 4}, key=len, reverse=True):
        value = value.replace(s, "[redacted]").replace(html.escape(s), "[redacted]")
    return _TOKEN_SHAPE.sub("[redacted-token]", value)


class RedactingFormatter(logging.Formatter):
    """For every log handler of a live run: libraries may put URLs with tokens into messages."""

    def __init__(self, fmt: str, secret: str) -> None:
        super().__init__(fmt)
        self._secret = secret

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secret)


# --- the clock -----------------------------------------------------------------------------------------


def mono_at(wall: float) -> float:
    """This machine's time.monotonic() at the wall-clock instant `wall` (time.time())."""
    return time.monotonic() + (wall - time.time())


def wall_at(mono: float) -> float:
    """The wall-clock instant (time.time()) of this machine's time.monotonic() `mono`."""
    return time.time() + (mono - time.monotonic())


def t0_metadata(t0_wall: float) -> str:
    """The room metadata with which the room driver announces t0."""
    return json.dumps({T0_METADATA_KEY: t0_wall})


class StartAnnouncement:
    """A job's side of "The clock": t0 as the room driver announces it in the room's metadata. Made
    before connecting (the announcement may come as the job joins, or be in the room already)."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self._t0_wall: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        room.on("room_metadata_changed", lambda _old, new: self.read(new))
        room.on("disconnected", lambda *_: self._give_up("the room closed before it started"))

    def read(self, metadata: str | None) -> None:
        try:
            t0_wall = json.loads(metadata or "{}").get(T0_METADATA_KEY)
        except (ValueError, AttributeError):  # someone else's metadata: not ours
            return
        if t0_wall is not None and not self._t0_wall.done():
            self._t0_wall.set_result(float(t0_wall))

    def _give_up(self, why: str) -> None:
        if not self._t0_wall.done():
            self._t0_wall.set_exception(RuntimeError(why))

    async def t0(self, timeout_s: float = T0_WAIT_S) -> float:
        """t0 on this machine's monotonic clock, once announced (connected: the room may hold it already)."""
        self.read(self.room.metadata)
        try:
            return mono_at(await asyncio.wait_for(asyncio.shield(self._t0_wall), timeout_s))
        except asyncio.TimeoutError:
            raise RuntimeError(f"the room driver announced no start (room metadata {T0_METADATA_KEY}) within {timeout_s:.0f} s") from None


# --- finals as LiveKit transcriptions ------------------------------------------------------------------


def final_attributes(track_sid: str | None, fields: Mapping[str, Any]) -> dict[str, str]:
    """The attributes of one final's text stream: LiveKit's transcription attributes + the kit's timing."""
    attrs = {"lk.transcription_final": "true", "lk.segment_id": f"SG_{secrets.token_hex(6)}"}
    if track_sid:
        attrs["lk.transcribed_track_id"] = track_sid
    attrs.update({f"kit.{k}": repr(float(v)) for k, v in fields.items() if k in FINAL_FIELDS and v is not None})
    return attrs


def final_fields(attributes: Mapping[str, str]) -> dict[str, float]:
    """The kit's timing back from a transcription's attributes (what `final_attributes` wrote)."""
    out = {}
    for k in FINAL_FIELDS:
        try:
            out[k] = float(attributes[f"kit.{k}"])
        except (KeyError, ValueError):
            continue
    return out


# --- the job side: the room adapter ---------------------------------------------------------------------


def session_room_options(identity: str):
    """How an AgentSession joins the live room: linked to one participant, listening only.

    The same audio as every other design gets: 48 kHz mono in 20 ms frames, no automatic gain
    control (RoomIO turns it on by default), no pre-connect buffer (the publishers send none). No
    audio or text output: the kit publishes finals itself (see the module docstring); no chat input
    (several sessions in one job would fight over its handler). The kit closes the session when its
    participant leaves, whatever the reason, so close_on_disconnect is off.
    """
    from livekit.agents.voice import room_io

    return room_io.RoomOptions(
        participant_identity=identity,
        audio_input=room_io.AudioInputOptions(sample_rate=ROOM_RATE, num_channels=1, frame_size_ms=round(FRAME_S * 1000),
                                              pre_connect_audio=False, auto_gain_control=False),
        text_input=False, audio_output=False, text_output=False, close_on_disconnect=False,
    )  # fmt: skip


class LiveRoom:
    """kit.room.console.RoomView over a job's real rtc.Room (`ctx.room`).

    It serves the participants its spec names (never an agent, never the kit's listener) and
    subscribes to their microphones only: a multi-dispatch job decodes its one participant, not all
    of them. Joins come from the room's participant_connected events (after `watch_joins`) or, in
    the participant-entrypoint design, from `ctx.add_participant_entrypoint(room.participant_entrypoint)`.
    A participant's audio, and its AgentSession, end when it leaves or the room closes.
    """

    def __init__(self, room: rtc.Room, identities: list[str]) -> None:
        self.room = room
        self.identities = list(identities)
        self._joined: asyncio.Queue[str | None] = asyncio.Queue()
        self._admitted: set[str] = set()
        self._left = {i: asyncio.Event() for i in self.identities}
        self._streams: dict[str, Any] = {}
        self._mic_sids: dict[str, str] = {}
        self._pending: set[asyncio.Task] = set()
        self._publish_lock = asyncio.Lock()  # finals leave in the order they were made
        room.on("participant_disconnected", self._on_left)
        room.on("track_published", self._on_track_published)
        room.on("disconnected", self._on_room_closed)

    # joins

    def watch_joins(self) -> None:
        """Admit participants from the room's own events (register before connecting)."""
        self.room.on("participant_connected", self.admit)

    async def participant_entrypoint(self, ctx: Any, participant: rtc.RemoteParticipant) -> None:
        """What the participant-entrypoint design registers with ctx.add_participant_entrypoint."""
        self.admit(participant)

    def admit_present(self) -> None:
        """Admit those already in the room when the job connected (no participant_connected for them)."""
        for p in list(self.room.remote_participants.values()):
            self.admit(p)

    def admit(self, p: rtc.RemoteParticipant) -> None:
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT or p.identity not in self._left or p.identity in self._admitted:
            return
        self._admitted.add(p.identity)
        for pub in list(p.track_publications.values()):
            self._on_track_published(pub, p)
        self._joined.put_nowait(p.identity)

    async def joins(self) -> AsyncIterator[str]:
        for _ in self.identities:
            identity = await self._joined.get()
            if identity is None:  # the room closed
                return
            yield identity

    # audio

    async def frames(self, identity: str) -> AsyncIterator[rtc.AudioFrame]:
        p = self.room.remote_participants.get(identity)
        if p is None or self._left[identity].is_set():
            return
        stream = rtc.AudioStream.from_participant(participant=p, track_source=rtc.TrackSource.SOURCE_MICROPHONE,
                                                  sample_rate=ROOM_RATE, num_channels=1, frame_size_ms=round(FRAME_S * 1000))  # fmt: skip
        self._streams[identity] = stream
        try:
            async for ev in stream:
                yield ev.frame
        finally:
            if self._streams.pop(identity, None) is stream:
                await stream.aclose()

    async def start_session(self, session: Any, agent: Any, identity: str) -> asyncio.Event:
        """Start `session` on the room, linked to `identity` (RoomIO); the returned event is set when it leaves."""
        await session.start(agent, room=self.room, room_options=session_room_options(identity), record=False)
        return self._left[identity]

    # finals

    def deliver_final(self, log: EventLog, participant: str, text: str, **fields: Any) -> None:
        task = asyncio.create_task(self._publish(log, participant, text, fields), name=f"publish-final-{participant}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, log: EventLog, participant: str, text: str, fields: dict) -> None:
        attrs = final_attributes(self._mic_sids.get(participant), fields)
        try:
            async with self._publish_lock:
                writer = await self.room.local_participant.stream_text(
                    topic=TRANSCRIPTION_TOPIC, sender_identity=participant, attributes=attrs
                )
                await writer.write(text)
                await writer.aclose()
        except Exception as e:  # the room went away: the final is lost, and the log says so
            log.emit("error", participant=participant, detail=redact(f"publishing a final failed: {type(e).__name__}: {e}"))

    async def aclose(self) -> None:
        """Wait for finals still on their way out."""
        await asyncio.gather(*list(self._pending), return_exceptions=True)

    # room events

    def _on_track_published(self, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if p.identity in self._admitted and pub.source == rtc.TrackSource.SOURCE_MICROPHONE:
            self._mic_sids[p.identity] = pub.sid
            pub.set_subscribed(True)

    def _on_left(self, p: rtc.RemoteParticipant) -> None:
        if p.identity in self._left:
            self._end(p.identity)

    def _on_room_closed(self, *_: Any) -> None:
        self._joined.put_nowait(None)
        for identity in self.identities:
            self._end(identity)

    def _end(self, identity: str) -> None:
        self._left[identity].set()
        stream = self._streams.pop(identity, None)
        if stream is not None:
            task = asyncio.ensure_future(stream.aclose())
            self._pending.add(task)  # awaited by aclose() like the finals
            task.add_done_callback(self._pending.discard)


def room_name(given: str | None, agent: str, run_id: str, n_archs: int) -> str:
    if given:
        return given if n_archs == 1 else f"{given}-{agent}"
    return f"{agent}-{run_id}"


def redact_log_handlers(secret: str) -> None:
    """livekit.log (set up by kit.run.skeleton.quiet_livekit) gets the secret and tokens scrubbed."""
    for h in logging.getLogger().handlers:
        if getattr(h, "_kit", False):
            h.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secret))


def hosting_node(srv, room: str) -> int | None:
    """Which node of a local server or cluster (kit/live/server.py) hosts the room, by index: the one
    its room allocator selected, as the nodes' own logs say."""
    ids = [node.node_id for node in srv.nodes]
    for node in srv.nodes:
        m = re.search(r'selected node for room\s+\{"room": "' + re.escape(room) + r'", "selectedNodeID": "(ND_\w+)"',
                      node.log_path.read_text(errors="replace"))  # fmt: skip
        if m and m.group(1) in ids:
            return ids.index(m.group(1))
    return 0 if len(ids) == 1 else None
