"""`python -m kit …`: the kit's command line. Bad input -> one clear line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from kit import config as config_mod
from kit import lab
from kit.config import DEFAULT_SCENARIO, KitError, RunConfig
from kit.live.commands import add_live_commands, add_server_args, compare_live
from kit.output import exit_code, print_summary, print_table, write_report
from kit.progress import room_bar  # the one progress bar, shared with the notebooks
from kit.results import metrics
from kit.room import scenario
from kit.room.bleed import Bleed
from kit.run.skeleton import Interrupted


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kit", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="build a scenario from a script (espeak-ng + sox)")
    s.add_argument("script", type=Path)
    s.add_argument("-o", "--out", type=Path, required=True, help="scenario directory to write")
    add_bleed_args(s)
    s.set_defaults(func=_synth)

    sc = sub.add_parser("scenario", help="scenario tools: import real recordings")
    group = sc.add_subparsers(required=True, metavar="ACTION")
    i = group.add_parser("import", help="build a scenario from one recording per participant (kit/room/importer.py)")
    i.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE",
                   help="a directory of recordings, or files; FILE@SECONDS starts that recording SECONDS into the room")
    i.add_argument("-o", "--out", type=Path, required=True, help="scenario directory to write")
    i.add_argument("--name", default=None, help="scenario name (default: the directory's name)")
    i.add_argument("--min-silence", type=float, default=0.5, help="pause that separates detected utterances, s (default: %(default)s)")
    i.add_argument("--force", action="store_true", help="replace an existing scenario directory")
    add_bleed_args(i)
    i.set_defaults(func=_scenario_import)

    for name, helptext in (
        ("compare", "run several architectures on the same room and compare them (default: all three)"),
        ("run", "run one architecture on a room"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--arch", action="append", required=name == "run", help="architecture (repeatable for compare)")
        c.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
        c.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: %(default)s)")
        c.add_argument("--pricing", type=Path, default=None, help="pricing CSV (default: data/pricing.csv)")
        c.add_argument("--no-report", dest="report", action="store_false",
                       help="skip <run>/report.html (the self-contained HTML report, written by default)")
        c.add_argument("--mode", choices=("console", "live", "both"), default="console",
                       help="console (simulated room, default), live (a real LiveKit room, the kit's agents started "
                            "here) or both, side by side")
        add_server_args(c)
        config_mod.add_arguments(c)
        c.set_defaults(func=_compare)

    r = sub.add_parser("report", help="write RESULTS_DIR/report.html: the comparison as one self-contained HTML file")
    r.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="a run directory (or results/: its newest run)")
    r.add_argument("--room", dest="rooms", action="append", type=Path, metavar="RUN_DIR",
                   help="a run of another room (e.g. a hard room) to add side by side; repeatable")
    r.set_defaults(func=_report)

    w = sub.add_parser("sweep", help="scaling: run the designs on rooms of N participants")
    w.add_argument("--pattern", choices=("all-talk", "meeting"), default="all-talk",
                   help="all-talk: everyone talks at once (the worst case, default); meeting: one main speaker "
                        "at a time, most never speak (kit/room/meeting.py)")
    w.add_argument("--participants", "--speakers", dest="speakers", default="1,2,4,8",
                   help="comma-separated N values (default: %(default)s)")
    w.add_argument("--arch", action="append", help="architecture (repeatable; default: all three)")
    w.add_argument("--lines", type=int, default=3, help="lines per speaker in each room (default: %(default)s)")
    w.add_argument("--threshold", type=float, default=1.5, help="p95 latency threshold, s (default: %(default)s)")
    w.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: %(default)s)")
    w.add_argument("--pricing", type=Path, default=None, help="pricing CSV (default: data/pricing.csv)")
    add_bleed_args(w)
    w.add_argument("--mutes", action="store_true", help="--pattern meeting: 3 in 4 of those who never speak are muted throughout")
    config_mod.add_arguments(w)
    w.set_defaults(func=_sweep, scenario=DEFAULT_SCENARIO)

    a = sub.add_parser("advise", help="which design to ship for your room: runs (or reuses) what it needs and says why")
    a.add_argument("--participants", type=int, required=True, help="participants in the room")
    a.add_argument("--pattern", choices=("all-talk", "meeting"), default="all-talk",
                   help="all-talk: everyone talks (the worst case, default); meeting: one at a time, most never speak")
    a.add_argument("--stt-price", default=None, metavar="ITEM",
                   help="a cloud STT, by its price row of data/pricing.csv (default: self-hosted Whisper on the worker)")
    a.add_argument("--streaming", action="store_true", help="the cloud STT is fed every frame (streaming), not the VAD's turns")
    a.add_argument("--sdk", choices=("python", "node"), default="python", help="the agents SDK (default: %(default)s)")
    a.add_argument("--cores", type=int, default=2, help="the worker's cores (the run is pinned to them; default: %(default)s)")
    a.add_argument("--memory-gb", type=float, default=24.0, help="the worker's memory, GB (default: %(default)s)")
    a.add_argument("--threshold", type=float, default=1.5, help="p95 latency a design must hold, s (default: %(default)s)")
    a.add_argument("--results", type=Path, default=Path("results"), help="where its run goes, and where matching runs are found")
    a.set_defaults(func=_advise)

    b = sub.add_parser("stt-bench", help="Whisper's speed on a room's turns: threads, workers and batch sizes")
    b.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
    b.add_argument("--settings", default="1x1x1,2x1x1,1x2x1,2x2x1,2x1x2,2x1x4,2x1x8",
                   help="comma-separated THREADSxWORKERSxBATCH (default: %(default)s)")
    b.add_argument("--out", type=Path, default=None, help="also write the table to this CSV")
    b.add_argument("--breakdown", action="store_true",
                   help="instead: where a turn's CPU goes (features, encoder, decoder), one thread, ms per turn")
    config_mod.add_arguments(b)
    b.set_defaults(func=_stt_bench)

    t = sub.add_parser("transcribe", help="transcribe every participant of a room in this process (VAD + STT)")
    t.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
    config_mod.add_arguments(t)
    t.set_defaults(func=_transcribe)
    add_live_commands(sub)

    ss = sub.add_parser("stt-service", help="serve the Whisper model on loopback with the OpenAI transcription API (kit/stt/service.py)")
    _stt_service_module().add_arguments(ss)
    ss.set_defaults(func=lambda args: _stt_service_module().main(args))

    return p


def _stt_service_module():
    from kit.stt import service as stt_service

    return stt_service


def _stt_bench(args) -> int:
    from kit import stt

    settings = stt.parse_settings(args.settings)
    sc = scenario.load(args.scenario)
    turns = stt.room_turns(sc)
    config = RunConfig.from_args(args)
    table = stt.breakdown(config, turns) if args.breakdown else stt.benchmark(config, turns, settings)
    print(f"{len(turns)} turns of {sc.name}, model {args.model or 'bundled tiny.en'} {args.compute_type}, "
          f"{stt.usable_cores()} cores")
    print_table(table.round(1))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


def _advise(args) -> int:
    from kit.results import advise

    situation = advise.Situation(args.participants, args.pattern, args.stt_price, args.streaming, args.sdk, args.cores,
                                 args.memory_gb, args.threshold)  # fmt: skip
    try:
        advice = advise.advise(situation, args.results, progress_factory=room_bar)
    except Interrupted as e:  # the partial run is kept, never reused (it is not complete)
        print(f"{e}: the partial run is in {e.run_dir}; `advise` makes a complete one next time", file=sys.stderr)
        return 128 + e.signum
    print_table(advice.table.round(4))
    print("\n" + advice.markdown())
    return 0


def _compare(args) -> int:
    from kit.architectures import NAMES
    from kit.run import runner

    archs = tuple(args.arch) if args.arch else NAMES
    config = RunConfig.from_args(args, archs=archs, results_dir=args.results, pricing=str(args.pricing) if args.pricing else None)
    if args.mode != "console":
        return compare_live(args, config)
    try:
        run_dir, interrupted = runner.run(config, progress_factory=room_bar), None
    except Interrupted as e:
        run_dir, interrupted = e.run_dir, e
    run = lab.load(run_dir)  # the tables, computed once: saved, printed and reported
    tables = run.tables
    tables.save(run_dir)
    print_summary(tables)
    complete = interrupted is None and len(tables.architectures) > 0 and bool(tables.architectures["complete"].all())
    print(f"\nresults: {run_dir}" + ("" if complete else "  (INCOMPLETE: see errors in the tables and livekit.log)"))
    reported = not (args.report and len(tables.architectures)) or write_report(run)
    if interrupted is not None:
        print(f"{interrupted}: the tables hold what was measured until then", file=sys.stderr)
        return 128 + interrupted.signum
    return exit_code(complete, reported)


def _sweep(args) -> int:
    from kit.architectures import NAMES
    from kit.results import cost, sweep

    try:
        ns = [int(x) for x in args.speakers.split(",") if x.strip()]
    except ValueError:
        raise KitError(f"--participants takes comma-separated whole numbers, got {args.speakers!r}") from None
    if not ns or min(ns) < 1:
        raise KitError(f"--participants needs numbers of at least 1, got {args.speakers!r}")
    cost.load_pricing(args.pricing)  # fail fast on a bad pricing file
    config = RunConfig.from_args(args, archs=tuple(args.arch) if args.arch else NAMES, results_dir=args.results,
                     pricing=str(args.pricing) if args.pricing else None)  # fmt: skip
    try:
        sweep_dir, table = sweep.run_sweep(ns, config, pattern=args.pattern, lines=args.lines, threshold_s=args.threshold,
                                           progress_factory=room_bar, bleed=_bleed(args),
                                           mutes=args.mutes)  # fmt: skip
        interrupted = None
    except Interrupted as e:
        sweep_dir, interrupted = e.run_dir, e
        table = pd.read_csv(sweep_dir / "sweep.csv")  # written before Interrupted is raised
    print("\nscaling")
    print_table(table[list(SWEEP_TABLE)].rename(columns=SWEEP_TABLE))
    print("\ncost = fixed + marginal x participants")
    print_table(sweep.fits(table))
    print(f"\nlargest N with p95 latency <= {args.threshold} s on this machine")
    print_table(sweep.capacity(table, args.threshold))
    print(f"\nresults: {sweep_dir}/sweep.csv")
    if interrupted is not None:
        print(f"{interrupted}: sweep.csv holds the runs measured until then", file=sys.stderr)
        return 128 + interrupted.signum
    return 0 if table["complete"].all() else 1


SWEEP_TABLE = {
    "participants": "N", "speakers": "talk", "arch": "architecture", "stt_placement": "STT", "cpus": "cpus",
    "latency_p50": "lat p50 s", "latency_p95": "lat p95 s", "compute_bound_p95": "bound p95 s", "p95_over_bound": "p95/bound",
    "wer": "WER", "missed": "missed", "cores": "cores", "cpu_s_per_speaker": "CPU s/spk",
    "peak_pss_mb": "PSS MB", "processes": "procs", "agent_participants": "agents",
    "dollars_cloud_per_speaker_hour": "$/spk-h cloud", "dollars_selfhost_per_speaker_hour": "$/spk-h self",
}  # fmt: skip


def _report(args) -> int:
    from kit.results import report

    print(f"report: {report.write(args.results_dir, rooms=getattr(args, 'rooms', None) or [])}")
    return 0


def add_bleed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bleed-db", type=float, default=None, metavar="DB",
                   help="add to each track the other participants' speech DB dB lower (e.g. -20: microphones in one "
                        "room; kit/room/bleed.py); default: none, or a script's [bleed] table")
    p.add_argument("--bleed-ms", type=float, default=Bleed.ms, metavar="MS", help="--bleed-db: their delay (default: %(default)s ms)")


def _bleed(args):
    return Bleed(args.bleed_db, args.bleed_ms) if args.bleed_db is not None else None


def _synth(args) -> int:
    from kit.room.synth import synth

    path = synth(args.script, args.out, bleed=_bleed(args))
    sc = scenario.load(path)
    print(f"wrote {path}: {len(sc.participants)} participants, {len(sc.utterances)} utterances, {sc.duration_s:.1f} s")
    return 0


def _scenario_import(args) -> int:
    from kit.room.importer import import_room

    result = import_room(args.inputs, args.out, args.name, args.min_silence, replace=args.force, bleed=_bleed(args))
    sc = result.scenario
    print_table(result.participants)
    reference = "yes" if sc.reference else "none (boundaries from the speech detector; WER will be n/a)"
    print(f"\nwrote {args.out / 'scenario.json'}: {len(sc.participants)} participants, {len(sc.utterances)} utterances, "
          f"{sc.duration_s:.1f} s, reference text: {reference}")  # fmt: skip
    return 0


def _transcribe(args) -> int:
    from kit.architectures.pipeline import transcribe_participant
    from kit.room.console import ConsoleRoom
    from kit.run.events import EventLog, read_events
    from kit.stt import load_whisper, make_stt

    config = RunConfig.from_args(args)
    sc = scenario.load(config.scenario)
    if config.stt.kind == "whisper":
        load_whisper(config)
    with tempfile.TemporaryDirectory() as tmp:

        async def run() -> None:
            t0 = time.monotonic() + 0.2
            room = ConsoleRoom(sc, t0)
            log = EventLog(Path(tmp) / "events" / "transcribe.jsonl", t0=t0, arch="in_process", job="transcribe")
            make_stt(config, participant="-", log=log)  # reject a bad --stt before the room starts
            work = asyncio.gather(*(transcribe_participant(room, i, config, log) for i in room.identities))
            await _progress(work, sc.duration_s, t0, f"replaying {sc.name}")

        started = time.monotonic()
        asyncio.run(run())
        events = read_events(Path(tmp))
    utts = metrics.utterances(sc, events, config.vad.min_silence_duration)
    table = metrics.speakers(utts)
    print_table(table[["participant", "utterances", "matched", "wer", "latency_p50", "transcript"]])
    print(f"\nroom {sc.duration_s:.1f} s, wall {time.monotonic() - started:.1f} s, STT real-time factor "
          f"{events['infer_s'][events['kind'] == 'recognized'].sum() / events['audio_s'][events['kind'] == 'recognized'].sum():.3f}")  # fmt: skip
    return 0


async def _progress(work: asyncio.Future, duration_s: float, t0: float, label: str) -> None:
    """A tqdm bar in room seconds while `work` runs."""
    from tqdm.auto import tqdm

    with tqdm(total=round(duration_s, 1), desc=label, unit="s", bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s") as bar:
        while not work.done():
            bar.n = min(duration_s, max(0.0, time.monotonic() - t0))
            bar.refresh()
            await asyncio.wait([work], timeout=0.25)
        bar.n = bar.total
        bar.refresh()
    await work


# --- live mode (kit/live/common.py, kit/live/driver.py, kit/live/doctor.py) ---------------------------------------------


