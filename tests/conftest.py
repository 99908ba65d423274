import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, settings

from kit.config import SCENARIOS_DIR

# The fuzz tests (tests/test_fuzz.py). CI: a fixed, derandomized budget (the same examples every
# run, about a minute in all). Locally the same budget, random. Hunting: --hypothesis-profile=long
# (40x the examples, no deadline). Each test scales its own count from max_examples.
_FUZZ = dict(deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_FUZZ)
settings.register_profile("dev", max_examples=200, **_FUZZ)
settings.register_profile("long", max_examples=8000, **{**_FUZZ, "deadline": None})
settings.load_profile("ci" if os.environ.get("CI") else "dev")  # --hypothesis-profile=NAME overrides it


@pytest.fixture
def pair2_copy(tmp_path) -> Path:
    """A writable copy of the bundled pair-2 room; returns its scenario.json."""
    dst = tmp_path / "pair-2"
    shutil.copytree(SCENARIOS_DIR / "pair-2", dst)
    return dst / "scenario.json"


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _kit_children() -> dict[int, psutil.Process]:
    # multiprocessing's resource tracker (a few MB) is left to exit with this process.
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if not any("resource_tracker" in part for part in p.cmdline()):
                out[p.pid] = p
        except psutil.Error:
            continue
    return out


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """After every test, no process the kit started (job, forkserver, kernel) is still running."""
    before = set(_kit_children())
    yield
    new = [p for pid, p in _kit_children().items() if pid not in before]
    _, alive = psutil.wait_procs(new, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {[(p.pid, ' '.join(p.cmdline())[:80]) for p in alive]}"


@pytest.fixture(scope="session")
def livekit_server(tmp_path_factory):
    """One private livekit-server on loopback for the whole session (kit/live/server.py); its log in a tmp dir.
    Started before any test's process check, so it is never counted as a leftover."""
    import os

    from kit.config import KitError
    from kit.live.server import LocalServer

    try:
        srv = LocalServer(log_path=tmp_path_factory.mktemp("livekit-server") / "server.log")
    except KitError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e} (.ci/run installs it: make setup)")
        pytest.skip(str(e))
    with srv:
        yield srv


# Test tiers (docs/design.md): a test marked by hand, or using one of these fixtures, is in that tier;
# `make quick` runs the tests in none of them. A module fixture that replays a room marks every test using it.
FIXTURE_TIERS = {"whisper_run": ("replay", "whisper"), "voices_compare": ("replay", "whisper"), "rebuilt": ("replay",),
                 "room_turns": ("whisper",), "livekit_server": ("server",), "whisper_live": ("server", "whisper"),
                 "examples_measured": ("server", "whisper", "node")}  # fmt: skip


SHARED_MODULE_FIXTURES = {"whisper_run", "voices_compare", "whisper_live", "rebuilt", "room_turns", "service"}


# make test's one lane (pytest-xdist, -n 2 --dist loadgroup; docs/design.md): its tests run one after another
# on one worker while the other worker takes the rest.
LANES = ("heavy",)


def lane(item) -> str | None:
    """`heavy`: every test of a livekit-server or of the Node examples (@livekit/agents 1.9.0 binds its health
    check to port 8081 in `start` mode: two Node workers cannot run at once) and every test that runs the
    real model (two Whisper replays at once on 2 cores missed utterances). Measured with these
    in two lanes on four workers (docs/design.md): 13-14 minutes, but production-mode agent workers saw the
    machine's CPU over 0.7 and refused jobs, and timing-bound tests failed, in two runs of four."""
    return "heavy" if any(item.get_closest_marker(tier) for tier in ("whisper", "node", "server")) else None


@pytest.fixture(autouse=True)
def clockless_tests_yield_the_cpu(request):
    """Under make test a test that waits on no clock (no replay, server or Node
    agent: transcription flat out, fuzzing, figures) runs at nice 10, it and what it starts, so the real-time
    replays beside it keep their pace; the next test gets nice 0 again. Only as root (CI), who may lower it back."""
    clockless = not any(request.node.get_closest_marker(tier) for tier in ("replay", "server", "node"))
    if os.environ.get("PYTEST_XDIST_WORKER") and os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, 10 if clockless else 0)
    yield


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in set(item.fixturenames) & set(FIXTURE_TIERS):
            for tier in FIXTURE_TIERS[fixture]:
                item.add_marker(tier)
        if name := lane(item):
            item.add_marker(pytest.mark.xdist_group(name))
        # A module fixture runs once per worker that needs it: the tests sharing a costly one (a replay,
        # a service, a model) go to one worker, or the replay runs twice.
        elif set(item.fixturenames) & SHARED_MODULE_FIXTURES:
            item.add_marker(pytest.mark.xdist_group(f"{item.path.stem}-shared"))
    # The lanes first: xdist hands out work in collection order, and a lane is the suite's critical path.
    items.sort(key=lambda item: LANES.index(lane(item)) if lane(item) else len(LANES))
