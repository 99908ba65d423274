"""Speech-to-text, one module per concern: the model's resolution (`model`), the inference engine
(`engine`), the livekit-agents STT plugins (`plugins`) and the speed benchmark (`bench`). The
--stt spec itself is parsed in kit.config (`SttSpec`), since the run's config holds it.

The public names are re-exported here: `from kit.stt import make_stt`."""

from kit.stt.bench import benchmark, breakdown, parse_settings, room_turns
from kit.stt.engine import (
    Transcript,
    Whisper,
    inference_cpu_seconds,
    load_whisper,
    loaded_models,
    usable_cores,
)
from kit.stt.model import (
    BUNDLED_PACKAGE,
    BUNDLED_SHA256,
    SIZE_NAMES,
    WHISPER_RATE,
    WHISPER_WINDOW_S,
    ModelError,
    ModelInfo,
    resolve_model,
)  # fmt: skip
from kit.stt.plugins import (
    SERVICE_API_KEY,
    SERVICE_HEADERS,
    SERVICE_MODEL,
    SERVICE_PARTICIPANT_HEADER,
    STREAM_PATH,
    STREAM_RATE,
    DelaySTT,
    FasterWhisperSTT,
    Recognition,
    ServiceSpeechStream,
    ServiceSTT,
    StreamingSTT,
    calibration_text,
    load_service_client,
    make_stt,
)  # fmt: skip

__all__ = [
    "benchmark", "breakdown", "parse_settings", "room_turns", "Transcript", "Whisper", "inference_cpu_seconds", "load_whisper", "loaded_models", "usable_cores",
    "BUNDLED_PACKAGE", "BUNDLED_SHA256", "SIZE_NAMES", "WHISPER_RATE", "WHISPER_WINDOW_S", "ModelError", "ModelInfo",
    "resolve_model", "SERVICE_API_KEY", "SERVICE_HEADERS", "SERVICE_MODEL", "SERVICE_PARTICIPANT_HEADER", "STREAM_PATH",
    "STREAM_RATE", "DelaySTT", "FasterWhisperSTT", "Recognition", "ServiceSpeechStream", "ServiceSTT", "StreamingSTT",
    "calibration_text", "load_service_client", "make_stt",
]  # fmt: skip
