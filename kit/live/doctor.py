"""`python -m kit doctor`: is live mode usable from here? One line per problem; exit 0 or 2.

Checks, in order (a later check needs the earlier ones): LIVEKIT_URL, LIVEKIT_API_KEY and
LIVEKIT_API_SECRET are set; the URL is ws://, wss://, http:// or https:// with a host; the agent
name suffix is usable; the server answers HTTP within REACH_TIMEOUT_S; it accepts the credentials
(a ListRooms call with a token that may only list rooms). Nothing secret is ever printed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from livekit import api

from kit.config import KitError
from kit.live.common import (
    Credentials,
    agent_suffix,
    credential_problems,
    redact,
    server_api,
)

REACH_TIMEOUT_S = 3.0


def problems(env: Mapping[str, str] = os.environ) -> tuple[list[str], str]:
    """(problems, what is fine): the problems one line each, empty when live mode can run."""
    found = credential_problems(env)
    try:
        suffix = agent_suffix(env)
    except KitError as e:
        found.append(str(e))
        suffix = None
    if found:
        return found, ""
    creds = Credentials.from_env(env)
    found, rooms = _run(_probe(creds))
    ok = f"LiveKit at {creds.url} is reachable and accepts the credentials ({rooms} rooms open); agents register as kit-<arch>-{suffix}"
    return [redact(p, creds.api_secret) for p in found], ("" if found else ok)


def _run(coro):
    """asyncio.run, also from a notebook, whose kernel already runs a loop in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _probe(creds: Credentials) -> tuple[list[str], int | None]:
    unreachable = await _reach(creds.http_url)
    if unreachable:
        return [unreachable], None
    try:
        async with server_api(creds, timeout_s=REACH_TIMEOUT_S, room_list=True) as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest())
        return [], len(rooms.rooms)
    except api.ServerError as e:
        if e.status in (401, 403):
            return [f"LiveKit at {creds.url} rejected the credentials (HTTP {e.status}): check LIVEKIT_API_KEY and LIVEKIT_API_SECRET"], None
        return [f"{creds.url} does not answer like a LiveKit server (ListRooms: HTTP {e.status} {e.code})"], None
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return [f"ListRooms at {creds.url} failed: {type(e).__name__}: {e}"], None


async def _reach(http_url: str) -> str | None:
    """None if anything answers HTTP at the server's address within the timeout, else why not."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REACH_TIMEOUT_S)) as s:
            async with s.get(http_url + "/"):
                return None
    except asyncio.TimeoutError:
        return f"cannot reach LiveKit at {http_url}: no answer within {REACH_TIMEOUT_S:.0f} s"
    except aiohttp.ClientConnectorError as e:
        reason = e.os_error.strerror if e.os_error and e.os_error.strerror else str(e)
        return f"cannot reach LiveKit at {http_url}: {reason}"
    except aiohttp.ClientError as e:
        return f"cannot reach LiveKit at {http_url}: {type(e).__name__}: {e}"


def main() -> int:
    found, ok = problems()
    for p in found:
        print(f"doctor: {p}", file=sys.stderr)
    if not found:
        print(f"ok: {ok}")
    return 2 if found else 0
