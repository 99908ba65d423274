"""End to end: each architecture through a real AgentServer with process jobs, on pair-2."""

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from synthetic import SHORT_ROOM

from kit.architectures import NAMES
from kit.cli import main
from kit.config import RunConfig
from kit.results import metrics
from kit.room import scenario
from kit.run.events import read_events
from kit.run.record import RunRecord
from kit.run.runner import run


@pytest.fixture(scope="module")
def whisper_run(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["compare", "--scenario", "pair-2", "--results", str(results)]) == 0
    (run_dir,) = results.iterdir()
    (run_dir / "printed.txt").write_text(printed.getvalue())
    return run_dir


@pytest.mark.replay
def test_compare_writes_the_report_and_prints_its_path_last(whisper_run):
    last = (whisper_run / "printed.txt").read_text().strip().splitlines()[-1]
    assert last == f"report: {whisper_run / 'report.html'}"
    assert "<h1>" in (whisper_run / "report.html").read_text()


def test_every_utterance_transcribed_by_every_architecture(whisper_run):
    utts = pd.read_csv(whisper_run / "utterances.csv", keep_default_na=False)
    assert sorted(set(utts["arch"])) == sorted(NAMES)
    for arch, u in utts.groupby("arch"):
        ref = u[u["kind"] == "reference"]
        assert len(ref) == 4 and not ref["missed"].any(), (arch, ref[["participant", "hyp_text"]])
        assert metrics.wer(list(ref["ref_text"]), list(ref["hyp_text"])) <= 0.35
        assert (ref["n_finals"] == 1).all(), "one final per utterance on this polite room"
        # (text columns kept as read: an insertion row's empty latency makes the column text)
        latency, vad_latency = pd.to_numeric(ref["latency_s"]), pd.to_numeric(ref["vad_latency_s"])
        assert latency.between(0.3, 5.0).all()  # generous sanity bound, not a benchmark
        assert (vad_latency < latency).all()


def test_jobs_processes_and_agents_per_design(whisper_run):
    archs = pd.read_csv(whisper_run / "architectures.csv").set_index("arch")
    for single in ("multi_session", "participant_entrypoint"):
        assert tuple(archs.loc[single, ["jobs", "processes", "agent_participants"]]) == (1, 1, 1)
    assert tuple(archs.loc["multi_dispatch", ["jobs", "processes", "agent_participants"]]) == (2, 2, 2)
    assert archs["complete"].all() and (archs["errors"] == 0).all()
    assert (archs["cpu_s"] > 0).all() and (archs["peak_pss_mb"] > 50).all()


def test_events_consistent_with_the_scenario(whisper_run):
    events = read_events(whisper_run)
    sc = scenario.load("pair-2")
    for arch in NAMES:
        ev = events[events["arch"] == arch]
        joined = ev[ev["kind"] == "participant_joined"]["participant"]
        assert sorted(joined) == sorted(sc.identities), f"{arch}: each participant joined exactly once"
        assert sorted(ev[ev["kind"] == "participant_left"]["participant"]) == sorted(sc.identities)
        assert (ev["kind"] == "job_start").sum() == (ev["kind"] == "job_end").sum()
        finals = ev[ev["kind"] == "final"]
        assert finals["speech_end"].notna().all() and (finals["t"] > finals["speech_end"]).all()
        if arch == "multi_dispatch":
            per_job = ev[ev["kind"] == "participant_joined"].groupby("job")["participant"].nunique()
            assert (per_job == 1).all(), "a dispatched job serves only its own participant"


def test_speaker_costs_and_the_run_record(whisper_run):
    spk = pd.read_csv(whisper_run / "speakers.csv")
    for arch, g in spk.groupby("arch"):
        assert (g["stt_cpu_s"] > 0).all() and (g["vad_inferences"] > 0).all()
        assert (g["cpu_s"] > g["stt_cpu_s"]).all(), "a speaker costs more than its STT alone"
    record = json.loads((whisper_run / "run.json").read_text())
    assert record["complete"] and record["model"]["source"] == "bundled" and record["git_sha"]
    assert record["versions"]["livekit-agents"] == "1.8.9"
    loaded = RunRecord.load(whisper_run)
    assert loaded.mode == "console" and loaded.complete and loaded.scenario.name == "pair-2"
    assert set(loaded.archs) == set(NAMES) and all(a.t0_mono and a.complete for a in loaded.archs.values())


@pytest.mark.replay
def test_a_failing_participant_pipeline_is_recorded_and_the_others_carry_on(tmp_path):
    config = RunConfig(scenario=SHORT_ROOM, archs=("participant_entrypoint",), stt="delay:0.3",
                       results_dir=tmp_path, fault="pipeline:bob")  # fmt: skip
    run_dir = run(config)
    tables = metrics.compute(run_dir)
    errors = read_events(run_dir).query("kind == 'error'")
    assert list(errors["participant"]) == ["bob"] and "fault injected" in errors["detail"].iloc[0]
    spk = tables.speakers.set_index("participant")
    assert spk.loc["alice", "matched"] == 1 and spk.loc["bob", "missed"] == 1
    assert not json.loads((run_dir / "run.json").read_text())["complete"]
    assert not tables.architectures["complete"].any()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--arch", "telepathy", "--scenario", "pair-2"], "unknown architecture 'telepathy'"),
        (["compare", "--scenario", "nowhere-room"], "scenario not found"),
        (["compare", "--scenario", "pair-2", "--model", "/no/such/model"], "Whisper model not found"),
        (["compare", "--scenario", "pair-2", "--stt", "delay:soon"], "unknown STT 'delay:soon'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir()), "nothing half-written"


def test_results_dir_that_is_a_file_or_unwritable(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "--arch", "multi_session", "--scenario", "pair-2", "--results", str(blocker)]) == 2
    assert "results directory is a file" in capsys.readouterr().err
    assert main(["run", "--arch", "multi_session", "--scenario", "pair-2", "--results", str(blocker / "sub")]) == 2
    assert "cannot write results to" in capsys.readouterr().err


def test_memory_guard_refuses_a_run_that_does_not_fit(tmp_path, monkeypatch, capsys):
    import psutil

    from kit.run import runner

    class Tiny:
        available = 600 * 2**20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny)
    assert main(["compare", "--scenario", "pair-2", "--arch", "multi_dispatch", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "would need about 1,330 MB" in err and "600 MB is available" in err
    assert not (tmp_path / "r").exists()
    sc = scenario.load("standup-4")
    single = runner.estimate_memory_mb(RunConfig(archs=("participant_entrypoint",)), sc)
    assert runner.estimate_memory_mb(RunConfig(archs=("multi_dispatch",)), sc) == single + 3 * runner.JOB_PROCESS_MB
