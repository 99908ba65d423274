"""kit/live/server.py against the real livekit-server: install, start on loopback, credentials, logs, stop."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from livekit import api

from kit.config import KitError
from kit.live import dev_server, doctor, install, server
from kit.live.api import create_room
from kit.live.common import Credentials, hosting_node, server_api

pytestmark = pytest.mark.server  # a real livekit-server (tests/conftest.py: markers)


def _listening(pid: int) -> list[tuple[str, int, str]]:
    """(ip, port, tcp|udp) of every socket the process listens on (TCP LISTEN, any bound UDP)."""
    out = []
    for c in psutil.Process(pid).net_connections(kind="inet"):
        if c.type == 1 and c.status == psutil.CONN_LISTEN:
            out.append((c.laddr.ip, c.laddr.port, "tcp"))
        elif c.type == 2 and c.laddr:
            out.append((c.laddr.ip, c.laddr.port, "udp"))
    return out


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_ready_and_accepts_its_credentials(livekit_server):
    srv = livekit_server
    assert srv.running and srv.url == f"ws://127.0.0.1:{srv.port}"
    with urllib.request.urlopen(srv.http_url + "/", timeout=3) as r:
        assert r.status == 200
    assert srv.version == server.server_version(srv.binary)
    assert len(srv.api_secret) >= 32 and srv.api_secret not in repr(srv)
    found, ok = doctor.problems(srv.env())  # a ListRooms call signed with the generated secret
    assert found == [] and "accepts the credentials" in ok
    wrong = {**srv.env(), "LIVEKIT_API_SECRET": "x" * 40}
    found, _ = doctor.problems(wrong)
    assert found and "rejected the credentials" in found[0]


def test_listens_on_loopback_only(livekit_server):
    sockets = _listening(livekit_server.pid)
    assert (("127.0.0.1", livekit_server.port, "tcp") in sockets) and ("127.0.0.1", livekit_server.udp_port, "udp") in sockets
    assert all(ipaddress.ip_address(ip).is_loopback for ip, _, _ in sockets), sockets


def ss_listening(pids: list[int]) -> list[str]:
    """`ss`'s local address of every TCP/UDP socket these processes listen on (UDP: bound)."""
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True, check=True).stdout.splitlines()
    return [line.split()[4] for line in out if any(f"pid={pid}," in line for pid in pids)]


async def room_names(creds: Credentials) -> list[str]:
    async with server_api(creds, room_list=True) as lk:
        return [r.name for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms]


def test_a_cluster_shares_redis_and_rooms_and_listens_on_loopback_only(tmp_path):
    """LiveKit's multi-node mode: Redis and two nodes with one key pair; a room made through one node
    on the other is known to both, and hosted where it was asked to be."""
    with server.LocalCluster(2, log_dir=tmp_path) as cluster:
        a, b = cluster.nodes
        assert cluster.running and a.api_secret == b.api_secret and a.port != b.port and a.node_id != b.node_id
        assert (cluster.url, cluster.agent_url) == (a.url, b.url)
        creds = Credentials(a.url, a.api_key, a.api_secret)
        asyncio.run(create_room(creds, "across", node_id=b.node_id))
        assert hosting_node(cluster, "across") == 1
        for node in (a, b):
            assert asyncio.run(room_names(Credentials(node.url, node.api_key, node.api_secret))) == ["across"]
        addresses = ss_listening(cluster.pids)
        assert f"127.0.0.1:{cluster.redis.port}" in addresses and f"127.0.0.1:{b.udp_port}" in addresses
        assert all(addr.startswith("127.0.0.1:") for addr in addresses), addresses
    assert not cluster.running and all(_gone(p) for p in cluster.pids)


def test_secret_never_in_its_log_config_or_command_line(livekit_server):
    srv = livekit_server
    asyncio.run(_join_and_leave(srv))  # make it log a session too
    log = srv.log_path.read_text()
    assert "starting LiveKit server" in log
    assert srv.api_secret not in log
    assert srv.api_secret not in srv.config_path.read_text()
    assert not any(srv.api_secret in part for part in psutil.Process(srv.pid).cmdline())


async def _join_and_leave(srv) -> None:
    from livekit import rtc

    from kit.live import common as live

    creds = live.Credentials(srv.url, srv.api_key, srv.api_secret)
    room = rtc.Room()
    await room.connect(srv.url, live.listener_token(creds, "kit-server-test"), rtc.RoomOptions(auto_subscribe=False))
    assert room.isconnected()
    await room.disconnect()


def test_stop_leaves_no_process_even_with_a_participant_in(tmp_path):
    """The first SIGTERM waits for participants; stop() forces it then. Ports are free again afterwards."""
    from livekit import rtc

    from kit.live import common as live

    srv = server.LocalServer(log_path=tmp_path / "server.log").start()
    pid, port = srv.pid, srv.port

    async def stop_while_connected() -> float:
        creds = live.Credentials(srv.url, srv.api_key, srv.api_secret)
        room = rtc.Room()
        await room.connect(srv.url, live.listener_token(creds, "kit-stop-test"), rtc.RoomOptions(auto_subscribe=False))
        started = time.monotonic()
        await asyncio.to_thread(srv.stop, 3.0)
        took = time.monotonic() - started
        await room.disconnect()
        return took

    took = asyncio.run(stop_while_connected())
    assert _gone(pid) and not srv.running and took < 10
    srv.stop()  # idempotent
    import socket

    with socket.socket() as s:  # free for the next server (SO_REUSEADDR, as Go's listeners: TIME_WAIT is fine)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_second_server_coexists(livekit_server, tmp_path):
    with server.LocalServer(log_path=tmp_path / "server.log") as other:
        assert {other.port, other.udp_port}.isdisjoint({livekit_server.port, livekit_server.udp_port})
        assert other.api_key != livekit_server.api_key and other.api_secret != livekit_server.api_secret
        assert doctor.problems(other.env())[0] == [] and doctor.problems(livekit_server.env())[0] == []
        found, _ = doctor.problems({**other.env(), "LIVEKIT_URL": livekit_server.url})  # keys are per server
        assert found and "rejected" in found[0]
    assert livekit_server.running


def test_a_startup_error_is_one_line(tmp_path, monkeypatch):
    """The server exits 0 on a bad configuration; the kit notices it died and says why."""
    monkeypatch.setattr(server, "config_yaml", lambda *args: "port: [not a port]\n")
    with pytest.raises(KitError, match="exited while starting") as e:
        server.LocalServer(log_path=tmp_path / "server.log", ready_timeout_s=10).start()
    assert "\n" not in str(e.value)


def test_env_file_is_private_and_loads(livekit_server, tmp_path, monkeypatch):
    path = tmp_path / "lk.env"
    path.write_text("old\n")
    path.chmod(0o644)
    dev_server.write_env_file(path, livekit_server)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dev_server.read_env_file(path) == livekit_server.env()
    for k in server.ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    assert dev_server.load_env_file(path) == sorted(server.ENV_VARS)
    assert os.environ["LIVEKIT_API_SECRET"] == livekit_server.api_secret
    sourced = subprocess.run(["bash", "-c", f"source {path} && echo $LIVEKIT_URL"], capture_output=True, text=True)
    assert sourced.stdout.strip() == livekit_server.url


def test_cli_server_never_prints_the_secret(tmp_path):
    env_file = tmp_path / "cli.env"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # its logs go there; the binary is found in the venv
    proc = subprocess.Popen([sys.executable, "-m", "kit", "server", "--env-file", str(env_file)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert env_file.exists(), proc.communicate(timeout=5)
        creds = dev_server.read_env_file(env_file)
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert doctor.problems(creds)[0] == []
        server_pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert creds["LIVEKIT_API_SECRET"] not in out + err
    assert f"source {env_file}" in out and "load_env_file" in out and creds["LIVEKIT_API_KEY"] in out
    assert server_pids and all(_gone(p) for p in server_pids)
    assert not env_file.exists()  # the credentials died with the server
    logs = list((tmp_path / "cache").rglob("server.log"))
    assert logs and all(creds["LIVEKIT_API_SECRET"] not in p.read_text() for p in logs)


def test_find_binary(tmp_path, monkeypatch):
    with pytest.raises(KitError, match="not an executable"):
        server.find_binary(tmp_path / "nope")
    monkeypatch.setattr(server, "venv_bin_dir", lambda: tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KitError, match="kit server --install"):
        server.find_binary()


def test_install_is_idempotent_and_needs_go_only_to_build(tmp_path, monkeypatch):
    built = install.go_cache_dir() / "bin" / "server"
    if server.version_or_none(built) != server.PINNED_VERSION:
        pytest.skip("no cached build (make setup builds it)")
    dest = install.install(bin_dir=tmp_path, go="/nonexistent/go", log=lambda *_: None)  # a copy of the cache: no Go run
    assert server.server_version(dest) == server.PINNED_VERSION
    mtime = dest.stat().st_mtime_ns
    said = []
    assert install.install(bin_dir=tmp_path, log=said.append) == dest and dest.stat().st_mtime_ns == mtime
    assert "is installed" in said[0]
    # No cache and no Go: one line that names the fix.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(install, "find_go", lambda: None)
    with pytest.raises(KitError, match="Go is not installed") as e:
        install.install(bin_dir=tmp_path / "other", log=lambda *_: None)
    assert "\n" not in str(e.value) and "go.dev" in str(e.value)
