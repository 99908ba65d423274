"""A fleet of agent workers (--workers K --cpus-per-worker C): the cores each gets, and which worker
served each speaker, found through the process tree. (Live, against a real server: tests/test_live_server.py.)"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from kit.config import KitError, RunConfig, fleet_cores
from kit.results.fleet import served_by, speech_lost


def test_each_worker_gets_its_own_block_of_cores():
    allowed = sorted(os.sched_getaffinity(0))
    assert fleet_cores(2, None) == [None, None]
    assert fleet_cores(len(allowed), 1) == [[c] for c in allowed]
    with pytest.raises(KitError, match="needs"):
        fleet_cores(len(allowed) + 1, 1)


def test_a_fleet_worker_is_told_it_is_one_and_one_worker_is_not():
    assert "--workers" not in RunConfig().to_args()
    args = RunConfig(workers=2, cpus_per_worker=1).to_args()
    assert args[args.index("--workers") + 1] == "2"
    with pytest.raises(KitError, match="--workers"):
        RunConfig(workers=0)


def test_a_speaker_is_served_by_the_worker_at_the_top_of_its_jobs_process_tree():
    # worker 10 -> forkserver 11 -> job 12 (j1: alice, and dave, who joins later); worker 20 -> job 21 (j2: bob);
    # job 31 of a tree that is no worker's (j3: carol)
    resources = pd.DataFrame({"pid": [10, 11, 12, 20, 21, 31, 12], "ppid": [1, 10, 11, 1, 20, 30, 11]})
    events = pd.DataFrame({"kind": ["job_start"] * 3 + ["final"], "pid": [12, 21, 31, 12], "job": ["j1", "j2", "j3", "j1"]})
    plan = {"j1": ["alice", "dave"], "j2": ["bob"], "j3": ["carol"]}
    assert served_by(events, resources, [10, 20], plan) == {"alice": 1, "dave": 1, "bob": 2}
    assert served_by(events, resources.iloc[:0], [10, 20], plan) == {}
    # worker 2 stopped before its job: the last sample of its job's process names init as its parent
    orphaned = pd.concat([resources, pd.DataFrame({"pid": [21], "ppid": [1]})], ignore_index=True)
    assert served_by(events, orphaned, [10, 20], plan) == {"alice": 1, "dave": 1, "bob": 2}
    # --redispatch: j1 lost with worker 1 and run again by worker 2 (job 22): its speakers stay worker 1's
    again = pd.concat([events, pd.DataFrame({"kind": ["job_start"], "pid": [22], "job": ["j1"]})], ignore_index=True)
    more = pd.concat([resources, pd.DataFrame({"pid": [22], "ppid": [20]})], ignore_index=True)
    assert served_by(again, more, [10, 20], plan) == {"alice": 1, "dave": 1, "bob": 2}


def test_speech_lost_is_the_missed_reference_speech_that_ended_after_the_kill():
    utts = pd.DataFrame({"kind": ["reference", "reference", "reference", "insertion"], "participant": ["a", "a", "b", "b"],
                         "missed": [True, True, False, False], "start_s": [0.0, 4.0, 4.0, 5.0], "end_s": [2.5, 6.0, 6.0, 5.5]})  # fmt: skip
    assert speech_lost(utts, 3.0).to_dict() == {"a": 2.0}  # the first ended before the kill: missed for another reason
    assert speech_lost(utts, 2.0).to_dict() == {"a": 4.5}
