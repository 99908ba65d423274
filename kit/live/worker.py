"""The kit's agent worker, `python -m kit agent --arch A`: one design's entrypoint served by a
production-like AgentServer, registered under its crosstalk-safe name (kit/live/common.py), explicit
dispatch only. It runs wherever the user runs agents; `kit live --local-agents` starts it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import time
from functools import partial

import psutil

from kit import architectures
from kit.config import RunConfig, pin_to_cores
from kit.live.common import Credentials, RedactingFormatter, agent_name
from kit.run.jobs import prewarm


def make_agent_server(arch: str, config: RunConfig, creds: Credentials):
    """A production-like AgentServer for one architecture: process jobs, production defaults (idle
    processes kept warm, load threshold), registered under its crosstalk-safe name, explicit dispatch."""
    from livekit.agents import AgentServer, JobExecutorType, WorkerPermissions

    server = AgentServer(
        job_executor_type=JobExecutorType.PROCESS,
        setup_fnc=partial(prewarm, config=config.to_dict()),
        initialize_process_timeout=60,  # a model load on a busy 2-core machine takes longer than the default 10 s
        ws_url=creds.url, api_key=creds.api_key, api_secret=creds.api_secret,
        port=0,  # the health-check port: 0 so several developers' workers fit on one machine
        host="127.0.0.1",  # and on loopback only (livekit-agents' default is every interface)
        # Listen-only agents publish no track; they publish data (transcriptions) and their state attribute.
        permissions=WorkerPermissions(can_publish=False, can_subscribe=True, can_publish_data=True),
        # The production gate compares the MACHINE's CPU with 0.7 and then refuses every job ("no
        # workers with sufficient capacity"): on the kit's machine that CPU is mostly the kit's own
        # publishers and the previous design winding down, so a measured dispatch would fail at
        # random. One worker always takes a job: its load is 0 and its gate off (livekit-agents 1.8 also counts
        # each job accepted but not yet started as threshold / idle processes, 0.35 on 2 cores in production,
        # so it refused the third of three dispatches arriving at once: "worker not available").
        # A fleet (--workers K) is balanced by the server on each worker's reported load, as in production:
        # each reports its own process tree's CPU over its own cores, and the gate is on.
        load_fnc=OwnLoad() if config.workers > 1 else _always_available,
        load_threshold=0.7 if config.workers > 1 else math.inf,
    )  # fmt: skip
    server.rtc_session(architectures.get(arch).entrypoint, agent_name=agent_name(arch))
    return server


def _always_available() -> float:
    return 0.0


class OwnLoad:
    """A worker's load as it would be on a machine of its own: the CPU its process tree used since the
    last call, over the cores it may use (livekit-agents' default reads the whole machine's CPU,
    the same for every worker on it, so a dispatcher could not tell them apart)."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.last = (time.monotonic(), self.tree_cpu())

    def tree_cpu(self) -> float:
        total = 0.0
        for p in [self.me, *self.me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def __call__(self) -> float:
        now, cpu = time.monotonic(), self.tree_cpu()
        (then, before), self.last = self.last, (now, cpu)
        return min(1.0, max(0.0, cpu - before) / max(now - then, 1e-3) / len(os.sched_getaffinity(0)))


def serve_agent(arch: str, config: RunConfig) -> int:
    """Run the worker until Ctrl-C / SIGTERM; then let running jobs finish (drain) and stop."""
    architectures.get(arch)
    creds = Credentials.from_env()
    pin_to_cores(config.cpus)  # --cpus: this worker and every job process it starts
    name = agent_name(arch)
    _log_to_stderr(creds.api_secret)
    print(f"agent {name}: connecting to {creds.url} (explicit dispatch only; Ctrl-C to stop)", flush=True)
    asyncio.run(_serve(make_agent_server(arch, config, creds), name))
    return 0


async def _serve(server, name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server.on("worker_registered", lambda *_: print(f"agent {name}: registered, waiting for dispatches", flush=True))
    running = asyncio.create_task(server.run(devmode=False))
    await asyncio.wait([running, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        print(f"agent {name}: stopping once running jobs end", flush=True)
        await server.drain()
    await server.aclose()
    await asyncio.gather(running, return_exceptions=True)


def _log_to_stderr(secret: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secret))
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or not r.name.startswith("livekit"))
    # and livekit's two capacity lines (INFO) on stdout, which the kit reads: a fleet waits on them (kit/live/agents.py)
    capacity = logging.StreamHandler(sys.stdout)
    capacity.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    capacity.addFilter(lambda r: r.name.startswith("livekit") and "capacity" in r.getMessage())
    logging.getLogger().addHandler(handler)
    logging.getLogger().addHandler(capacity)
    for name in ("livekit", "livekit.plugins"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("livekit.agents").setLevel(logging.INFO)
    logging.getLogger("kit").setLevel(logging.INFO)
