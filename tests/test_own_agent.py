"""`kit live --agent CMD`: your own agent worker measured in a real room (a local livekit-server),
the example agents of examples/, and what a broken agent gets told."""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
import pytest
from synthetic import SHORT_ROOM
from test_live_server import kit, kit_env, leaks, mentions, only_run

from kit.config import REPO_ROOT, KitError
from kit.live.agents import AgentWorker, ExternalAgent
from kit.results import cost
from kit.results.metrics import utterances
from kit.room.scenario import load
from kit.run.record import RunRecord

pytestmark = pytest.mark.server  # a real livekit-server (tests/conftest.py: markers)

PY = sys.executable
SILENT = f"{PY} {REPO_ROOT / 'tests' / 'agents' / 'silent_agent.py'} start"


def measure(server, tmp_path, command: str, *args: str, room: str = SHORT_ROOM):
    """`kit live --agent command` on a room (the short one unless named) against the session's server, as a user runs it."""
    done = kit("live", "--scenario", room, "--agent", command, "--results", str(tmp_path), "--no-report", *args,
               env=kit_env(server))  # fmt: skip
    return done, only_run(tmp_path)


# --- the rules, without a server ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"command": " "}, "--agent needs a command"),
    ({"command": "x", "dispatch": "room"}, "needs --agent-name"),
    ({"command": "x", "dispatch": "auto", "name": "mine"}, "dispatches nothing"),
    ({"command": "x", "dispatch": "token", "name": "mine"}, "must be one of room, participant, auto"),
    ({"command": "x", "dispatch": "room", "name": "mine", "label": "multi_session"}, "is one of the kit's designs"),
])  # fmt: skip
def test_agent_options_refused_with_a_reason(kwargs, message):
    with pytest.raises(KitError, match=message):
        ExternalAgent(**kwargs)


def test_participant_dispatch_names_each_participant_in_its_metadata():
    agent = ExternalAgent("x", name="mine", dispatch="participant")
    assert [json.loads(m) for m in agent.metadata(["alice", "bob"])] == [{"participant_identity": "alice"},
                                                                        {"participant_identity": "bob"}]  # fmt: skip
    assert ExternalAgent("x", name="mine").metadata(["alice", "bob"]) == [""]


def test_finals_without_a_vad_span_match_the_utterance_that_ended_last_before_they_arrived():
    sc = load("pair-2")
    first, second = [u for u in sc.utterances if u.participant == "alice"][:2]
    finals = pd.DataFrame([  # your agent reports no span: only when each final arrived
        {"arch": "mine", "kind": "final", "participant": "alice", "text": "one", "t": first.end_s + 1.5},
        {"arch": "mine", "kind": "final", "participant": "alice", "text": "two", "t": second.end_s + 0.9},
        {"arch": "mine", "kind": "final", "participant": "alice", "text": "early", "t": first.start_s - 0.5},
    ]).assign(speech_start=float("nan"), speech_end=float("nan"), infer_s=float("nan"), stt_cpu_s=float("nan"))
    utts = utterances(sc, finals, 0.55, ["mine"]).set_index(["participant", "utt"])
    i, j = sc.utterances.index(first), sc.utterances.index(second)
    assert utts.loc[("alice", i), "hyp_text"] == "one" and utts.loc[("alice", i), "latency_s"] == pytest.approx(1.5)
    assert utts.loc[("alice", j), "hyp_text"] == "two" and utts.loc[("alice", j), "latency_s"] == pytest.approx(0.9)
    assert (utts.reset_index()["kind"] == "insertion").sum() == 1  # before anyone spoke: nothing to match


def test_a_worker_that_says_it_is_full_is_known_to_be_full():
    """Both SDKs log when a production worker's load crosses load_threshold and back: while it is
    full the server gives it no job (and the kit waits before dispatching)."""
    lines = ["registered worker", "worker is at full capacity, marking as unavailable",
             "worker is below capacity, marking as available"]  # fmt: skip
    script = "; ".join(f"echo '{line}'; sleep 0.5" for line in lines) + "; sleep 5"
    with AgentWorker(script, "the test worker", log=None) as worker:
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            if not seen or seen[-1] != worker.full:
                seen.append(worker.full)
            time.sleep(0.05)
    assert seen == [False, True, False]


# --- a real server ------------------------------------------------------------------------------------------


def test_an_agent_that_exits_at_once_is_named_with_its_exit_code_and_output(livekit_server, tmp_path):
    done, run_dir = measure(livekit_server, tmp_path, f"{PY} -c \"print('cannot start: no model'); raise SystemExit(3)\"",
                            "--label", "broken")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "exited before registering (exit code 3)" in done.stderr and "cannot start: no model" in done.stderr
    record = RunRecord.load(run_dir)
    assert record.archs["broken"].problems and not record.archs["broken"].complete


def test_an_agent_that_publishes_nothing_is_told_what_was_seen(livekit_server, tmp_path):
    done, run_dir = measure(livekit_server, tmp_path, SILENT, "--agent-name", "kit-test-silent", "--label", "silent")
    assert done.returncode == 1
    assert "the agent published no final transcription: 1 agent participant(s) joined, 0 lk.transcription" in done.stderr
    archs = pd.read_csv(run_dir / "architectures.csv")  # the tables are kept: every utterance missed, the agent counted
    row = archs.set_index("arch").loc["silent"]
    assert row["missed"] == row["utterances"] > 0 and row["agent_participants"] == 1 and row["cpu_s"] > 0
    # it also asked the stand-in for TTS, and for STT with a token signed with another secret: both
    # refused at once, and named in its row
    problems = RunRecord.load(run_dir).archs["silent"].problems
    assert any("refused 1 inference request(s) (404)" in p and "text-to-speech" in p and "cartesia/sonic-3" in p
               for p in problems), problems  # fmt: skip
    assert any("refused 1 inference request(s) (401): invalid token" in p for p in problems), problems
    assert not any("not-the-servers-secret" in p for p in problems)
    assert not leaks(done.stdout + done.stderr, livekit_server.env()["LIVEKIT_API_SECRET"])
    assert not mentions(tmp_path, livekit_server.env()["LIVEKIT_API_SECRET"])


# --- the example agents users copy (examples/), measured on pair-2 -------------------------------------------

NODE = REPO_ROOT / "examples" / "node"
EXAMPLES = {  # label: (command, --dispatch), as docs/own-agent.md runs them
    "py-multi-session": (f"{PY} {REPO_ROOT / 'examples' / 'python' / 'multi_session_agent.py'} start", "room"),
    "py-participant-streams": (f"{PY} {REPO_ROOT / 'examples' / 'python' / 'participant_streams_agent.py'} start", "room"),
    "py-dispatch-per-participant": (f"{PY} {REPO_ROOT / 'examples' / 'python' / 'dispatch_per_participant_agent.py'} start",
                                    "participant"),  # fmt: skip
    "py-active-speaker": (f"{PY} {REPO_ROOT / 'examples' / 'python' / 'active_speaker_agent.py'} start", "room"),
    "node-multi-session": (f"node {NODE / 'multi-session.mjs'} start", "room"),
    "node-participant-streams": (f"node {NODE / 'participant-streams.mjs'} start", "room"),
    "node-dispatch-per-participant": (f"node {NODE / 'dispatch-per-participant.mjs'} start", "participant"),
}


@pytest.fixture(scope="module")
def examples_measured(livekit_server, tmp_path_factory):
    if not (NODE / "node_modules" / "@livekit" / "agents").is_dir():
        pytest.fail("examples/node has no node_modules: run `make node` (make test does)")
    runs = {}
    for label, (command, dispatch) in EXAMPLES.items():
        results = tmp_path_factory.mktemp(label)
        done, run_dir = measure(livekit_server, results, command, "--agent-name", f"kit-test-{label}", "--label", label,
                                "--dispatch", dispatch, room="pair-2")  # fmt: skip
        runs[label] = (done, run_dir, pd.read_csv(run_dir / "architectures.csv").set_index("arch").loc[label])
    return runs


# label: the STT API and model the unmodified example asked the stand-in for, and its agent participants
UNMODIFIED = {"py-multi-session": ("inference", "deepgram/nova-3", 1), "py-participant-streams": ("openai", "gpt-4o-transcribe", 1),
              "py-dispatch-per-participant": ("deepgram", "nova-3", 2), "node-participant-streams": ("inference", "deepgram/nova-3", 1),
              "py-active-speaker": ("inference", "deepgram/nova-3", 1)}  # fmt: skip


ONE_STREAM = {"py-active-speaker"}  # one session, one STT stream, following the active speaker


@pytest.mark.parametrize("label", list(UNMODIFIED))
def test_an_example_agent_transcribes_every_utterance(examples_measured, label):
    """Each example as users copy it (no base URL but Deepgram's, which its plugin cannot read from the
    environment): every utterance matched, its STT API and model recorded, each speaker's STT audio
    counted by the service and billed at that model's price."""
    done, run_dir, row = examples_measured[label]
    api, model, agents = UNMODIFIED[label]
    assert done.returncode == 0, done.stderr[-2000:]
    # the active speaker's session switches when the server says someone else speaks: their first words go by
    # before it (WER 0.28 on an idle machine, every utterance matched; beside the suite's other workers a late
    # switch lost a short turn: a baseline, one miss allowed)
    if label in ONE_STREAM:
        assert row["missed"] <= 1 and row["utterances"] == 4 and row["wer"] <= 0.6, row[["missed", "wer"]]
    else:
        assert row["missed"] == 0 and row["utterances"] == 4 and row["wer"] <= 0.35
    assert row["cpu_s"] > 0 and row["peak_pss_mb"] > 0 and row["processes"] >= 1  # its tree was sampled
    assert row["agent_participants"] == agents
    assert (row["stt_api"], row["stt_model"]) == (api, model)
    info = RunRecord.load(run_dir).archs[label]
    assert (info.stt_api, info.stt_model) == (api, model)
    speakers = pd.read_csv(run_dir / "speakers.csv").set_index("participant")
    if label in ONE_STREAM:  # one STT stream for the room, counted under the participant it began with
        assert speakers["stt_audio_s"].sum() > 6, speakers["stt_audio_s"]
    else:
        assert (speakers["stt_audio_s"] > 3).all(), speakers["stt_audio_s"]  # each speaker's own, attributed by its audio
    priced = cost.load_pricing().stt_item_for(api, model)
    assert row["stt_price_item"] == priced if priced else pd.isna(row["stt_price_item"])


@pytest.mark.node
def test_the_dispatch_per_participant_example_gets_one_agent_per_participant(examples_measured):
    """One job per participant, as the server counts them. Its session stays open when its participant
    leaves until their last final is out (closing at the disconnect lost pair-2's last sentence); its
    matches are measured, not asserted: on a busy machine its VAD falls behind (docs/own-agent.md)."""
    done, run_dir, row = examples_measured["node-dispatch-per-participant"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert row["agent_participants"] == 2 and row["jobs"] == 2 and row["cpu_s"] > 0 and row["utterances"] == 4


@pytest.mark.node
def test_the_node_multi_session_example_shows_what_1927_loses(examples_measured):
    """One AgentSession per participant in one job (agents-js #1927): measured as it is, whatever it does."""
    done, run_dir, row = examples_measured["node-multi-session"]
    speakers = pd.read_csv(run_dir / "speakers.csv")
    got = speakers[speakers["arch"] == "node-multi-session"].set_index("participant")["matched"]
    assert set(got.index) == {"alice", "bob"} and row["agent_participants"] == 1
    log = (run_dir / "agent-node-multi-session.log").read_text()
    if "has already been set" in log:  # 1.9.0: the second session never starts, its participant is lost
        assert done.returncode == 0 and (got == 0).sum() >= 1
    else:
        assert row["missed"] == 0


@pytest.mark.node
def test_node_check_prints_its_one_line(livekit_server, tmp_path):
    from test_live_server import kit as run_kit

    done = run_kit("node-check", "--results", str(tmp_path), env=kit_env())
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith("@livekit/agents 1.9.0: two AgentSessions in one room: ")
    assert line.endswith(": works") or "reproduced #1927 (A byte stream handler for topic" in line or "fails otherwise" in line


def test_two_copies_of_your_agent_each_on_its_own_core(livekit_server, tmp_path):
    """--agent CMD --workers 2 --cpus-per-worker 1: two copies of the unmodified Python per-participant
    example, each pinned to its own core (read from /proc while they ran), each with its own log; the
    server gives the two participants' jobs to the fleet, and every utterance is matched."""
    import os

    command, dispatch = EXAMPLES["py-dispatch-per-participant"]
    done, run_dir = measure(livekit_server, tmp_path, command, "--agent-name", "kit-test-fleet", "--label", "fleet",
                            "--dispatch", dispatch, "--workers", "2", "--cpus-per-worker", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    info = RunRecord.load(run_dir).archs["fleet"]
    assert len(info.worker_pids) == 2 and info.worker_cores == sorted(os.sched_getaffinity(0))[:2]
    for log in ("agent-fleet.log", "agent-fleet-2.log"):
        assert "registered worker" in (run_dir / log).read_text(), log
    row = pd.read_csv(run_dir / "architectures.csv").set_index("arch").loc["fleet"]
    assert row["missed"] == 0 and row["agent_participants"] == 2 and row["processes"] >= 2
