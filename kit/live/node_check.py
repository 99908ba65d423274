"""`python -m kit node-check [--version X]`: does @livekit/agents X run two AgentSessions in one job?

agents-js #1927: the second `AgentSession.start({ room })` in one job fails with `A byte stream
handler for topic "lk.agent.session" has already been set`. The check runs the example that does
exactly that (examples/node/multi-session.mjs: one AgentSession per participant, one job) on the
two-person room against a private local server, through `kit live --agent`, and prints one line:

    @livekit/agents 1.9.0: two AgentSessions in one room: reproduced #1927 (<the error>)
    @livekit/agents X: two AgentSessions in one room: works
    @livekit/agents X: two AgentSessions in one room: fails otherwise (<who got no transcript>, <last error>)

Exit 0 whatever the answer; 1 only if the check itself could not run (no node/npm, the install
failed, the server or the agent did not start). The pinned version runs from examples/node
(`make node`); another is installed with npm into a cache directory of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from kit.config import REPO_ROOT, KitError, RunConfig
from kit.run.record import RunRecord

NODE_DIR = REPO_ROOT / "examples" / "node"
EXAMPLE = "multi-session.mjs"
PACKAGES = ("@livekit/agents", "@livekit/agents-plugin-openai", "@livekit/agents-plugin-silero")
BUG = re.compile(r'[Aa] byte stream handler for topic "lk\.agent\.session" has already been set')
ROOM = "pair-2"


def pinned_version() -> str:
    return json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["@livekit/agents"]


def prepare(version: str | None, log=None) -> tuple[Path, str]:
    """The directory to run the example from, with its node_modules, and the version it has.
    Progress goes to stderr: stdout is the check's one line."""
    log = log or (lambda message: print(message, file=sys.stderr))
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise KitError(f"{tool} is not installed (Node.js 20 or newer: https://nodejs.org)")
    if version in (None, pinned_version()):
        if not (NODE_DIR / "node_modules" / "@livekit" / "agents").is_dir():
            log(f"installing {NODE_DIR} (npm ci, as `make node` does)")
            _npm(["ci"], NODE_DIR)
        return NODE_DIR, pinned_version()
    from kit.live.server import kit_cache_dir

    work = kit_cache_dir() / f"node-check-{re.sub(r'[^0-9A-Za-z.-]', '-', version)}"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", *(p.name for p in NODE_DIR.glob("*.mjs"))):
        shutil.copy2(NODE_DIR / name, work / name)
    if installed_version(work) != version:
        log(f"installing @livekit/agents {version} and its plugins into {work}")
        _npm(["install", "--no-audit", "--no-fund", "--save-exact", *(f"{p}@{version}" for p in PACKAGES)], work)
    return work, installed_version(work) or version


def installed_version(where: Path) -> str | None:
    try:
        return json.loads((where / "node_modules" / "@livekit" / "agents" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _npm(args: list[str], cwd: Path) -> None:
    done = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise KitError(f"npm {' '.join(args)} failed in {cwd} (exit code {done.returncode}): {tail}")


def verdict(version: str, agent_log: str, speakers: pd.DataFrame) -> str:
    """The one line, from what the agent printed and who got transcribed."""
    head = f"@livekit/agents {version}: two AgentSessions in one room"
    if m := BUG.search(agent_log.replace('\\"', '"')):  # JSON logs escape the quotes
        return f"{head}: reproduced #1927 ({m.group(0)})"
    silent = sorted(speakers.loc[speakers["matched"] == 0, "participant"]) if len(speakers) else ["everyone"]
    if not silent:
        return f"{head}: works"
    errors = [line for line in agent_log.splitlines() if '"level":50' in line or "ERROR" in line or "Error" in line]
    return f"{head}: fails otherwise (no transcript for {', '.join(silent)}; {errors[-1][:200] if errors else 'no error printed'})"


def main(version: str | None = None, results: Path = Path("results")) -> int:
    from kit.live import agents as agent_process
    from kit.live import driver as live_driver
    from kit.results import metrics

    try:
        where, version = prepare(version)
        agent = agent_process.ExternalAgent(f"node {where / EXAMPLE} start", label="node-multi-session",
                                          name="kit-node-check", dispatch="room")  # fmt: skip
        run_dir = live_driver.run(RunConfig(scenario=ROOM, archs=(), results_dir=results), local_server=True, agent=agent)
    except KitError as e:
        print(f"node-check could not run: {e}", file=sys.stderr)
        return 1
    problems = [p for p in RunRecord.load(run_dir).archs[agent.label].problems if "registering" in p
                or "did not register" in p]  # fmt: skip
    if problems:
        print(f"node-check could not run: {problems[0]}", file=sys.stderr)
        return 1
    tables = metrics.compute(run_dir)
    tables.save(run_dir)
    log = (run_dir / f"agent-{agent.label}.log").read_text(encoding="utf-8", errors="replace")
    print(verdict(version, log, tables.speakers[tables.speakers["arch"] == agent.label]))
    print(f"results: {run_dir}", file=sys.stderr)
    return 0
