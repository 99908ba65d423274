"""`python -m kit server`: a local dev server until Ctrl-C, and the env file that hands its
credentials to a shell or a notebook (written 0600, removed when the server stops)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.config import KitError
from kit.live.server import ENV_VARS, LocalCluster, LocalServer, kit_cache_dir

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


def serve(server_bin: str | None = None, env_file: str | os.PathLike | None = None, out=print, nodes: int = 1) -> int:
    """Run a dev server (`nodes` > 1: a cluster) until Ctrl-C / SIGTERM; write the env file while it
    runs (removed at the end)."""
    env_path = Path(env_file).expanduser() if env_file else kit_cache_dir() / "livekit.env"
    log_dir = Path(tempfile.mkdtemp(prefix="server-", dir=_mkdir(kit_cache_dir())))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    srv = LocalCluster(nodes, server_bin, log_dir) if nodes > 1 else LocalServer(server_bin, log_path=log_dir / "server.log")
    try:
        srv.__enter__()
        write_env_file(env_path, srv)
        q = _shell_quote(env_path)
        cluster = (f"a cluster of {nodes} nodes sharing redis-server at {srv.redis.address}: "
                   f"{', '.join(n.url for n in srv.nodes)} (any node serves any room)\n") if nodes > 1 else ""  # fmt: skip
        out(f"livekit-server {srv.version} (pids {' '.join(map(str, srv.pids))}) at {srv.url}, loopback only; API key {srv.api_key}\n"
            f"{cluster}"
            f"credentials: {env_path} (mode 0600, only you can read it; removed when the server stops)\n"
            f"  shell:    source {q}\n"
            f"  notebook: import kit.live.dev_server; kit.live.dev_server.load_env_file({str(env_path)!r})"
            f"   (or %env NAME=value for each line of the file)\n"
            f"logs: {log_dir}\n"
            f"Ctrl-C to stop.", flush=True)  # fmt: skip
        while not stop.wait(0.5):
            if not srv.running:
                raise KitError(f"livekit-server exited: {srv.stopped()}")
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        srv.__exit__(None, None, None)
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
