"""The one event schema of the kit, a JSONL writer that flushes every line, and a reader.

Every process of a run (the runner, each job process) writes its own file under
`<run_dir>/events/`. Times are seconds since the run's start instant t0, on time.monotonic()
(system-wide on Linux, so comparable across processes). A crash loses nothing already written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

KINDS = (
    "run_start",  # runner: the room starts replaying at t = 0
    "job_start",  # a job's entrypoint started
    "participant_joined",  # a pipeline saw the participant join
    "speech_start",  # the pipeline's VAD declared start of speech
    "speech_end",  # the pipeline's VAD declared end of speech (the STT is called now)
    "recognized",  # one STT call finished: stt_cpu_s, infer_s, audio_s (empty texts too)
    "interim",  # a streaming STT's interim result: text, speech_start (of the turn it belongs to)
    "stt_sent",  # a streaming STT's stream closed: audio_s, the seconds of audio it sent
    "final",  # a final transcript reached the application
    "participant_left",  # the participant's track ended and its pipeline closed
    "speaker_switch",  # active_speaker: the session's input now follows this participant
    "vad_metrics",  # one participant's VAD work since the last vad_metrics event
    "turn_metrics",  # a session design: livekit-agents' own metrics of one user turn (lk_transcription_delay_s)
    "lk_stt_usage",  # a session design's session closed: audio_s, the STT audio livekit-agents' session.usage counts
    "uplink",  # live: a publisher's audio as it left: packets_sent, and packets_lost, jitter_s from the server's reports
    "worker_killed",  # live, --kill-worker: an agent worker and its job processes were killed (detail: which)
    "redispatched",  # live, --redispatch: the watchdog dispatched again the jobs of agents that left the room too soon (detail: how many)
    "job_end",
    "error",  # detail holds the reason
    "run_end",
)


@dataclass
class Event:
    """One line of the event log. Unused fields stay None."""

    t: float  # seconds since t0
    kind: str
    arch: str
    job: str
    pid: int
    participant: str | None = None
    text: str | None = None
    speech_start: float | None = None  # VAD span of the turn behind a final (seconds since t0)
    speech_end: float | None = None
    stt_cpu_s: float | None = None  # CPU seconds of the STT call(s)
    infer_s: float | None = None  # wall seconds of the inference itself (not the wait for the model)
    audio_s: float | None = None  # seconds of audio given to the STT
    queue_s: float | None = None  # recognized: seconds the turn waited for a free inference worker
    batch: int | None = None  # recognized: turns decoded together in its CTranslate2 batch
    vad_infer_s: float | None = None  # vad_metrics: silero inference seconds (wall, as silero reports) since the last one
    vad_inferences: int | None = None  # vad_metrics: silero inferences since the last one (audio windows processed)
    cold_start_s: float | None = None  # job_start: seconds from submission to the entrypoint running
    affinity: list[int] | None = None  # job_start: the cores the job's process may run on
    models_loaded: int | None = None  # job_start: Whisper models this process holds (1: it reused its preloaded one)
    proc_cpu_s: float | None = None  # job_end: CPU seconds of the job's process over its life
    kit_cpu_s: float | None = None  # job_end: CPU seconds the kit itself spent there (the event log)
    lk_transcription_delay_s: float | None = None  # turn_metrics: livekit-agents' transcription_delay of the turn
    packets_sent: int | None = None  # uplink: RTP packets the publisher sent
    packets_lost: int | None = None  # uplink: of them, lost on the way (the server's RTCP receiver report)
    jitter_s: float | None = None  # uplink: interarrival jitter the server reported
    wall: float | None = None  # live mode: time.time() when the event was written
    detail: str | None = None


COLUMNS = [f.name for f in dataclasses.fields(Event)]


class EventLog:
    """Appends events of one process (one job) to one JSONL file, a line at a time."""

    def __init__(self, path: Path, *, t0: float, arch: str, job: str, wall_clock: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.t0 = t0
        self.wall_clock = wall_clock  # live mode: every event also records `wall` (kit/live/common.py, "The clock")
        self.arch = arch
        self.job = job
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()  # STT threads and the event loop both write
        self.cpu_s = 0.0  # CPU this log spent writing: part of the kit's own overhead

    def now(self) -> float:
        return time.monotonic() - self.t0

    def emit(self, kind: str, *, t: float | None = None, **fields) -> Event:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        started = time.thread_time()
        if self.wall_clock:
            fields.setdefault("wall", time.time())
        ev = Event(t=self.now() if t is None else t, kind=kind, arch=self.arch, job=self.job, pid=os.getpid(), **fields)
        line = json.dumps({k: v for k, v in dataclasses.asdict(ev).items() if v is not None}, ensure_ascii=False)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()
            self.cpu_s += time.thread_time() - started
        return ev

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_events(path: Path) -> pd.DataFrame:
    """All events of a run directory (or of one .jsonl file), sorted by time, schema columns.

    A truncated last line (a process killed mid-write) is skipped; anything else malformed is an error.
    """
    path = Path(path)
    files = sorted((path / "events").glob("*.jsonl")) if path.is_dir() else [path]
    rows = []
    for f in files:
        lines = f.read_text(encoding="utf-8").split("\n")
        unfinished = len(lines) - 1  # text after the last newline: a writer killed mid-line
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if i == unfinished:
                    continue
                raise ValueError(f"{f}:{i + 1}: malformed event line") from None
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values("t", kind="stable").reset_index(drop=True)
