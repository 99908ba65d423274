"""The LiveKit server API calls of a live run: create a room, dispatch its agents, announce its start, count its jobs, close it."""

from __future__ import annotations

from livekit import api

from kit.live.common import Credentials, redact, server_api, t0_metadata

EMPTY_TIMEOUT_S = 60  # the server closes an abandoned room after this long empty


async def create_room(creds: Credentials, room: str, node_id: str | None = None) -> None:
    """`node_id`: the cluster node that hosts it (None: the server's node selector chooses)."""
    async with server_api(creds, room_create=True) as lk:
        await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=EMPTY_TIMEOUT_S, node_id=node_id or ""))


async def create_dispatches(creds: Credentials, room: str, agent: str, metadata: list[str]) -> list[str]:
    """One explicit dispatch per job, with its metadata (the kit's jobs: a JobSpec); returns the dispatch ids."""
    ids = []
    async with server_api(creds, room_admin=True, room=room) as lk:
        for m in metadata:
            d = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(agent_name=agent, room=room, metadata=m))
            ids.append(d.id)
    return ids


async def announce_t0(creds: Credentials, room: str, t0_wall: float) -> None:
    """Tell the room's jobs when it starts (kit/live/common.py, "The clock")."""
    async with server_api(creds, room_admin=True, room=room) as lk:
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room, metadata=t0_metadata(t0_wall)))


async def redispatch_jobless(creds: Credentials, room: str, agent: str, dispatches: list[str], metadata: list[str]) -> list[str]:
    """Our dispatches that got no job (a worker that was full when the server offered it one: the
    server does not offer it again), deleted and made again with their metadata; returns the ids."""
    async with server_api(creds, room_admin=True, room=room) as lk:
        jobless = {d.id for d in await lk.agent_dispatch.list_dispatch(room) if not d.state.jobs}
        ids = []
        for dispatch_id, m in zip(dispatches, metadata):
            if dispatch_id in jobless:
                await lk.agent_dispatch.delete_dispatch(dispatch_id, room)
                dispatch_id = (await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
                    agent_name=agent, room=room, metadata=m))).id  # fmt: skip
            ids.append(dispatch_id)
    return ids


async def redispatch_departed(creds: Credentials, room: str, agent: str, departed: set[str], needed: set[str]) -> list[str]:
    """The watchdog's one call per lost job (`--redispatch`): each dispatch whose agent left the room
    while its job was still `needed` (its metadata is among them: someone it serves is still in the
    room, so its worker or process died) is made again with that metadata; returns the new dispatch ids.
    LiveKit 1.13.5 does not dispatch a dead worker's jobs again by itself (docs/live.md)."""
    async with server_api(creds, room_admin=True, room=room) as lk:
        lost = [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name == agent and d.metadata in needed
                and any(j.state.participant_identity in departed for j in d.state.jobs)]  # fmt: skip
        return [(await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(agent_name=agent, room=room,
                                                                                        metadata=d.metadata))).id for d in lost]  # fmt: skip


async def count_jobs(creds: Credentials, room: str) -> int | None:
    """The jobs the server assigned for the room's dispatches (None: it could not be asked)."""
    try:
        async with server_api(creds, timeout_s=5, room_admin=True, room=room) as lk:
            return sum(len(d.state.jobs) for d in await lk.agent_dispatch.list_dispatch(room))
    except Exception:
        return None


async def close_room(creds: Credentials, room: str, dispatches: list[str], find: bool = False) -> list[str]:
    """Delete the dispatches (finished ones may be gone already) and the room; returns problems.
    `find`: token dispatch, the server made the dispatches: list them first."""
    problems = []
    try:
        async with server_api(creds, room_admin=True, room=room) as lk:
            if find:
                dispatches = [d.id for d in await lk.agent_dispatch.list_dispatch(room)]
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
