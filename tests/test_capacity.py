"""Capacity machinery: Whisper's workers and batching, --cpus pinning, the compute bound."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from kit import stt
from kit.config import KitError, RunConfig, pin_to_cores
from kit.results import metrics
from kit.room import scenario
from kit.run.events import read_events
from kit.run.record import RunRecord
from kit.run.runner import run


def _pair_turns():
    sc = scenario.load("pair-2")
    tracks = {p.identity: sc.read_audio(p.identity) for p in sc.participants}
    return [tracks[u.participant][round((u.start_s - 0.3) * 16000) : round((u.end_s + 0.5) * 16000)] for u in sc.utterances]


@pytest.mark.slow
@pytest.mark.whisper
def test_a_batch_returns_the_same_text_as_one_by_one():
    whisper = stt.load_whisper(RunConfig(num_workers=1, cpu_threads=2, max_batch=4))
    turns = _pair_turns()[:4]
    alone = [whisper.texts([t])[0] for t in turns]
    assert all(alone) and whisper.texts(turns) == alone


@pytest.mark.slow
@pytest.mark.whisper
def test_waiting_turns_are_batched_and_each_gets_its_own_text_and_cost():
    whisper = stt.load_whisper(RunConfig(num_workers=1, cpu_threads=2, max_batch=4))
    turns = _pair_turns()[:4]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(whisper.transcribe, turns))
    assert max(r.batch for r in results) > 1, "turns queued behind a running one go together"
    assert [r.text for r in results] == [whisper.texts([t])[0] for t in turns]
    assert all(r.cpu_s > 0 and r.infer_s > 0 and r.queue_s >= 0 for r in results)


def test_two_workers_run_two_turns_at_once():
    whisper = stt.load_whisper(RunConfig(num_workers=2, cpu_threads=1, max_batch=1))
    turns = _pair_turns()[:2]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(whisper.transcribe, turns))
    assert all(r.batch == 1 for r in results)
    assert all(r.queue_s < 0.5 * r.infer_s for r in results), "neither waited for the other"


def test_pin_to_cores_refuses_what_the_machine_cannot_give():
    with pytest.raises(KitError, match="--cpus must be between 1 and"):
        pin_to_cores(len(os.sched_getaffinity(0)) + 1)
    with pytest.raises(KitError):
        pin_to_cores(0)


@pytest.mark.replay
def test_cpus_1_pins_every_job_process(tmp_path):
    before = os.sched_getaffinity(0)
    config = RunConfig(scenario="pair-2", archs=("multi_dispatch",), stt="delay:0.3", cpus=1, results_dir=tmp_path)
    run_dir = run(config)
    assert os.sched_getaffinity(0) == before, "the caller is unpinned after the run"
    first = [min(before)]
    assert RunRecord.load(run_dir).cores == first
    starts = read_events(run_dir).query("kind == 'job_start'")
    assert starts["pid"].nunique() == 2, "one job process per participant"
    assert all(list(a) == first for a in starts["affinity"]), starts[["pid", "affinity"]]
    arch = metrics.compute(run_dir).architectures.iloc[0]
    assert arch["cores_available"] == 1 and arch["missed"] == 0


def test_the_compute_bound_on_a_hand_made_case():
    # three turns handed over at 1.0, 1.0, 1.2 s, each needing 0.5 CPU s, ending (ground truth) at
    # 0.4, 0.4, 0.6 s: one core finishes them at 1.5, 2.0, 2.5; two cores at 1.25, 1.5, 1.75
    release, work, end = [1.0, 1.0, 1.2], [0.5, 0.5, 0.5], [0.4, 0.4, 0.6]
    assert metrics.compute_bound_latencies(release, work, end, cores=1) == pytest.approx([1.1, 1.6, 1.9])
    assert metrics.compute_bound_latencies(release, work, end, cores=2) == pytest.approx([0.85, 1.1, 1.15])
    assert metrics.compute_bound_latencies([], [], [], cores=2) == []
    # an idle gap: a turn handed over after the queue drained starts at once
    assert metrics.compute_bound_latencies([0.0, 5.0], [1.0, 1.0], [0.0, 5.0], cores=1) == pytest.approx([1.0, 1.0])
