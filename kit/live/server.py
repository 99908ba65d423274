"""The one place that owns the lives of local LiveKit servers: install, start, ready, stop; one
server or a cluster.

- **Install** (kit/live/install.py, `python -m kit server --install`): the Go module
  `github.com/livekit/livekit-server` pinned to v1.13.5 (later versions carry `replace` lines that
  `go install pkg@version` refuses), built with CGO_ENABLED=0 into a cache under GO_CACHE_DIR and
  copied into the virtualenv's bin/. Any other `livekit-server` works too (PATH, `--server-bin`);
  the kit records the version it ran against.
- **Start** (`LocalServer`): one node on free loopback ports, with an API key and a 43-character
  secret generated for it; no caller's LIVEKIT_*/REDIS_* variable reaches it, and the keys reach it
  in its environment (LIVEKIT_KEYS), never on its command line or in its config file. Nothing
  listens beyond 127.0.0.1: `bind_addresses`, `rtc.ips.includes 127.0.0.1/32` + the loopback
  candidate for the single-port UDP mux, no ICE/TCP port (the server would open it on every
  interface). The server never logs a configured secret.
- **A cluster** (`LocalCluster`, `--nodes N`): LiveKit's own multi-node mode: `redis-server` on
  loopback (nothing persisted) and N nodes sharing it and one key pair.
- **Ready**: `GET /` answers 200 (406 before); a startup error exits 0, so readiness also watches
  the process; a port taken between choosing and binding it means a retry.
- **Stop**: SIGTERM (the server drains), a second SIGTERM (forced), SIGKILL; nothing is left.
  Started from the main thread, a node also gets SIGTERM from the kernel if the kit dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kit.config import KitError

PINNED_VERSION = "1.13.5"
BINARY_NAME = "livekit-server"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 8.0  # per stage: SIGTERM (drain), second SIGTERM (forced), SIGKILL
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
ENV_VARS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
# Variables the server reads (urfave/cli sources: LIVEKIT_<config path>, REDIS_HOST, ...); none may leak in.
_SERVER_ENV = re.compile(r"^(LIVEKIT_|REDIS_|NODE_IP$|UDP_PORT$)")


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def kit_cache_dir() -> Path:
    """Where `kit server` keeps its env file and logs: ~/.cache/livekit-transcription-kit."""
    return cache_home() / "livekit-transcription-kit"


def venv_bin_dir() -> Path:
    return Path(sys.prefix) / "bin"


# --- the binary ---------------------------------------------------------------------------------------


def find_binary(server_bin: str | os.PathLike | None = None) -> Path:
    """--server-bin, else the virtualenv's bin/livekit-server, else livekit-server on PATH."""
    if server_bin:
        p = Path(server_bin).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise KitError(f"--server-bin {server_bin}: not an executable file")
        return p.resolve()
    venv = venv_bin_dir() / BINARY_NAME
    if venv.is_file() and os.access(venv, os.X_OK):
        return venv
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    raise KitError(f"no {BINARY_NAME} found: run `python -m kit server --install` (needs Go), "
                   f"or put one on PATH / pass --server-bin")  # fmt: skip


_versions: dict[tuple[str, float], str] = {}


def server_version(binary: str | os.PathLike) -> str:
    """What `livekit-server --version` reports ("livekit-server version 1.13.5" -> "1.13.5")."""
    p = Path(binary)
    key = (str(p), p.stat().st_mtime if p.exists() else 0.0)
    if key not in _versions:
        try:
            out = subprocess.run([str(p), "--version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KitError(f"{p} --version failed: {e}") from None
        m = re.search(r"version\s+v?(\S+)", out.stdout + out.stderr)
        if out.returncode != 0 or not m:
            raise KitError(f"{p} --version did not report a version (exit {out.returncode})")
        _versions[key] = m.group(1)
    return _versions[key]


def version_or_none(binary: Path) -> str | None:
    try:
        return server_version(binary) if binary.is_file() else None
    except KitError:
        return None


# --- a running server ----------------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM, avoid: set[int] = frozenset()) -> int:
    """A port free on 127.0.0.1 right now (TCP or UDP)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise KitError("cannot find a free port on 127.0.0.1")


def config_yaml(port: int, udp_port: int, relay_ip: str | None = None, redis: str | None = None) -> str:
    """The server's configuration (JSON is YAML): everything but the keys, which come from the environment.
    `relay_ip`: advertise that address as the only candidate, ICE-lite (kit/live/net.py: the lossy network).
    `redis`: host:port of the Redis a cluster's nodes share (multi-node mode)."""
    cfg = {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "rtc": {
            "udp_port": udp_port,  # one UDP port, muxed, on the loopback address only (ips.includes)
            "tcp_port": 0,  # ICE/TCP would listen on every interface whatever bind_addresses says
            "use_external_ip": False,
            "node_ip": "127.0.0.1",
            "enable_loopback_candidate": True,
            "ips": {"includes": ["127.0.0.1/32"]},
            "stun_servers": [],
        },
        "logging": {"level": "info", "json": False},
        "room": {"empty_timeout": 60, "departure_timeout": 10},
    }
    if relay_ip:
        cfg["rtc"].update(node_ip=relay_ip, use_ice_lite=True)
    if redis:
        cfg["redis"] = {"address": redis}
    return json.dumps(cfg, indent=1) + "\n"


def _set_pdeathsig() -> None:  # in the child, before exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class LocalServer:
    """A private livekit-server on loopback: `with LocalServer(log_path=run_dir / "server.log") as srv:`.

    Attributes once started: url (ws://127.0.0.1:PORT), http_url, port, udp_port, api_key,
    api_secret (never in repr, logs or files the kit writes, except the env file it is asked for),
    version, pid, log_path, config_path; env() gives the three LIVEKIT_* variables.
    """

    def __init__(self, server_bin: str | os.PathLike | None = None, log_path: str | os.PathLike | None = None,
                 ready_timeout_s: float = READY_TIMEOUT_S, relay_ip: str | None = None, redis: str | None = None,
                 keys: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.relay_ip, self.redis = relay_ip, redis  # config_yaml
        self.keys = keys  # a cluster's shared (key, secret); None: generated at start
        self.binary = find_binary(server_bin)
        self.version = server_version(self.binary)
        self._log_path = Path(log_path) if log_path else None
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.port = self.udp_port = 0
        self.api_key = ""
        self.api_secret = ""
        self.log_path: Path | None = None
        self.config_path: Path | None = None
        self._tmpdir: str | None = None
        self._log = None

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.running else "stopped"
        return f"LocalServer({self.url or '-'}, key {self.api_key or '-'}, {state}, livekit-server {self.version})"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}" if self.port else ""

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        return {"LIVEKIT_URL": self.url, "LIVEKIT_API_KEY": self.api_key, "LIVEKIT_API_SECRET": self.api_secret}

    # The interface a run uses, the same for one server and a cluster (LocalCluster)
    nodes = property(lambda self: [self])
    agent_url = property(lambda self: self.url)  # where agent workers register
    pids = property(lambda self: [self.pid] if self.pid else [])

    def stopped(self) -> str | None:
        """Why the server is gone (None while it runs)."""
        return None if self.running else f"exit code {self.proc.returncode if self.proc else None}: {self.log_problem()} (log: {self.log_path})"

    @property
    def node_id(self) -> str | None:
        """The node id it chose (its log's first line), e.g. ND_axQcVPJNkGsS."""
        m = re.search(r'"nodeID": "(ND_\w+)"', self.log_path.read_text(errors="replace")) if self.log_path else None
        return m.group(1) if m else None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> LocalServer:
        if self.running:
            return self
        if self._log_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="kit-livekit-")
        log_path = self._log_path or Path(self._tmpdir) / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path, self.config_path = log_path, log_path.with_suffix(".yaml")
        self.api_key, self.api_secret = self.keys or new_keys()
        for attempt in range(START_ATTEMPTS):
            self.port = free_port(socket.SOCK_STREAM)
            self.udp_port = free_port(socket.SOCK_DGRAM, avoid={self.port})
            try:
                self._spawn()
                self._wait_ready()
                return self
            except _PortTaken:
                self._kill()
                if attempt == START_ATTEMPTS - 1:
                    raise KitError(f"livekit-server could not bind its ports {START_ATTEMPTS} times (log: {log_path})") from None
            except BaseException:
                self.stop()
                raise
        return self

    def _spawn(self) -> None:
        self.config_path.write_text(config_yaml(self.port, self.udp_port, self.relay_ip, self.redis), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not _SERVER_ENV.match(k)}
        env["LIVEKIT_KEYS"] = f"{self.api_key}: {json.dumps(self.api_secret)}"  # YAML "key: secret", quoted
        self._log = open(self.log_path, "ab")
        self._log.write(f"--- kit: {self.binary} {self.version} on {self.url}, udp {self.udp_port}\n".encode())
        self._log.flush()
        main_thread = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            [str(self.binary), "--config", str(self.config_path)], env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,  # Ctrl-C reaches the kit, which stops it
            preexec_fn=_set_pdeathsig if main_thread and sys.platform == "linux" else None,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # a startup error exits 0: any exit is a failure
                problem = self.log_problem()
                if "address already in use" in problem:
                    raise _PortTaken
                raise KitError(f"livekit-server exited while starting (code {self.proc.returncode}): {problem} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(self.http_url + "/", timeout=1.0) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError:  # 406 until it serves
                pass
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise KitError(f"livekit-server did not answer 200 at {self.http_url}/ within {self.ready_timeout_s:.0f} s (log: {self.log_path})")

    def log_problem(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith("--- kit:")]
        except OSError:
            return "no log"
        errors = [ln for ln in lines if re.search(r"error|fatal|panic|could not|failed", ln, re.I)]
        line = (errors or lines or ["no output"])[-1].strip()
        return line.replace(self.api_secret, "[redacted]")[:300] if self.api_secret else line[:300]

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait; a second SIGTERM (forced), wait; SIGKILL. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class _PortTaken(Exception):
    pass


def new_keys() -> tuple[str, str]:
    """A fresh API key and a 43-character secret (PyJWT warns under 32 bytes)."""
    return f"APIkit{secrets.token_hex(5)}", secrets.token_urlsafe(32)


# --- a cluster: Redis and nodes sharing it ------------------------------------------------------------------


class LocalRedis:
    """redis-server on a free loopback port, nothing persisted: a cluster's shared state for one run."""

    def __init__(self, log_path: Path) -> None:
        self.log_path, self.port, self.proc = log_path, 0, None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalRedis:
        binary = shutil.which("redis-server")
        if not binary:
            raise KitError("no redis-server: a cluster needs Debian's redis-server package (apt-get install redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--save", "",
             "--appendonly", "no", "--dir", str(self.log_path.parent)], stdin=subprocess.DEVNULL,
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.1)
        self.__exit__()
        raise KitError(f"redis-server did not answer on {self.address} (log: {self.log_path})")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
            self.proc.kill()  # if it is still there (nothing once it has exited)
            self.proc.wait()


class LocalCluster:
    """LiveKit's own multi-node mode on loopback: Redis and `n` livekit-servers sharing it and one key
    pair. The room's side joins through the first node (`url`), agent workers register through the
    last (`agent_url`), so signalling, dispatch and media cross nodes. Same interface as LocalServer."""

    def __init__(self, n: int, server_bin: str | os.PathLike | None = None, log_dir: Path | None = None) -> None:
        if n < 2:
            raise KitError(f"--nodes makes a cluster of at least 2 nodes, got {n}")
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="kit-cluster-"))
        self.redis = LocalRedis(self.log_dir / "redis.log")
        self.api_key, self.api_secret = keys = new_keys()
        logs = [self.log_dir / ("server.log" if i == 0 else f"server-{i}.log") for i in range(n)]
        self.nodes = [LocalServer(server_bin, log_path=log, keys=keys, redis="") for log in logs]
        self.version = self.nodes[0].version
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> LocalCluster:
        with self._stack as stack:
            stack.enter_context(self.redis)
            for node in self.nodes:
                node.redis = self.redis.address
                stack.enter_context(node)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()  # nodes first, Redis last

    url = property(lambda self: self.nodes[0].url)
    agent_url = property(lambda self: self.nodes[-1].url)
    pids = property(lambda self: [p for node in self.nodes for p in node.pids] + [self.redis.proc.pid])
    running = property(lambda self: self.stopped() is None)

    def env(self) -> dict[str, str]:
        return self.nodes[0].env()

    def stopped(self) -> str | None:
        for i, node in enumerate(self.nodes):
            if not node.running:
                return f"node {i} stopped: {node.stopped()}"
        return None if self.redis.proc.poll() is None else f"redis-server stopped (see {self.redis.log_path.name})"


@contextlib.contextmanager
def private_server(run_dir: Path, server_bin: str | None, net=None, nodes: int = 1):
    """A livekit-server for this run only: its log in the run directory, its credentials in this
    process's environment (so the agent workers started here inherit them), both undone afterwards.
    `net` (a kit.live.net.NetImpairment): every client reaches it through the impairment relay.
    `nodes` > 1: a LocalCluster; the agent workers started here get the last node's URL."""
    from kit.live.common import ENV_VARS  # the rtc stack: not for `kit server` alone
    from kit.live.net import RELAY_IP, NetRelay

    saved = {k: os.environ.get(k) for k in ENV_VARS}
    with contextlib.ExitStack() as stack:
        if nodes > 1 and net:
            raise KitError("--net relays one node's traffic: give it without --nodes")
        srv = stack.enter_context(LocalCluster(nodes, server_bin, run_dir) if nodes > 1 else
                                  LocalServer(server_bin, log_path=run_dir / "server.log", relay_ip=RELAY_IP if net else None))
        if net:  # stopped before the server; its counts in net-relay.json
            stack.enter_context(NetRelay(net, srv.udp_port, run_dir / "net-relay.json"))
        os.environ.update(srv.env(), LIVEKIT_URL=srv.agent_url)  # the room's side takes srv.url
        try:
            yield srv
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
