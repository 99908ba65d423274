"""The live-mode commands of `python -m kit`: `live`, `agent`, `node-check`, `doctor`, `server`, and
compare's `--mode live|both` (kit/cli.py registers them here)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from kit import config as config_mod
from kit import lab
from kit.config import DEFAULT_SCENARIO, KitError, RunConfig
from kit.output import exit_code, print_summary, print_table, write_report
from kit.progress import room_bar
from kit.results import metrics
from kit.run.skeleton import Interrupted


def add_live_commands(sub) -> None:
    lv = sub.add_parser("live", help="run architectures in a real LiveKit room (LIVEKIT_URL/_API_KEY/_API_SECRET)")
    lv.add_argument("--arch", action="append", default=None,
                    help="architecture (repeatable); its agent must be running (or --local-agents)")
    lv.add_argument("--agent", default=None, metavar="CMD",
                    help="your own agent worker, started here by the shell and measured after the kit's designs "
                         "(its environment: LIVEKIT_URL/_API_KEY/_API_SECRET, KIT_AGENT_NAME, and its STT clients pointed at the kit: LIVEKIT_INFERENCE_URL, OPENAI_BASE_URL, KIT_STT_URL; docs/own-agent.md)")
    lv.add_argument("--agent-name", default=None, metavar="NAME",
                    help="--agent: the agent name it registers with (explicit dispatch to NAME)")
    lv.add_argument("--label", default="agent", help="--agent: its name in the tables (default: %(default)s)")
    lv.add_argument("--scenario", default=DEFAULT_SCENARIO, help="bundled name or path (default: %(default)s)")
    lv.add_argument("--room", default=None, help="room name (default: kit-<arch>-<suffix>-<run id>)")
    lv.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: %(default)s)")
    lv.add_argument("--local-agents", action="store_true", help="start each architecture's agent worker here, for its turn")
    lv.add_argument("--no-report", dest="report", action="store_false", help="skip <run>/report.html")
    add_server_args(lv)
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

    sv = sub.add_parser("server", help="run a local LiveKit dev server on loopback until Ctrl-C (kit/live/server.py)")
    sv.add_argument("--install", action="store_true", help="only install the pinned livekit-server into the virtualenv (needs Go)")
    sv.add_argument("--server-bin", default=None, metavar="PATH", help="use this livekit-server (default: the virtualenv's, else PATH)")
    sv.add_argument("--nodes", type=int, default=1, metavar="N",
                    help="a local cluster: N nodes sharing a redis-server on loopback (LiveKit's multi-node mode)")
    sv.add_argument("--env-file", type=Path, default=None, metavar="PATH",
                    help="where to write the LIVEKIT_* variables, mode 0600 (default: ~/.cache/livekit-transcription-kit/livekit.env)")
    sv.set_defaults(func=_server)


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
                                               agent=agent, nodes=args.nodes, kill_worker_s=args.kill_worker_s,
                                               redispatch=args.redispatch), None  # fmt: skip
    except Interrupted as e:
        run_dir, interrupted = e.run_dir, e
    return _live_summary(run_dir, list(archs) + ([agent.label] if agent else []), report=args.report,
                         interrupted=interrupted)  # fmt: skip


def compare_live(args, config: RunConfig) -> int:
    """--mode live: the designs in a real room; --mode both: console first, then live, then the
    two side by side (console_vs_live.csv in the live run, and a section of its report)."""
    from kit.live import driver as live_driver
    from kit.run import runner

    console_dir, console = None, None
    if args.mode == "both":
        try:
            # console has no network to impair and no agent workers
            console_dir = runner.run(replace(config, net=None, workers=1, cpus_per_worker=None), progress_factory=room_bar)
        except Interrupted as e:
            lab.load(e.run_dir).tables.save(e.run_dir)
            print(f"{e}: console results kept in {e.run_dir}; live not run", file=sys.stderr)
            return 128 + e.signum
        console = lab.load(console_dir)
        console.tables.save(console_dir)
    try:
        run_dir, interrupted = live_driver.run(config, progress_factory=room_bar, local_agents=True, local_server=args.local_server,
                                               dispatch=args.dispatch or "api", server_bin=args.server_bin,
                                               console_run=console_dir, nodes=args.nodes,
                                               kill_worker_s=args.kill_worker_s, redispatch=args.redispatch), None  # fmt: skip
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
        print_table(both[list(CONSOLE_VS_LIVE)].rename(columns=CONSOLE_VS_LIVE))
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


def add_server_args(p) -> None:
    p.add_argument("--local-server", action="store_true",
                   help="live: start a private livekit-server on loopback for this run (kit/live/server.py); stopped afterwards")
    p.add_argument("--server-bin", default=None, help="the livekit-server binary for --local-server (default: .venv/bin, then PATH)")
    p.add_argument("--nodes", type=int, default=1, metavar="N",
                   help="with --local-server: a local cluster of N livekit-server nodes sharing a Redis (LiveKit's "
                        "multi-node mode); the room joins through the first, agent workers through the last")
    p.add_argument("--kill-worker", dest="kill_worker_s", type=float, default=None, metavar="AT_S",
                   help="live, with the kit's agents: SIGKILL one agent worker (the busiest, with --workers) and its job "
                        "processes AT_S seconds into each design's room; what each design loses is measured")
    p.add_argument("--redispatch", action="store_true",
                   help="live, the kit's designs: a watchdog dispatches a job again when its agent leaves the room while "
                        "someone it serves is still there (LiveKit does not: docs/live.md, 'A cluster and a fleet')")
    p.add_argument("--net", default=None, metavar="SPEC",
                   help="live, with --local-server: each participant's uplink loses and delays its audio, e.g. "
                        "loss=5%%,jitter=30ms (also burst=N packets, delay=Nms; docs/live.md, 'A lossy network')")
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
    from kit.live import dev_server, install

    if args.install:
        install.install()
        return 0
    return dev_server.serve(server_bin=args.server_bin, env_file=args.env_file, nodes=args.nodes)
