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
from kit.progress import room_bar  # the one progress bar, shared with the notebooks
from kit.results import metrics
from kit.room import scenario
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
        _add_server_args(c)
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
    config_mod.add_arguments(w)
    w.set_defaults(func=_sweep, scenario=DEFAULT_SCENARIO)

    b = sub.add_parser("stt-bench", help="Whisper's speed on a room's turns: threads, workers and batch sizes")
    b.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
    b.add_argument("--settings", default="1x1x1,2x1x1,1x2x1,2x2x1,2x1x2,2x1x4,2x1x8",
                   help="comma-separated THREADSxWORKERSxBATCH (default: %(default)s)")
    b.add_argument("--out", type=Path, default=None, help="also write the table to this CSV")
    config_mod.add_arguments(b)
    b.set_defaults(func=_stt_bench)

    t = sub.add_parser("transcribe", help="transcribe every participant of a room in this process (VAD + STT)")
    t.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
    config_mod.add_arguments(t)
    t.set_defaults(func=_transcribe)
    _add_live_commands(sub)

    ss = sub.add_parser("stt-service", help="serve the Whisper model on loopback with the OpenAI transcription API (kit/stt/service.py)")
    _stt_service_module().add_arguments(ss)
    ss.set_defaults(func=lambda args: _stt_service_module().main(args))

    sv = sub.add_parser("server", help="run a local LiveKit dev server on loopback until Ctrl-C (kit/live/server.py)")
    sv.add_argument("--install", action="store_true", help="only install the pinned livekit-server into the virtualenv (needs Go)")
    sv.add_argument("--server-bin", default=None, metavar="PATH", help="use this livekit-server (default: the virtualenv's, else PATH)")
    sv.add_argument("--env-file", type=Path, default=None, metavar="PATH",
                    help="where to write the LIVEKIT_* variables, mode 0600 (default: ~/.cache/livekit-transcription-kit/livekit.env)")
    sv.set_defaults(func=_server)
    return p


def _stt_service_module():
    from kit.stt import service as stt_service

    return stt_service


def _stt_bench(args) -> int:
    from kit import stt

    settings = stt.parse_settings(args.settings)
    sc = scenario.load(args.scenario)
    turns = stt.room_turns(sc)
    table = stt.benchmark(RunConfig.from_args(args), turns, settings)
    print(f"{len(turns)} turns of {sc.name}, model {args.model or 'bundled tiny.en'} {args.compute_type}, "
          f"{stt.usable_cores()} cores")
    _print_table(table.round(1))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


def _compare(args) -> int:
    from kit.architectures import NAMES
    from kit.run import runner

    archs = tuple(args.arch) if args.arch else NAMES
    config = RunConfig.from_args(args, archs=archs, results_dir=args.results, pricing=str(args.pricing) if args.pricing else None)
    if args.mode != "console":
        return _compare_live(args, config)
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


def print_summary(tables: metrics.Tables) -> None:
    print("\nper architecture")
    _print_table(tables.architectures[list(metrics.ARCH_COLUMNS)].rename(columns=metrics.ARCH_COLUMNS))
    print("\nper speaker")
    _print_table(tables.speakers[list(metrics.SPEAKER_COLUMNS)].rename(columns=metrics.SPEAKER_COLUMNS))


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
                                           progress_factory=room_bar)  # fmt: skip
        interrupted = None
    except Interrupted as e:
        sweep_dir, interrupted = e.run_dir, e
        table = pd.read_csv(sweep_dir / "sweep.csv")  # written before Interrupted is raised
    print("\nscaling")
    _print_table(table[list(SWEEP_TABLE)].rename(columns=SWEEP_TABLE))
    print("\ncost = fixed + marginal x participants")
    _print_table(sweep.fits(table))
    print(f"\nlargest N with p95 latency <= {args.threshold} s on this machine")
    _print_table(sweep.capacity(table, args.threshold))
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


# Exit codes of compare, run and live (docs/usage.md): the run measured everything and wrote it,
# but its report could not be written (the tables and run.json are on disk).
REPORT_FAILED = 3


def exit_code(complete: bool, reported: bool) -> int:
    """0 complete and reported; 1 incomplete (whatever the report did); 3 measured, report failed."""
    if not complete:
        return 1
    return 0 if reported else REPORT_FAILED


def write_report(run: lab.Run, console: lab.Run | None = None) -> bool:
    """Write a measured run's report from its loaded tables; on failure one line naming the step, and
    False (the run's tables and run.json are already on disk, so nothing measured is lost)."""
    from kit.results import report

    run_dir = run.run_dir
    try:
        print(f"report: {report.write(run_dir, run=run, console=console)}")
        return True
    except Exception as e:  # noqa: BLE001 - any fault of a later step must not hide the measured run
        print(f"error: writing the report failed ({type(e).__name__}: {e}); the tables and run.json are in {run_dir}",
              file=sys.stderr)  # fmt: skip
        return False


def _report(args) -> int:
    from kit.results import report

    print(f"report: {report.write(args.results_dir, rooms=getattr(args, 'rooms', None) or [])}")
    return 0


def _synth(args) -> int:
    from kit.room.synth import synth

    path = synth(args.script, args.out)
    sc = scenario.load(path)
    print(f"wrote {path}: {len(sc.participants)} participants, {len(sc.utterances)} utterances, {sc.duration_s:.1f} s")
    return 0


def _scenario_import(args) -> int:
    from kit.room.importer import import_room

    result = import_room(args.inputs, args.out, args.name, args.min_silence, replace=args.force)
    sc = result.scenario
    _print_table(result.participants)
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
    _print_table(table[["participant", "utterances", "matched", "wer", "latency_p50", "transcript"]])
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


def _print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_colwidth", 200, "display.width", 200, "display.float_format", "{:.2f}".format):
        print(df.to_string(index=False, na_rep="n/a"))  # NaN = not measured (e.g. WER without reference text)


# --- live mode (kit/live/common.py, kit/live/driver.py, kit/live/doctor.py) ---------------------------------------------


def _add_live_commands(sub) -> None:
    lv = sub.add_parser("live", help="run architectures in a real LiveKit room (LIVEKIT_URL/_API_KEY/_API_SECRET)")
    lv.add_argument("--arch", action="append", default=None,
                    help="architecture (repeatable); its agent must be running (or --local-agents)")
    lv.add_argument("--agent", default=None, metavar="CMD",
                    help="your own agent worker, started here by the shell and measured after the kit's designs "
                         "(its environment: LIVEKIT_URL/_API_KEY/_API_SECRET, KIT_STT_URL, KIT_AGENT_NAME; docs/own-agent.md)")
    lv.add_argument("--agent-name", default=None, metavar="NAME",
                    help="--agent: the agent name it registers with (explicit dispatch to NAME)")
    lv.add_argument("--label", default="agent", help="--agent: its name in the tables (default: %(default)s)")
    lv.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
    lv.add_argument("--room", default=None, help="room name (default: kit-<arch>-<suffix>-<run id>)")
    lv.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: %(default)s)")
    lv.add_argument("--local-agents", action="store_true", help="start each architecture's agent worker here, for its turn")
    lv.add_argument("--no-report", dest="report", action="store_false", help="skip <run>/report.html")
    _add_server_args(lv)
    config_mod.add_arguments(lv)
    lv.set_defaults(func=_live)

    ag = sub.add_parser("agent", help="run an architecture's agent worker, named kit-<arch>-<suffix>, explicit dispatch only")
    ag.add_argument("--arch", required=True, help="architecture whose entrypoint the worker runs")
    config_mod.add_arguments(ag)
    ag.set_defaults(func=_agent, scenario=DEFAULT_SCENARIO)

    nc = sub.add_parser("node-check", help="does @livekit/agents run two AgentSessions in one job (agents-js #1927)? "
                        "One line; exit 0 either way (kit/live/node_check.py)")
    nc.add_argument("--version", default=None, help="@livekit/agents version (default: the one examples/node pins)")
    nc.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: %(default)s)")
    nc.set_defaults(func=_node_check)

    dr = sub.add_parser("doctor", help="check the live-mode configuration and the server: exit 0 if usable, 2 if not")
    dr.set_defaults(func=_doctor)


def _live(args) -> int:
    from kit.live import agents as agent_process
    from kit.live import driver as live_driver

    agent, dispatch = None, args.dispatch or "api"
    if args.agent is not None:
        agent = agent_process.ExternalAgent(args.agent, label=args.label, name=args.agent_name,
                                          dispatch=args.dispatch or ("room" if args.agent_name else "auto"))  # fmt: skip
        dispatch = "api"  # the kit's designs beside it
        if agent.dispatch == "auto" and not args.local_server:
            print("note: --dispatch auto: the agent joins every new room of this server; only do this on a private "
                  "server (--local-server)", file=sys.stderr)  # fmt: skip
    elif args.arch is None:
        raise KitError("live needs --arch (one of the kit's designs, repeatable) or --agent CMD (your own agent)")
    elif dispatch not in live_driver.DISPATCH_PATHS:
        raise KitError(f"--dispatch {dispatch} is for --agent; the kit's designs are dispatched by 'api' or 'token'")
    archs = tuple(args.arch or ())
    config = RunConfig.from_args(args, archs=archs, results_dir=args.results)
    try:
        run_dir, interrupted = live_driver.run(config, room=args.room, progress_factory=room_bar, local_agents=args.local_agents,
                                               local_server=args.local_server, dispatch=dispatch, server_bin=args.server_bin,
                                               agent=agent), None  # fmt: skip
    except Interrupted as e:
        run_dir, interrupted = e.run_dir, e
    return _live_summary(run_dir, list(archs) + ([agent.label] if agent else []), report=args.report,
                         interrupted=interrupted)  # fmt: skip


def _compare_live(args, config: RunConfig) -> int:
    """--mode live: the designs in a real room; --mode both: console first, then live, then the
    two side by side (console_vs_live.csv in the live run, and a section of its report)."""
    from kit.live import driver as live_driver
    from kit.run import runner

    console_dir, console = None, None
    if args.mode == "both":
        try:
            console_dir = runner.run(config, progress_factory=room_bar)
        except Interrupted as e:
            lab.load(e.run_dir).tables.save(e.run_dir)
            print(f"{e}: console results kept in {e.run_dir}; live not run", file=sys.stderr)
            return 128 + e.signum
        console = lab.load(console_dir)
        console.tables.save(console_dir)
    try:
        run_dir, interrupted = live_driver.run(config, progress_factory=room_bar, local_agents=True, local_server=args.local_server,
                                               dispatch=args.dispatch or "api", server_bin=args.server_bin,
                                               console_run=console_dir), None  # fmt: skip
    except Interrupted as e:
        run_dir, interrupted = e.run_dir, e
    return _live_summary(run_dir, config.archs, report=args.report, interrupted=interrupted, console=console)


def _live_summary(run_dir: Path, archs, report: bool, interrupted=None, console: lab.Run | None = None) -> int:
    """Tables, problems, the side-by-side table of a --mode both run, the report; the exit code."""
    run = lab.load(run_dir)  # the tables, computed once: saved, printed and reported
    tables, record = run.tables, run.record
    tables.save(run_dir)
    if len(tables.architectures):
        print_summary(tables)
    if console is not None and len(tables.architectures):
        both = metrics.console_vs_live(console.tables, tables)
        both.to_csv(run_dir / "console_vs_live.csv", index=False)
        print("\nconsole vs live (latency s; the difference is the transport: Opus, jitter buffer, server, text stream)")
        _print_table(both[list(CONSOLE_VS_LIVE)].rename(columns=CONSOLE_VS_LIVE))
    complete = len(tables.architectures) == len(archs) and bool(tables.architectures["complete"].all())
    for arch, problem in record.problems():
        print(f"{arch}: {problem}", file=sys.stderr)
    print(f"\nresults: {run_dir}" + ("" if complete else "  (INCOMPLETE: see the problems above, livekit.log and server.log)"))
    reported = not (report and len(tables.architectures)) or write_report(run, console)
    if interrupted is not None:
        print(f"{interrupted}: the tables hold what was measured until then", file=sys.stderr)
        return 128 + interrupted.signum
    return exit_code(complete, reported)


CONSOLE_VS_LIVE = {
    "arch": "architecture", "participant": "speaker", "latency_p50_console": "p50 console", "latency_p50_live": "p50 live",
    "latency_p95_console": "p95 console", "latency_p95_live": "p95 live", "missed_console": "missed c",
    "missed_live": "missed l", "cpu_s_console": "CPU s c", "cpu_s_live": "CPU s l", "transport_cpu_s_live": "WebRTC CPU s",
    "pss_mb_console": "PSS MB c", "pss_mb_live": "PSS MB l", "agent_participants_live": "agents l",
}  # fmt: skip


def _add_server_args(p) -> None:
    p.add_argument("--local-server", action="store_true",
                   help="live: start a private livekit-server on loopback for this run (kit/live/server.py); stopped afterwards")
    p.add_argument("--server-bin", default=None, help="the livekit-server binary for --local-server (default: .venv/bin, then PATH)")
    p.add_argument("--dispatch", choices=("api", "token", "room", "participant", "auto"), default=None,
                   help="live: the kit's designs are dispatched by the server API (api, the default) or by the first "
                        "publisher's token (token); --agent: one dispatch per room (room, the default with --agent-name), "
                        "one per participant with {\"participant_identity\": ...} as metadata (participant), or none "
                        "(auto: the worker joins every room; the default without --agent-name)")


def _agent(args) -> int:
    from kit.live import worker as agent

    return agent.serve_agent(args.arch, RunConfig.from_args(args, archs=(args.arch,)))


def _node_check(args) -> int:
    from kit.live import node_check

    return node_check.main(args.version, args.results)


def _doctor(args) -> int:
    from kit.live import doctor

    return doctor.main()


def _server(args) -> int:
    from kit.live import server

    if args.install:
        server.install()
        return 0
    return server.serve(server_bin=args.server_bin, env_file=args.env_file)
