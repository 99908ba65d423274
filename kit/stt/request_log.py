"""The STT service's per-request log: a JSONL line per request to the transcription route (errors
too) and one per interim or final of a stream; `RequestLog` writes it, `read_log` reads it.

Columns: mono (time.monotonic() at arrival, comparable with the run's events on one machine), wall,
request_id, participant (the `X-Kit-Participant` header), status, error, response_format, model (as
the client named it), api (openai, kit-stream or inference), job (LiveKit Inference: the client's
X-LiveKit-Job-ID header, sent inside a job), bytes (of the file), sample_rate, audio_s, queue_s
(waiting for an inference worker), infer_s (the inference itself, wall), cpu_s (its inference CPU),
batch (turns decoded together), handle_s (arrival to response); a stream's rows: audio_from and audio_to, the
monotonic instants the stream received the first and last sample of the row's audio (a turn, or the whole
stream), from its first sample's arrival and the samples since (a client streams in real time).
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

SERVICE_LOG = "stt-service.jsonl"  # in a run directory: the per-request log of the run's service
STREAM_ROWS = ("stream-interim", "stream-final", "stream-end")  # a stream's rows (response_format): its turns, its total


class RequestLog:
    """The per-request JSONL log (module docstring), a flushed line per request; None path: no log."""

    def __init__(self, path: Path | None) -> None:
        self._file = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, row: dict) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_log(path: Path):
    """The per-request log as a DataFrame (a truncated last line, from a killed service, skipped)."""
    import pandas as pd

    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def served_names(log, since: float, until: float, column: str) -> str:
    """The distinct values of a column ("api", "model") over the answered requests between two monotonic
    instants, comma-separated ("" if none): which protocol and model a design's STT clients used."""
    if log is None:
        return ""
    rows = log[log["mono"].between(since, until) & (log["status"] == 200)]
    return ", ".join(sorted(rows[column].dropna().astype(str).unique()))


def run_service_log(run_dir: Path):
    """The per-request log of a run's own STT service (SERVICE_LOG in its directory), None without one."""
    path = Path(run_dir) / SERVICE_LOG
    return read_log(path) if path.is_file() else None


def stt_clients(log, since: float, until: float) -> tuple[str, str]:
    """(api, model) the STT clients used between two instants, from a service log ("" if none)."""
    return served_names(log, since, until, "api"), served_names(log, since, until, "model")


def refusals(log, since: float, until: float) -> list[str]:
    """One line per distinct refused request in a service log (None: none) between two monotonic instants
    (a wrong token, a model the stand-in does not serve, a bad stream): a problem of whoever sent it."""
    if log is None:
        return []
    bad = log[log["mono"].between(since, until) & (log["status"] >= 400)]
    return [f"the STT service refused {n} {api} request(s) ({int(status)}): {error}"
            for (api, status, error), n in bad.groupby(["api", "status", "error"], dropna=False).size().items()]  # fmt: skip


LOG_COLUMNS = ["mono", "wall", "request_id", "participant", "status", "error", "response_format", "model", "api", "job",
               "bytes", "sample_rate", "audio_s", "queue_s", "infer_s", "cpu_s", "batch", "handle_s",
               "audio_from", "audio_to"]  # fmt: skip
