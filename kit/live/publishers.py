"""The room's side of a live run: a publisher per participant replaying its track in real time, and
the listener that receives every agent's finals on `lk.transcription`."""

from __future__ import annotations

import asyncio
import time

from livekit import api, rtc

from kit.live.common import (
    TRANSCRIPTION_TOPIC,
    Credentials,
    final_fields,
    listener_token,
    publisher_token,
    redact,
)
from kit.room.console import FRAME_S, ROOM_RATE, ConsoleRoom, sleep_until
from kit.run.events import EventLog


def final_event(text: str, attributes: dict[str, str], sender: str, track_owner: dict[str, str]) -> dict | None:
    """The `final` event fields of one received transcription, or None if it is not a final.
    Its participant: the owner of the transcribed track, else the stream's sender identity."""
    if attributes.get("lk.transcription_final") != "true" or not text.strip():
        return None
    participant = track_owner.get(attributes.get("lk.transcribed_track_id", "")) or sender
    return {"participant": participant, "text": text, **final_fields(attributes)}


class Listener:
    """The driver's one listening connection: logs the final transcriptions the agents publish."""

    def __init__(self, events: EventLog, identities: list[str]) -> None:
        self.events = events
        self.identities = set(identities)
        self.track_owner: dict[str, str] = {}  # the publishers' track sid -> identity
        self.room = rtc.Room()
        self.lost = asyncio.Event()  # the connection to the server is gone
        self.streams = 0  # transcription text streams received (interim and final)
        self.finals = 0  # finals logged
        self._reading: set[asyncio.Task] = set()

    async def connect(self, creds: Credentials, room: str) -> None:
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_stream)
        self.room.on("disconnected", lambda *_: self.lost.set())
        await self.room.connect(creds.url, listener_token(creds, room), rtc.RoomOptions(auto_subscribe=False))

    def record(self, text: str, attributes: dict[str, str], sender: str) -> None:
        self.streams += 1
        ev = final_event(text, attributes, sender, self.track_owner)
        if ev is None:
            return
        if ev["participant"] not in self.identities:
            self.events.emit("error", detail=f"a final transcription for {ev['participant']!r}, not a participant of the scenario")
            return
        self.events.emit("final", **ev)
        self.finals += 1

    async def close(self) -> None:
        await asyncio.gather(*list(self._reading), return_exceptions=True)
        await self.room.disconnect()

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


async def connect_publisher(creds: Credentials, room: str, identity: str, room_config: api.RoomConfiguration | None = None) -> rtc.Room:
    """A publisher's connection (with token dispatch, its token carries the room's configuration)."""
    conn = rtc.Room()
    await conn.connect(creds.url, publisher_token(creds, room, identity, room_config), rtc.RoomOptions(auto_subscribe=False))
    return conn


async def publish(creds: Credentials, room: str, replay: ConsoleRoom, identity: str, track_owner: dict[str, str],
                  events: EventLog, conn: rtc.Room | None = None) -> str | None:  # fmt: skip
    """One scenario participant: join (unless `conn` already did), publish a microphone, feed its
    track in real time, log what the server says it received (`uplink`), leave. Returns a problem
    if its first frame could not leave on time."""
    await sleep_until(replay.t0 + replay.scenario.participant(identity).join_s - CONNECT_AHEAD_S)
    conn = conn or await connect_publisher(creds, room, identity)
    source = rtc.AudioSource(ROOM_RATE, 1, queue_size_ms=100)  # small: frames are pushed in real time anyway
    first_due, problem = replay.t0 + (replay.frame_range(identity).start + 1) * FRAME_S, None
    try:
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        # No DTX: silence is sent as audio, as in console mode, so the agents' VAD hears each turn end.
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, dtx=False)
        pub = await conn.local_participant.publish_track(track, options)
        track_owner[pub.sid] = identity
        # Ready after its first frame was due: the source plays in real time, so the whole track stays
        # this late. (Measured here, not at the first frame, which also carries the event loop's jitter.)
        late = time.monotonic() - first_due
        if late > LATE_START_S:
            problem = (f"publisher {identity}: ready to publish {late:.2f} s after its first frame was due (joining and "
                       f"publishing took longer than {CONNECT_AHEAD_S:.0f} s): its latencies are inflated by that much")  # fmt: skip
        muted = replay.scenario.muted(identity)
        async for frame in replay.frames(identity):
            # A mute is a flag on a live track, as a client's mute button sets it; the microphone goes on
            # capturing (docs/scenarios.md, "Mutes": what the server and the agents then get).
            mute = any(a <= time.monotonic() - replay.t0 < b for a, b in muted)
            if mute != track.muted:
                track.mute() if mute else track.unmute()
            await source.capture_frame(frame)
        await source.wait_for_playout()
        await log_uplink(track, identity, events)
    finally:
        await conn.disconnect()
        await source.aclose()
    return problem


async def log_uplink(track: rtc.LocalAudioTrack, identity: str, events: EventLog) -> None:
    """The `uplink` event: packets sent, and lost and jitter as the server's last RTCP receiver report
    gave them (taken as the track ends: the last second or so may not be reported yet)."""
    try:
        stats = await asyncio.wait_for(track.get_stats(), UPLINK_STATS_TIMEOUT_S)
    except Exception as e:  # best effort: the run's numbers do not depend on it
        events.emit("uplink", participant=identity, detail=f"no stats: {type(e).__name__}: {e}")
        return
    fields: dict = {}
    for s in stats:
        if s.WhichOneof("stats") == "outbound_rtp":
            fields["packets_sent"] = s.outbound_rtp.sent.packets_sent
        elif s.WhichOneof("stats") == "remote_inbound_rtp":
            received = s.remote_inbound_rtp.received
            fields.update(packets_lost=received.packets_lost, jitter_s=received.jitter)
    events.emit("uplink", participant=identity, **fields)


UPLINK_STATS_TIMEOUT_S = 2.0
LATE_START_S = 0.05  # a publisher ready later than this after its first frame was due is a problem (its track lags throughout)


CONNECT_AHEAD_S = 2.0  # a publisher joins this early, so its first words are not lost to set-up
