"""kit advise: the decision from a run's tables (no replay), and from runs it makes on two contrasting rooms."""

import pandas as pd
import pytest

from kit.config import KitError
from kit.results import advise
from kit.results.advise import Situation, decide


def architectures(**rows) -> pd.DataFrame:
    """An architectures table (kit/results/metrics.py) with the columns decide reads: arch -> (p95, missed, cores, pss,
    agents, stt minutes per speaker-hour, dollars: agent, stt, compute)."""
    out = []
    for arch, (p95, missed, cores, pss, agents, minutes, agent_usd, stt_usd, compute_usd) in rows.items():
        out.append({"arch": arch, "latency_p95": p95, "missed": missed, "wer": 0.05, "complete": True, "cpu_s": cores * 60,
                    "window_s": 60.0, "peak_pss_mb": pss, "agent_participants": agents, "stt_minutes_per_speaker_hour": minutes,
                    "dollars_cloud_agent_per_speaker_hour": agent_usd, "dollars_cloud_connection_per_speaker_hour": 0.0,
                    "dollars_cloud_stt_per_speaker_hour": stt_usd, "dollars_selfhost_per_speaker_hour": compute_usd})  # fmt: skip
    return pd.DataFrame(out)


def test_the_cheapest_design_that_holds_is_shipped_and_the_price_where_it_flips_is_given():
    situation = Situation(4, stt_price="stt_deepgram_nova3_streaming_minute", streaming=True, cores=1)
    table = architectures(multi_session=(0.9, 0, 0.3, 400, 1, 60, 0.15, 0.288, 0.01),
                          participant_entrypoint=(0.8, 0, 0.2, 300, 1, 60, 0.15, 0.288, 0.008),
                          multi_dispatch=(0.8, 0, 0.5, 900, 4, 15, 0.60, 0.072, 0.02))  # fmt: skip
    advice = decide(situation, table, "run-1")
    assert (advice.ship, advice.runner_up) == ("participant_entrypoint", "multi_session")
    assert advice.table["holds"].all() and list(advice.table["run_id"].unique()) == ["run-1"]
    text = advice.markdown()
    assert "**Ship participant_entrypoint**" in text and "run-1" in text and "$0.4460 per speaker-hour" in text
    assert "tied on cost" in text, "0.446 against 0.448: the one with fewer cores goes first"
    dear = architectures(multi_session=(0.9, 0, 0.3, 400, 1, 60, 0.15, 0.288, 0.01),
                         participant_entrypoint=(0.8, 0, 0.2, 300, 1, 60, 0.30, 0.288, 0.008))  # fmt: skip
    assert decide(situation, dear, "run-1").ship == "multi_session", "out of the tie, the cheaper wins"


def test_a_design_that_misses_or_is_late_is_never_shipped_and_node_leaves_out_multi_session():
    situation = Situation(32, pattern="meeting", sdk="node", cores=1)
    table = architectures(participant_entrypoint=(2.4, 0, 0.9, 500, 1, 0, 0.01, 0, 0.001),
                          multi_dispatch=(1.2, 0, 0.7, 5000, 32, 0, 0.16, 0, 0.004))  # fmt: skip
    advice = decide(situation, table, "run-2")
    assert advice.ship == "multi_dispatch" and advice.runner_up is None
    assert "multi_session" in advice.excluded and "#1927" in advice.excluded["multi_session"]
    assert "p95 over 1.5 s" in " ".join(advice.reasons)
    late = decide(situation, architectures(participant_entrypoint=(2.4, 0, 0.9, 500, 1, 0, 0.01, 0, 0.001),
                                           multi_dispatch=(1.2, 3, 0.7, 5000, 32, 0, 0.16, 0, 0.004)), "run-3")  # fmt: skip
    assert late.ship is None and "No design holds" in late.markdown()


@pytest.mark.parametrize("kwargs, message", [
    ({"participants": 0}, "--participants"), ({"participants": 4, "pattern": "party"}, "--pattern"),
    ({"participants": 4, "sdk": "go"}, "--sdk"), ({"participants": 4, "streaming": True}, "--streaming"),
    ({"participants": 4, "stt_price": "stt_nobody_minute"}, "stt_nobody_minute"), ({"participants": 4, "cores": 64}, "core"),
])  # fmt: skip
def test_a_situation_that_cannot_be_measured_is_refused_in_one_line(kwargs, message):
    with pytest.raises(KitError, match=message):
        Situation(**kwargs)


@pytest.mark.replay
def test_a_matching_complete_run_is_reused(tmp_path, monkeypatch):
    from kit.run import runner

    situation = Situation(2, stt_price="stt_deepgram_nova3_prerecorded_minute", cores=1)
    config = situation.config(tmp_path)
    assert config.stt.kind == "delay" and config.stt_price == "stt_deepgram_nova3_prerecorded_minute" and config.cpus == 1
    assert advise.matching_run(config) is None
    said = []
    first = advise.advise(situation, tmp_path, say=said.append)
    monkeypatch.setattr(runner, "run", lambda *a, **kw: pytest.fail("the matching run was not reused"))
    again = advise.advise(situation, tmp_path, say=said.append)
    assert said[0].startswith("1 run: 3 designs") and said[1].startswith(f"reusing run {first.runs[0]}")
    assert again.runs == first.runs and again.ship == first.ship


def test_the_stt_price_at_which_the_runner_up_would_win_is_where_the_two_bills_meet():
    """A streaming design sends every minute (60 per speaker-hour), multi-dispatch only the turns (15) but
    bills an agent per person: each costs base + minutes x price, and the two lines meet at one price."""
    situation = Situation(4, stt_price="stt_deepgram_nova3_streaming_minute", streaming=True, cores=1)
    table = architectures(participant_entrypoint=(0.8, 0, 0.2, 300, 1, 60, 0.15, 0.288, 0.008),
                          multi_dispatch=(0.8, 0, 0.5, 900, 4, 15, 0.60, 0.072, 0.02))  # fmt: skip
    advice = decide(situation, table, "run-4")
    assert (advice.ship, advice.runner_up) == ("participant_entrypoint", "multi_dispatch")
    cross = (0.62 - 0.158) / 45  # the bases (agents + compute) apart over the minutes apart
    assert any(f"above ${cross:.4f} per STT audio minute multi_dispatch" in c for c in advice.changes), advice.changes
