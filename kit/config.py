"""The one configuration object of a run, typed and validated once: what the kit runs, on which room,
with which settings; and its two forms outside Python: command-line flags and JSON (run.json)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SCENARIOS_DIR = DATA_DIR / "scenarios"
DEFAULT_SCENARIO = "standup-4"
DEFAULT_RESULTS_DIR = Path("results")
DEFAULT_ARCHS = ("multi_session", "participant_entrypoint", "multi_dispatch")


class KitError(Exception):
    """A user-facing error: the CLI prints its one-line message and exits with code 2."""


# --- the STT spec ------------------------------------------------------------------------------------

STT_SPECS = ("'whisper', 'delay:SECONDS' (e.g. delay:0.5), 'service', 'service:URL', 'stream', 'stream:URL', "
             "'stream-delay:SECONDS' or 'inference[:MODEL]' (e.g. inference:deepgram/nova-3)")  # fmt: skip
INFERENCE_MODEL = "deepgram/nova-3"  # --stt inference: the model LiveKit's own examples ask LiveKit Inference for


@dataclass(frozen=True)
class SttSpec:
    """What --stt names: kind "whisper" | "delay" | "service" | "stream" | "stream-delay" | "inference";
    the service's base URL (service/stream/inference: "" when the run starts the service); the
    calibration delay, s; the model a LiveKit Inference client asks for (inference).
    `str(spec)` is its --stt form; `SttSpec.parse(text)` the one parser."""

    kind: str
    url: str | None = None
    delay: float | None = None
    model: str | None = None

    @classmethod
    def parse(cls, text: str) -> SttSpec:
        """The one parser of --stt (KitError on anything else)."""
        kind, sep, value = str(text).partition(":")
        if text == "whisper":
            return cls("whisper")
        if kind == "inference":  # inference[:MODEL][@URL] (the URL: the form a run hands its jobs)
            model, _, url = value.partition("@")
            if url and not url.startswith(("http://", "https://")):
                raise KitError(f"--stt inference:MODEL@URL needs an http(s) base URL, got {text!r}")
            if (sep and not model) or any(c.isspace() for c in model):
                raise KitError(f"--stt inference:MODEL needs a model name such as {INFERENCE_MODEL}, got {text!r}")
            return cls("inference", url=url, model=model or INFERENCE_MODEL)
        if kind in ("service", "stream") and not sep:
            return cls(kind, url="")
        if kind in ("service", "stream"):
            if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
                raise KitError(f"--stt {kind}:URL needs an http(s) base URL, e.g. {kind}:http://127.0.0.1:8000/v1, got {text!r}")
            return cls(kind, url=value)
        if kind in ("delay", "stream-delay") and sep:
            try:
                delay = float(value)
            except ValueError:
                delay = -1.0
            if 0 <= delay < float("inf"):
                return cls(kind, url="" if kind == "stream-delay" else None, delay=delay)
        raise KitError(f"unknown STT {text!r}: use {STT_SPECS}")

    def __str__(self) -> str:
        if self.kind in ("delay", "stream-delay"):
            return f"{self.kind}:{self.delay:g}"
        if self.kind == "inference":
            return f"inference:{self.model}" + (f"@{self.url}" if self.url else "")
        return f"{self.kind}:{self.url}" if self.url else self.kind

    @property
    def streaming(self) -> bool:
        return self.kind in ("stream", "stream-delay", "inference")

    @property
    def calibration(self) -> bool:
        """A calibration STT: answers after a fixed delay, no model, no words worth a WER."""
        return self.kind in ("delay", "stream-delay")

    @property
    def uses_service(self) -> bool:
        """The STT is reached through a service (the kit's, started by the run, or one at a URL)."""
        return self.url is not None

    @property
    def needs_service_start(self) -> bool:
        """The run starts the kit's STT service and hands its jobs the URL."""
        return self.url == ""

    @property
    def run_loads_model(self) -> bool:
        """The run's own processes load the model: the job processes (whisper) or the service the
        run starts (service, stream); not a calibration STT nor a service given by URL."""
        return self.kind == "whisper" or (self.kind in ("service", "stream", "inference") and self.url == "")

    @property
    def placement(self) -> str:
        """Where inference runs: "service" (a shared STT service, batch or streaming), "in-process"
        (each job process's own model) or "none" (a calibration STT)."""
        if self.kind in ("service", "stream", "inference"):
            return "service"
        return "in-process" if self.kind == "whisper" else "none"

    def served_at(self, url: str) -> SttSpec:
        """This spec once the run's service is up at `url`: what the jobs are given."""
        if self.kind == "inference":
            return SttSpec("inference", url=url, model=self.model)
        return SttSpec("stream" if self.streaming else "service", url=url)


# --- the run's configuration -------------------------------------------------------------------------


ADAPTIVE_GATE_MARGIN_DB = 8.0  # --vad-gate auto: loud is this far above the track's own noise floor (docs/cost-and-scaling.md)


@dataclass(frozen=True)
class VADSettings:
    """Silero VAD parameters, identical for every participant and architecture."""

    min_silence_duration: float = 0.55
    min_speech_duration: float = 0.05
    prefix_padding_duration: float = 0.5
    activation_threshold: float = 0.5
    # --vad-gate (kit/room/gate.py): silero skips a participant's quiet frames once the silence that ends a
    # turn has passed. Quiet: less than gate_margin_db above the track's own noise floor (--vad-gate auto,
    # the default), or below gate_dbfs (--vad-gate DBFS, with gate_margin_db None). Neither (None, None,
    # --vad-gate off): every frame.
    gate_dbfs: float | None = None
    gate_margin_db: float | None = ADAPTIVE_GATE_MARGIN_DB

    def __post_init__(self) -> None:
        if self.gate_dbfs is not None and self.gate_margin_db is not None:
            raise KitError("the VAD gate is a fixed floor or adaptive, not both")
        if not 0.05 <= self.min_silence_duration <= 5:
            raise KitError(f"--min-silence is the silence that ends a turn, 0.05 to 5 s, got {self.min_silence_duration:g}")
        if not 0 < self.activation_threshold < 1:
            raise KitError(f"--activation-threshold is silero's speech probability, between 0 and 1, got {self.activation_threshold:g}")
        if not 0 <= self.prefix_padding_duration <= 2:
            raise KitError(f"--prefix-padding is the audio kept before a turn's start, 0 to 2 s, got {self.prefix_padding_duration:g}")

    @property
    def gate(self) -> str:
        """The gate as --vad-gate says it: 'auto', 'off' or a level in dBFS."""
        return "auto" if self.gate_margin_db is not None else "off" if self.gate_dbfs is None else f"{self.gate_dbfs:g}"


# --- the network (live) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetImpairment:
    """`--net`: what each participant's uplink does to its audio packets in a live run (kit/live/net.py
    applies it; console mode has no network). `str(net)` is its --net form, `parse` the one parser."""

    loss: float = 0.0  # share of packets lost, 0..1
    burst: float = 0.0  # mean length of a loss burst in packets (Gilbert-Elliott); 0: independent losses
    delay_ms: float = 0.0  # one-way delay added to every packet
    jitter_ms: float = 0.0  # each packet's delay varies uniformly by +-jitter (never below 0; order kept)

    def __post_init__(self) -> None:
        if not 0 <= self.loss < 1:
            raise KitError(f"--net loss must be at least 0% and under 100%, got {self.loss:.0%}")
        if self.burst and self.burst < 1:
            raise KitError(f"--net burst is a mean burst length in packets, at least 1, got {self.burst:g}")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise KitError("--net delay and jitter cannot be negative")

    @classmethod
    def parse(cls, text: str) -> NetImpairment:
        """`loss=5%,burst=3,delay=20ms,jitter=30ms` (any of them, any order)."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            unit = {"loss": "%", "burst": "", "delay": "ms", "jitter": "ms"}.get(name.strip())
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*" + re.escape(unit) + r"\s*", value) if unit is not None else None
            if m is None:
                raise KitError(f"--net: cannot read {item!r}: give loss=N%, burst=N (packets), delay=Nms, jitter=Nms, "
                               f"comma-separated, e.g. loss=5%,jitter=30ms")  # fmt: skip
            values[name.strip()] = float(m.group(1)) / (100 if unit == "%" else 1)
        if not values:
            raise KitError("--net needs at least one of loss=N%, burst=N, delay=Nms, jitter=Nms")
        return cls(loss=values.get("loss", 0.0), burst=values.get("burst", 0.0), delay_ms=values.get("delay", 0.0),
                   jitter_ms=values.get("jitter", 0.0))  # fmt: skip

    def __str__(self) -> str:
        parts = [f"loss={self.loss * 100:g}%"]
        parts += [f"burst={self.burst:g}"] if self.burst else []
        parts += [f"delay={self.delay_ms:g}ms"] if self.delay_ms else []
        parts += [f"jitter={self.jitter_ms:g}ms"] if self.jitter_ms else []
        return ",".join(parts)



@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers, validated as it is made; recorded verbatim in run.json
    (`to_dict`/`from_dict`) and handed to every process of the run as flags (`to_args`/`from_args`)."""

    scenario: str = DEFAULT_SCENARIO
    archs: tuple[str, ...] = DEFAULT_ARCHS
    stt: SttSpec = SttSpec("whisper")  # a string given here is parsed (SttSpec.parse)
    model: str | None = None  # path or faster-whisper size name; None = the pinned bundled tiny.en
    compute_type: str = "int8"
    # Whisper inference per process: threads per turn and turns at once (None: the cores the process
    # may use, e.g. K with --cpus K; measured in docs/cost-and-scaling.md), and the most waiting
    # turns one CTranslate2 batch takes (1: no batching, what wins on this CPU)
    cpu_threads: int | None = None
    num_workers: int | None = None
    max_batch: int = 1
    # Whisper's input window, s: 30 (its standard, the default) pads every turn to 30 s; shorter pads to
    # max(window, the turn): a shortcut judged on real speech in tests/test_voices.py
    window_s: float = 30.0
    cpus: int | None = None  # pin the run (worker and every job process) to this many cores
    # live, --local-agents: a fleet of this many agent workers per design, each pinned to its own
    # cpus_per_worker cores (None: unpinned) and reporting its own load, as production ones do
    workers: int = 1
    cpus_per_worker: int | None = None
    vad: VADSettings = field(default_factory=VADSettings)
    results_dir: Path = DEFAULT_RESULTS_DIR
    pricing: str | None = None  # pricing CSV for dollars (None: data/pricing.csv)
    stt_price: str | None = None  # --stt-price: the pricing row of the cloud STT the bill counts (None: not priced)
    net: NetImpairment | None = None  # --net: live runs' uplink impairment (a string given here is parsed)
    # Test hook: "pipeline:<identity>" makes that participant's pipeline raise as it starts;
    # "model:<identity>" gives the job serving that participant a corrupt Whisper model.
    fault: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.stt, SttSpec):
            object.__setattr__(self, "stt", SttSpec.parse(self.stt))
        if isinstance(self.net, str):
            object.__setattr__(self, "net", NetImpairment.parse(self.net))
        object.__setattr__(self, "archs", tuple(self.archs))
        object.__setattr__(self, "results_dir", Path(self.results_dir))
        for name in ("cpu_threads", "num_workers", "cpus", "workers", "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise KitError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise KitError(f"--max-batch must be a whole number of at least 1, got {self.max_batch!r}")
        if not 0 < self.window_s <= 30:
            raise KitError(f"--window must be more than 0 and at most 30 s (Whisper's own window), got {self.window_s!r}")

    # --- JSON (run.json, a job's metadata) ---

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(stt=str(self.stt), archs=list(self.archs), results_dir=str(self.results_dir), net=self.net and str(self.net))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config of `to_dict`'s form; keys it does not know (a run.json of another version) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        # a run from before the gate, or from when it was off by default, has no gate: (None, None)
        vad = {"gate_dbfs": None, "gate_margin_db": None, **d.get("vad", {})}
        return cls(**{k: v for k, v in d.items() if k in known and k != "vad"}, vad=VADSettings(**vad))

    # --- the command line (every process the run starts: agent workers, the STT service) ---

    def to_args(self) -> list[str]:
        """The flags `add_arguments` reads back into this config's inference settings (the room,
        designs and results directory are not among them: a worker serves whatever is dispatched)."""
        args = ["--stt", str(self.stt), *self.to_model_args()]
        fleet = self.workers if self.workers > 1 else None  # a worker of a fleet reports its own load
        args += self.to_vad_args()
        for flag, value in (("--cpus", self.cpus), ("--vad-gate", self.vad.gate), ("--stt-price", self.stt_price), ("--workers", fleet)):
            if value is not None:
                args += [flag, str(value)]
        return args

    def to_vad_args(self) -> list[str]:
        """The flags `add_vad_arguments` reads back (the designs' VADs, and the STT service's endpointing)."""
        v = self.vad
        return ["--min-silence", repr(v.min_silence_duration), "--activation-threshold", repr(v.activation_threshold),
                "--prefix-padding", repr(v.prefix_padding_duration)]  # fmt: skip

    def to_model_args(self) -> list[str]:
        """The flags `add_model_arguments` reads back: the model and how it runs (the STT service's)."""
        args = ["--compute-type", self.compute_type, "--max-batch", str(self.max_batch), "--window", repr(self.window_s)]
        for flag, value in (("--model", self.model), ("--cpu-threads", self.cpu_threads), ("--num-workers", self.num_workers)):
            if value is not None:
                args += [flag, str(value)]
        return args

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> RunConfig:
        """The config of flags parsed by a parser given `add_arguments` (plus `overrides`)."""
        given = dict(
            scenario=getattr(args, "scenario", DEFAULT_SCENARIO), model=args.model, compute_type=args.compute_type,
            cpu_threads=args.cpu_threads, num_workers=args.num_workers, max_batch=args.max_batch, window_s=args.window_s,
        )  # fmt: skip
        if hasattr(args, "stt"):  # add_arguments; add_model_arguments alone (the STT service) has the model's only
            vad = gate_settings(args.vad_gate)
            given.update(stt=args.stt, cpus=args.cpus, vad=vad, stt_price=args.stt_price, net=getattr(args, "net", None),
                         workers=args.workers, cpus_per_worker=args.cpus_per_worker)  # fmt: skip
        if hasattr(args, "min_silence"):  # add_vad_arguments
            given["vad"] = replace(given.get("vad", VADSettings()), min_silence_duration=args.min_silence,
                                   activation_threshold=args.activation_threshold, prefix_padding_duration=args.prefix_padding)  # fmt: skip
        return cls(**{**given, **overrides})


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The inference settings every command that runs the designs takes (read by `RunConfig.from_args`)."""
    p.add_argument("--stt", default="whisper",
                   help="'whisper' (in each job process), 'delay:SECONDS' (calibration), 'service' (one shared STT "
                        "service for the run, reached through livekit-plugins-openai), 'service:URL' (a running one), "
                        "'stream' (the service's streaming endpoint: every frame sent, server-side endpointing, "
                        "interims), 'stream:URL' or 'stream-delay:SECONDS' (its calibration twin)")
    add_model_arguments(p)
    p.add_argument("--cpus", type=int, default=None, metavar="K",
                   help="pin the run (worker and every job process) to K cores (default: all)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="live, --local-agents: K agent workers per design, each reporting its own load so the server's "
                        "dispatcher balances them (a fleet; docs/cost-and-scaling.md)")
    p.add_argument("--cpus-per-worker", type=int, default=None, metavar="C",
                   help="with --workers: pin each worker (and its jobs) to its own C cores")
    p.add_argument("--vad-gate", type=gate_arg, nargs="?", const=-60.0, default="auto", metavar="auto|off|DBFS",
                   help="skip silero on a participant's quiet frames once the silence that ends a turn has passed: "
                        "'auto' (the default): less than 8 dB above the track's own noise floor; DBFS: below a fixed "
                        "level (-60 with the flag alone); 'off': every frame (docs/cost-and-scaling.md)")
    add_vad_arguments(p)
    p.add_argument("--stt-price", default=None, metavar="ITEM",
                   help="price the cloud STT bill with this row of the pricing file (e.g. "
                        "stt_deepgram_nova3_streaming_minute; default: not priced; docs/cost-and-scaling.md)")


def add_vad_arguments(p: argparse.ArgumentParser) -> None:
    """Silero's settings: every command that finds turns (the designs' VADs, the STT service's endpointing)."""
    p.add_argument("--min-silence", type=float, default=VADSettings.min_silence_duration, metavar="S",
                   help="the VAD's silence that ends a turn (default: %(default)s s): most of the latency floor "
                        "(docs/method.md)")
    p.add_argument("--activation-threshold", type=float, default=VADSettings.activation_threshold, metavar="P",
                   help="silero's speech probability that starts a turn (default: %(default)s)")
    p.add_argument("--prefix-padding", type=float, default=VADSettings.prefix_padding_duration, metavar="S",
                   help="audio kept before a turn's detected start (default: %(default)s s)")


def gate_settings(gate: float | str) -> VADSettings:
    """The VAD settings of a --vad-gate value (gate_arg's)."""
    if gate == "auto":
        return VADSettings(gate_margin_db=ADAPTIVE_GATE_MARGIN_DB)
    return VADSettings(gate_dbfs=None if gate == "off" else gate, gate_margin_db=None)


def gate_arg(text: str) -> float | str:
    """--vad-gate's value: 'auto', 'off' or a level in dBFS."""
    if text in ("auto", "off"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'auto', 'off' or a level in dBFS such as -60, got {text!r}") from None
    if not -120 <= value <= 0:
        raise argparse.ArgumentTypeError(f"a level in dBFS is between -120 and 0, got {text!r}")
    return value


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model and how it runs: every command that loads it (the designs' and the STT service's)."""
    p.add_argument("--model", default=None, help="faster-whisper model directory or size name (default: bundled tiny.en)")
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--cpu-threads", type=int, default=None, metavar="N",
                   help="Whisper threads per turn (default: the cores the process may use)")
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="Whisper turns at once per process (default: the cores the process may use)")
    p.add_argument("--window", dest="window_s", type=float, default=30.0, metavar="S",
                   help="Whisper's input window: pad each turn to max(S, the turn) instead of 30 s (default: "
                        "%(default)s, Whisper's own; 10 is 3-5x faster on short turns: docs/cost-and-scaling.md)")
    p.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="most waiting turns decoded in one CTranslate2 batch (default: %(default)s, no batching)")


def pin_to_cores(cpus: int | None) -> list[int]:
    """Pin this process (and so every process it starts from now on) to the first `cpus` cores it
    may use; None leaves it as it is. Returns the cores it may use afterwards."""
    if cpus is not None:
        os.sched_setaffinity(0, check_cpus(cpus))
    return sorted(os.sched_getaffinity(0))


def _threads(pid: int) -> list[int]:
    """The thread ids of a running process (/proc/<pid>/task)."""
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def pin_threads(pid: int, cores: list[int]) -> None:
    """Pin every thread of a running process to `cores`: os.sched_setaffinity pins one thread, and the
    threads a process already has (a runtime's, a server's) would stay where they were."""
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cores)


@contextlib.contextmanager
def threads_pinned(cores: list[int]):
    """Every thread of this process on `cores` for a while (none: left as it is), then back on every
    core it could use before (processes started from here afterwards are not confined to `cores`)."""
    if not cores:
        yield
        return
    allowed = sorted(os.sched_getaffinity(0))
    pin_threads(os.getpid(), cores)
    try:
        yield
    finally:
        pin_threads(os.getpid(), allowed)


def process_cores(pids: list[int]) -> list[int]:
    """The cores any of these running processes may use (their main threads' affinity, from /proc)."""
    return sorted(set().union(*(os.sched_getaffinity(p) for p in pids)))


def thread_cores(pid: int) -> list[int]:
    """The cores any thread of a running process may use (read from /proc, not assumed)."""
    cores: set[int] = set()
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            cores |= os.sched_getaffinity(tid)
    return sorted(cores)


def fleet_cores(workers: int, per_worker: int | None) -> list[list[int] | None]:
    """Each agent worker's cores: consecutive blocks of `per_worker` of the cores this process may
    use (None: not pinned), or a KitError when they do not fit."""
    if per_worker is None:
        return [None] * workers
    allowed = sorted(os.sched_getaffinity(0))
    if workers * per_worker > len(allowed):
        raise KitError(f"--workers {workers} --cpus-per-worker {per_worker} needs {workers * per_worker} cores; "
                       f"this process may use {len(allowed)}")  # fmt: skip
    return [allowed[i * per_worker : (i + 1) * per_worker] for i in range(workers)]


def check_cpus(cpus: int) -> list[int]:
    """The cores `--cpus cpus` pins to (the first ones this process may use), or a KitError."""
    allowed = sorted(os.sched_getaffinity(0))
    if not 1 <= cpus <= len(allowed):
        raise KitError(f"--cpus must be between 1 and {len(allowed)} (the cores this process may use), got {cpus}")
    return allowed[:cpus]
