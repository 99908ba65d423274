"""Installing the pinned livekit-server: built by Go from the module proxy into the kit's Go cache,
then copied into the virtualenv (`python -m kit server --install`, `make setup`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kit.config import KitError
from kit.live.server import BINARY_NAME, PINNED_VERSION, cache_home, venv_bin_dir, version_or_none

GO_PACKAGE = "github.com/livekit/livekit-server/cmd/server"


def go_cache_dir() -> Path:
    """GOMODCACHE (mod/), GOCACHE (build/), GOBIN (bin/) of the server build: ~/.cache/kit-go."""
    return cache_home() / "kit-go"


def find_go() -> str | None:
    return shutil.which("go") or next((g for g in ("/usr/local/go/bin/go",) if os.access(g, os.X_OK)), None)


def install(version: str = PINNED_VERSION, bin_dir: Path | None = None, go: str | None = None, log=print) -> Path:
    """Install livekit-server `version` into `bin_dir` (default: the virtualenv's bin/); returns its path.
    Skips the build when the cached one reports that version, and everything when the installed one does."""
    dest = Path(bin_dir or venv_bin_dir()) / BINARY_NAME
    if dest.exists() and version_or_none(dest) == version:
        log(f"{BINARY_NAME} {version} is installed: {dest}")
        return dest
    cache = go_cache_dir()
    built = cache / "bin" / "server"
    if version_or_none(built) != version:
        go = go or find_go()
        if not go:
            raise KitError(f"Go is not installed: install Go 1.24 or newer (https://go.dev/dl/) and put it on PATH, "
                           f"or put any {BINARY_NAME} on PATH and pass --server-bin")  # fmt: skip
        _go_install(go, version, cache, log)
        if version_or_none(built) != version:
            raise KitError(f"go install built {built}, but it does not report version {version}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{BINARY_NAME}.{os.getpid()}.tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, dest)  # atomic, and fine while an older copy is running
    log(f"installed {BINARY_NAME} {version}: {dest}")
    return dest


def _go_install(go: str, version: str, cache: Path, log) -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOMODCACHE": str(cache / "mod"), "GOCACHE": str(cache / "build"),
           "GOBIN": str(cache / "bin")}  # fmt: skip
    env.pop("GOFLAGS", None)
    cache.mkdir(parents=True, exist_ok=True)
    build_log = cache / "install.log"
    log(f"building {BINARY_NAME} {version} with {go} (the first build takes a few minutes; log: {build_log})")
    with open(build_log, "wb") as out:
        try:
            rc = subprocess.run([go, "install", f"{GO_PACKAGE}@v{version}"], env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        except OSError as e:
            raise KitError(f"cannot run {go}: {e.strerror}: install Go 1.24 or newer (https://go.dev/dl/)") from None
    if rc != 0:
        tail = [ln for ln in build_log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or ["no output"]
        raise KitError(f"go install {GO_PACKAGE}@v{version} failed (exit {rc}): {tail[0][:200]} (full log: {build_log})")
