"""Faults and interruptions, for real: a job process killed mid-run, SIGINT/SIGTERM to a running compare
(on the short room: what is checked is how the run is driven)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from synthetic import SHORT_ROOM

from kit.config import REPO_ROOT
from kit.run.events import read_events


def _start(results: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kit", *args, "--scenario", SHORT_ROOM, "--stt", "delay:0.3", "--results", str(results)]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def _run_dir(results: Path) -> Path | None:
    runs = list(results.glob("*/run.json"))
    return runs[0].parent if runs else None


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _assert_all_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {[(p.pid, p.cmdline()[-2:]) for p in alive]}"


@pytest.mark.replay
def test_a_killed_job_process_is_recorded_and_the_other_speaker_is_complete(tmp_path):
    proc = _start(tmp_path, "run", "--arch", "multi_dispatch")
    run_dir = _wait_for(lambda: _run_dir(tmp_path))

    def bob_job_started():
        ev = read_events(run_dir) if (run_dir / "events").exists() else pd.DataFrame(columns=["kind", "participant"])
        joined = ev[(ev["kind"] == "participant_joined") & (ev["participant"] == "bob")]
        return int(joined["pid"].iloc[0]) if len(joined) else None

    bob_pid = _wait_for(bob_job_started)
    time.sleep(2.0)
    os.kill(bob_pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    spk = pd.read_csv(run_dir / "speakers.csv").set_index("participant")
    assert spk.loc["alice", "matched"] == 1 and spk.loc["alice", "missed"] == 0
    record = json.loads((run_dir / "run.json").read_text())
    problems = " ".join(record["archs"]["multi_dispatch"]["problems"])
    assert not record["complete"] and "ended without job_end (its process died)" in problems
    errors = read_events(run_dir).query("kind == 'error'")
    assert errors["detail"].str.contains("its process died").any()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.replay
def test_interrupting_a_compare_keeps_what_was_measured_and_leaves_no_process(tmp_path, sig, code):
    proc = _start(tmp_path, "compare", "--arch", "participant_entrypoint", "--arch", "multi_session")
    run_dir = _wait_for(lambda: _run_dir(tmp_path))

    def first_final():
        ev = read_events(run_dir) if (run_dir / "events").exists() else pd.DataFrame(columns=["kind"])
        return (ev["kind"] == "final").any()

    _wait_for(first_final)
    kids = _descendants(proc.pid)
    assert kids, "the run has job processes"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["complete"] is False and record["ended"]
    assert record["archs"]["participant_entrypoint"]["interrupted"] == sig
    assert "multi_session" not in record["archs"], "the run stopped at the interrupted design"
    utts = pd.read_csv(run_dir / "utterances.csv")
    assert (utts["kind"] == "reference").any() and not utts.loc[utts["kind"] == "reference", "missed"].any()
    _assert_all_gone(kids)


@pytest.mark.replay
def test_a_model_that_fails_to_load_in_one_process(tmp_path):
    from kit.config import RunConfig
    from kit.results import metrics
    from kit.run.runner import run

    run_dir = run(RunConfig(scenario=SHORT_ROOM, archs=("multi_dispatch",), results_dir=tmp_path, fault="model:bob"))
    tables = metrics.compute(run_dir)
    spk = tables.speakers.set_index("participant")
    assert spk.loc["alice", "matched"] == 1 and spk.loc["bob", "missed"] == 1
    errors = read_events(run_dir).query("kind == 'error' and job != 'runner'")
    assert len(errors) == 1 and "cannot load the Whisper model" in errors["detail"].iloc[0]
    record = json.loads((run_dir / "run.json").read_text())
    assert not record["complete"] and "cannot load the Whisper model" in " ".join(record["archs"]["multi_dispatch"]["problems"])
