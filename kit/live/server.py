"""The one place that owns a local LiveKit server's life: install it, start it, wait until it is ready, stop it.

- **Install** (kit/live/install.py, `python -m kit server --install`): the server is the Go module
  `github.com/livekit/livekit-server`, pinned to v1.13.5 (v1.13.0/.1 and later main carry `replace`
  lines in go.mod, which `go install pkg@version` refuses). `CGO_ENABLED=0 go install` builds it
  into a cache (GOMODCACHE, GOCACHE, GOBIN under GO_CACHE_DIR, so later builds are instant) and the
  binary is copied into the virtualenv's bin/ as `livekit-server`. Idempotent: nothing happens when
  the installed binary already reports the pinned version. Any other `livekit-server` works too
  (on PATH, or `--server-bin`); the kit records the version it ran against.
- **Start** (`LocalServer`): one single-node server (no Redis: REDIS_HOST and every LIVEKIT_*
  variable of the caller are kept out of its environment) on free loopback ports, with an API key
  and a 43-character secret generated for this start. The configuration file (written next to the
  log) holds no secret: the keys reach the server in its environment (LIVEKIT_KEYS), which only
  this user can read, never on its command line. Nothing listens beyond 127.0.0.1:
  `bind_addresses` for HTTP/WebSocket, `rtc.ips.includes 127.0.0.1/32` + the loopback candidate for
  the single-port UDP mux, and no ICE/TCP port (`rtc.tcp_port: 0`: the server opens that one on
  every interface, ignoring bind_addresses). The server never logs a configured secret (it logs
  the placeholder `secret` only in --dev mode without keys, which the kit never uses).
- **Ready**: `GET http://127.0.0.1:PORT/` answers 200 once the server serves (406 before). A
  startup error is printed and the process exits with code 0, so readiness also watches that the
  process is alive; a port taken between choosing it and the server binding it means a retry.
- **Stop**: SIGTERM (the server waits for participants to leave), then a second SIGTERM (forced),
  then SIGKILL; no process is left. Started from the main thread, the server also gets SIGTERM
  from the kernel if this process dies (PR_SET_PDEATHSIG).
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
from collections.abc import Mapping
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


# --- install -------------------------------------------------------------------------------------------


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


def config_yaml(port: int, udp_port: int, relay_ip: str | None = None) -> str:
    """The server's configuration (JSON is YAML): everything but the keys, which come from the environment.
    `relay_ip`: advertise that address as the only candidate, ICE-lite (kit/live/net.py: the lossy network)."""
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
                 ready_timeout_s: float = READY_TIMEOUT_S, relay_ip: str | None = None) -> None:  # fmt: skip
        self.relay_ip = relay_ip  # clients reach it through a relay there (config_yaml)
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
        self.api_key = f"APIkit{secrets.token_hex(5)}"
        self.api_secret = secrets.token_urlsafe(32)  # 43 characters (PyJWT warns under 32 bytes)
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
        self.config_path.write_text(config_yaml(self.port, self.udp_port, self.relay_ip), encoding="utf-8")
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
                problem = self._log_problem()
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

    def _log_problem(self) -> str:
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


# --- the env file ---------------------------------------------------------------------------------------


def _creds_env(creds: Any) -> dict[str, str]:
    if isinstance(creds, Mapping):
        return {k: str(creds[k]) for k in ENV_VARS}
    return {"LIVEKIT_URL": creds.url, "LIVEKIT_API_KEY": creds.api_key, "LIVEKIT_API_SECRET": creds.api_secret}


def write_env_file(path: str | os.PathLike, creds: Any) -> Path:
    """The three LIVEKIT_* variables as `export NAME=value` lines, readable by this user only (0600).
    `creds`: a LocalServer, kit.live.common.Credentials or a mapping of the three variables."""
    import shlex

    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "# LiveKit credentials written by `python -m kit server`; load with: source " + shlex.quote(str(path)) + "\n"
    body += "".join(f"export {k}={shlex.quote(v)}\n" for k, v in _creds_env(creds).items())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """The variables of an env file written by write_env_file (or any `[export ]NAME=value` file)."""
    import shlex

    out = {}
    for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if sep:
            out[name.strip()] = " ".join(shlex.split(value)) if value.strip() else ""
    return out


def load_env_file(path: str | os.PathLike) -> list[str]:
    """Put the file's variables into os.environ (a notebook's `source`); returns their names."""
    env = read_env_file(path)
    os.environ.update(env)
    return sorted(env)


# --- `python -m kit server` ---------------------------------------------------------------------------------


def serve(server_bin: str | None = None, env_file: str | os.PathLike | None = None, out=print) -> int:
    """Run a dev server until Ctrl-C / SIGTERM; write the env file while it runs (removed at the end)."""
    env_path = Path(env_file).expanduser() if env_file else kit_cache_dir() / "livekit.env"
    log_dir = Path(tempfile.mkdtemp(prefix="server-", dir=_mkdir(kit_cache_dir())))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    srv = LocalServer(server_bin, log_path=log_dir / "server.log")
    try:
        srv.start()
        write_env_file(env_path, srv)
        q = _shell_quote(env_path)
        out(f"livekit-server {srv.version} (pid {srv.pid}) at {srv.url}, loopback only; API key {srv.api_key}\n"
            f"credentials: {env_path} (mode 0600, only you can read it; removed when the server stops)\n"
            f"  shell:    source {q}\n"
            f"  notebook: import kit.live.server; kit.live.server.load_env_file({str(env_path)!r})"
            f"   (or %env NAME=value for each line of the file)\n"
            f"log: {srv.log_path}\n"
            f"Ctrl-C to stop.", flush=True)  # fmt: skip
        while not stop.wait(0.5):
            if not srv.running:
                raise KitError(f"livekit-server exited (code {srv.proc.returncode}): {srv._log_problem()} (log: {srv.log_path})")
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        srv.stop()
        with contextlib.suppress(FileNotFoundError):
            if srv.api_secret and srv.api_secret in env_path.read_text(encoding="utf-8"):
                env_path.unlink()  # its credentials died with the server
    out("livekit-server stopped", flush=True)
    return 0


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _shell_quote(p: Path) -> str:
    import shlex

    return shlex.quote(str(p))


@contextlib.contextmanager
def private_server(run_dir: Path, server_bin: str | None, net=None):
    """A livekit-server for this run only: its log in the run directory, its credentials in this
    process's environment (so the agent workers started here inherit them), both undone afterwards.
    `net` (a kit.live.net.NetImpairment): every client reaches it through the impairment relay."""
    from kit.live.common import ENV_VARS  # the rtc stack: not for `kit server` alone
    from kit.live.net import RELAY_IP, NetRelay

    saved = {k: os.environ.get(k) for k in ENV_VARS}
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(LocalServer(server_bin, log_path=run_dir / "server.log", relay_ip=RELAY_IP if net else None))
        if net:  # stopped before the server; its counts in net-relay.json
            stack.enter_context(NetRelay(net, srv.udp_port, run_dir / "net-relay.json"))
        os.environ.update(srv.env())
        try:
            yield srv
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
