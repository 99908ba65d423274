"""What the notebooks (and the report) stand on: run the kit with progress bars, load a run.

`run(config)` runs the runner in a fresh child process, not in the notebook's kernel: the kernel
already runs an asyncio loop (the runner's `asyncio.run` would fail there), and the kernel's own
memory (IPython, matplotlib, …) would otherwise be counted in every design's PSS. The numbers are
then those of `python -m kit compare`; the child sends progress back and the bars are drawn here.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import queue
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.config import REPO_ROOT, KitError, RunConfig, add_arguments
from kit.progress import room_bar
from kit.results import metrics
from kit.results.resources import read_resources
from kit.room import scenario
from kit.run.events import read_events
from kit.run.record import RunRecord
from kit.run.skeleton import Interrupted


@dataclass
class Run:
    """One run directory, loaded: its record (run.json as the runner wrote it), room, events and tables."""

    run_dir: Path
    record: RunRecord
    scenario: scenario.Scenario
    events: pd.DataFrame
    tables: metrics.Tables

    @property
    def archs(self) -> list[str]:
        """Architectures that ran, in run order."""
        return list(self.tables.architectures["arch"])

    @property
    def complete(self) -> bool:
        """Every architecture asked for ran to the end without an error."""
        asked = self.record.config["archs"]
        return self.record.complete and all(a in self.record.archs and self.record.archs[a].complete for a in asked)

    def problems(self) -> pd.DataFrame:
        """arch, problem: what went wrong (as run.json records it); architectures that never ran too."""
        return pd.DataFrame(self.record.problems(), columns=["arch", "problem"])


def room_mix(sc: scenario.Scenario) -> np.ndarray:
    """All participants' tracks mixed into one (float32, the scenario's rate): the room as heard."""
    tracks = [sc.read_audio(i) for i in sc.identities]
    mix = np.zeros(max(len(t) for t in tracks), dtype=np.float32)
    for t in tracks:
        mix[: len(t)] += t
    return mix / max(1.0, float(np.abs(mix).max()))  # no clipping where voices overlap


def find_run(path: Path | str) -> Path:
    """A run directory, or the newest run inside a results directory."""
    path = Path(path)
    if (path / "run.json").is_file():
        return path
    runs = sorted(p.parent for p in path.glob("*/run.json")) if path.is_dir() else []
    if not runs:
        raise KitError(f"no run found in {path} (expected a run directory with run.json, or a results directory)")
    return runs[-1]  # run ids start with the date and time


def load(run_dir: Path | str) -> Run:
    run_dir = find_run(run_dir)
    record = RunRecord.load(run_dir)
    sc = scenario.load(record.scenario.path)
    events = read_events(run_dir)  # read once: the tables are computed from it
    tables = metrics.tables(record, sc, events, read_resources(run_dir), pricing_path(record), metrics.service_log(run_dir, record))
    return Run(run_dir, record, sc, events, tables)


def pricing_path(record: RunRecord) -> str | None:
    """The pricing CSV a run was priced with (None: the default data/pricing.csv)."""
    return record.run_config.pricing


def measure(config: RunConfig) -> Run:
    """Run the config's architectures on its room (progress bars here), save the tables, load the run."""
    run_dir = run(config)
    result = load(run_dir)
    result.tables.save(run_dir)
    return result


def option_flags(options: dict) -> list[str]:
    """Run flags given by name (window=10: --window 10); None leaves a flag out (its default)."""
    return [arg for name, value in options.items() if value is not None for arg in (f"--{name.replace('_', '-')}", str(value))]


class OptionParser(argparse.ArgumentParser):
    """The run flags, read for a notebook: a bad value is a KitError, not the interpreter's exit."""

    def error(self, message: str):
        raise KitError(message)


def config(scenario: str, archs, stt: str = "whisper", model: str | None = None, results_dir: Path | str | None = None,
           **options) -> RunConfig:  # fmt: skip
    """The notebooks' parameters as a RunConfig (results default to the repository's results/). `options`:
    any run flag by its name, read as the command line reads it (window=10, cpus=1, vad_gate="off",
    min_silence=0.3, activation_threshold=0.6, prefix_padding=0.3, max_batch=4, stt_price=ITEM); None: its default."""
    flags = ["--stt", stt] + (["--model", model] if model else []) + option_flags(options)
    parser = OptionParser(prog="kit.lab.config", add_help=False)
    add_arguments(parser)
    results = Path(results_dir) if results_dir else REPO_ROOT / "results"
    return RunConfig.from_args(parser.parse_args(flags), scenario=str(scenario), archs=tuple(archs), results_dir=results.resolve())


def run(config: RunConfig, sweep: dict | None = None) -> Path:
    """runner.run(config) in a child process; returns the run directory. KitError as in the CLI.
    With `sweep` (run_sweep's keyword arguments), the scaling sweep instead: returns its directory."""
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter, whatever the kernel imported
    messages = ctx.Queue()
    child = ctx.Process(target=_child, args=(config.to_dict(), messages, sweep), name="kit-run")
    child.start()
    try:
        return _follow(child, messages)
    except KeyboardInterrupt:  # the notebook's stop button: the runner stops and writes what it has
        os.kill(child.pid, signal.SIGINT)
        _say_where_the_partial_run_is(child, messages)
        raise
    finally:
        if child.is_alive():
            child.terminate()
        child.join()


def _follow(child, messages) -> Path:
    bars = {}
    while True:
        try:
            kind, *args = messages.get(timeout=1.0)
        except queue.Empty:
            if not child.is_alive() and messages.empty():
                raise RuntimeError(f"the run's process ended without a result (exit code {child.exitcode})") from None
            continue
        if kind == "progress":
            key, arch, duration, elapsed = args
            if key not in bars:
                bars[key] = room_bar(arch, duration)
            bars[key](elapsed)
        elif kind == "done":
            return Path(args[0])
        elif kind == "kit_error":
            raise KitError(args[0])
        else:
            raise RuntimeError(f"the run failed:\n{args[0]}")


def _say_where_the_partial_run_is(child, messages, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            kind, *args = messages.get(timeout=1.0)
        except queue.Empty:
            if not child.is_alive():
                return
            continue
        if kind == "done":
            print(f"interrupted: what was measured is in {args[0]} (marked incomplete; lab.load it)")
            return


def _child(config: dict, messages, sweep: dict | None) -> None:
    from kit.results import sweep as sweeps
    from kit.run import runner

    bars = itertools.count()

    def factory(arch: str, duration: float):
        key = next(bars)  # one bar per run of an architecture (a sweep runs each several times)
        return lambda elapsed: messages.put(("progress", key, arch, duration, elapsed))

    try:
        cfg = RunConfig.from_dict(config)
        if sweep is None:
            done = runner.run(cfg, progress_factory=factory)
        else:
            done, _ = sweeps.run_sweep(config=cfg, progress_factory=factory, **sweep)
        messages.put(("done", str(done)))
    except Interrupted as e:  # SIGINT/SIGTERM: a partial run, marked incomplete, is on disk
        messages.put(("done", str(e.run_dir)))
    except KitError as e:
        messages.put(("kit_error", str(e)))
    except BaseException:
        messages.put(("error", traceback.format_exc()))


def sweep(participants: list[int], archs, pattern: str = "all-talk", lines: int = 3, stt: str = "whisper",
          model: str | None = None, results_dir: Path | str | None = None, threshold_s: float = 1.5,
          **options) -> tuple[Path, pd.DataFrame]:  # fmt: skip
    """The scaling sweep (kit/results/sweep.py) from a notebook, in a child process: (its directory, sweep.csv).
    `options`: run flags by name, as `config` takes them (cpus=1, window=10, vad_gate="off", ...)."""
    cfg = config("pair-2", archs, stt=stt, model=model, results_dir=results_dir, **options)
    sweep_dir = run(cfg, sweep={"participants": list(participants), "pattern": pattern, "lines": lines,
                                "threshold_s": threshold_s})  # fmt: skip
    return sweep_dir, pd.read_csv(sweep_dir / "sweep.csv")


@dataclass
class LiveComparison:
    """What 05-live shows: the console run, the live run, and the two side by side."""

    console: Run | None
    live: Run | None
    side_by_side: pd.DataFrame  # kit.results.metrics.console_vs_live; empty if either run is missing
    printed: str  # what the command printed (no secret: the kit never prints one)
    exit_code: int


def compare_live(scenario: str, archs, stt: str = "whisper", model: str | None = None, local_server: bool = False,
                 dispatch: str = "api", results_dir: Path | str | None = None, **options) -> LiveComparison:  # fmt: skip
    """`python -m kit compare --mode both` in a child process (its own event loop and signals; a
    kernel cannot host them): each design in console mode, then live with its worker started here.
    `local_server`: a private livekit-server for the run, else LIVEKIT_URL/_API_KEY/_API_SECRET.
    `options`: run flags by name, as `config` takes them (checked here first: a bad one is a KitError)."""
    config(scenario, archs, stt=stt, model=model, results_dir=results_dir, **options)
    import subprocess
    import sys

    results = Path(results_dir) if results_dir else REPO_ROOT / "results"
    before = set(results.glob("*/run.json"))
    cmd = [sys.executable, "-m", "kit", "compare", "--mode", "both", "--scenario", scenario, "--stt", stt,
           "--dispatch", dispatch, "--results", str(results), *[a for arch in archs for a in ("--arch", arch)]]  # fmt: skip
    cmd += (["--model", model] if model else []) + (["--local-server"] if local_server else []) + option_flags(options)
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    runs = sorted(p.parent for p in set(results.glob("*/run.json")) - before)
    loaded = [load(r) for r in runs]
    console = next((r for r in loaded if r.record.mode == "console"), None)
    live = next((r for r in loaded if r.record.mode == "live"), None)
    both = metrics.console_vs_live(console.tables, live.tables) if console and live and len(live.tables.architectures) else pd.DataFrame()
    return LiveComparison(console, live, both, done.stdout + done.stderr, done.returncode)
