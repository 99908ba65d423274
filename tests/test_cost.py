import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from kit.cli import main
from kit.results import cost
from kit.results.resources import transport_cpu

PRICES = cost.Pricing(agent_session_minute=0.01, connection_minute=0.0005, vcpu_hour=0.04, gb_hour=0.005, table=None)
STT = pd.DataFrame([{"item": "stt_hand_streaming_minute", "price_usd": 0.0077, "unit": "USD per audio minute",
                     "source_url": "https://example.com", "read_on": "2026-12-02", "note": ""}])  # fmt: skip
PRICES_STT = dataclasses.replace(PRICES, stt=STT)
HEADER = "item,price_usd,unit,source_url,read_on,note\n"
REQUIRED = "".join(f"{item},0.01,u,https://x,2026-01-01,\n" for item in cost.ITEMS)


def test_bundled_pricing_has_a_source_and_date_for_every_price():
    p = cost.load_pricing()
    items = set(p.table["item"])
    assert set(cost.ITEMS) <= items and items - set(cost.ITEMS) == set(p.stt_items())
    assert p.table["source_url"].str.startswith("https://").all()
    assert p.table["read_on"].str.match(r"\d{4}-\d{2}-\d{2}$").all()
    assert pd.to_datetime(p.table["read_on"], format="%Y-%m-%d").notna().all()
    assert (p.table["note"].str.len() > 20).all(), "every row says which plan and where the figure comes from"


def test_bundled_stt_prices_cover_three_providers_streaming_and_batch():
    p = cost.load_pricing()
    assert (p.stt["unit"] == "USD per audio minute").all() and (p.stt["price_usd"] > 0).all()
    providers = {i.split("_")[1] for i in p.stt_items()}
    assert {"deepgram", "assemblyai", "livekit", "openai"} <= providers
    assert any("streaming" in i for i in p.stt_items()) and any(("batch" in i or "prerecorded" in i) for i in p.stt_items())
    assert p.stt_price("stt_deepgram_nova3_streaming_minute") == pytest.approx(0.0048)
    # a page that could not be read says so in its row's note
    unread = p.stt[~p.stt["source_url"].str.contains("developers.openai.com")]
    assert unread["note"].str.contains("could not be read|not read").all()


def test_a_pricing_file_without_stt_rows_still_loads(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text(HEADER + REQUIRED)
    p = cost.load_pricing(f)
    assert p.stt_items() == [] and p.agent_session_minute == 0.01
    with pytest.raises(cost.PricingError, match="known STT items: none in this pricing file"):
        p.stt_price("stt_deepgram_nova3_streaming_minute")


def test_cloud_dollars_by_hand():
    # one agent participant for 4 speakers: 60 min x (0.01 + 0.0005) / 4
    assert cost.cloud_per_speaker_hour(PRICES, agent_participants=1, speakers=4) == pytest.approx(0.1575)
    # multi-dispatch: one agent participant per speaker -> 60 x 0.0105
    assert cost.cloud_per_speaker_hour(PRICES, agent_participants=4, speakers=4) == pytest.approx(0.63)


def test_selfhost_dollars_by_hand():
    # 0.1 core and 512 MB for an hour: 0.1 x 0.04 + 0.5 x 0.005
    assert cost.selfhost_per_speaker_hour(PRICES, cores=0.1, memory_mb=512) == pytest.approx(0.0065)


def test_add_dollars_per_design():
    archs = pd.DataFrame({
        "arch": ["participant_entrypoint", "multi_dispatch"], "agent_participants": [1, 2], "speakers": [2, 2],
        "cpu_s": [12.0, 24.0], "window_s": [60.0, 60.0], "peak_pss_mb": [1024.0, 2048.0],
    })  # fmt: skip
    spk = pd.DataFrame({"arch": ["participant_entrypoint"] * 2 + ["multi_dispatch"] * 2,
                        "cpu_s": [6.0, 6.0, 12.0, 12.0], "pss_mb": [512.0, 512.0, 1024.0, 1024.0]})  # fmt: skip
    cost.add_dollars(spk, archs, PRICES)
    # single job: 0.2 cores / 2 speakers = 0.1 core and 0.5 GB each
    assert archs["dollars_selfhost_per_speaker_hour"].tolist() == pytest.approx([0.0065, 0.2 * 0.04 + 1.0 * 0.005])
    assert archs["dollars_cloud_per_speaker_hour"].tolist() == pytest.approx([0.315, 0.63])
    assert spk["dollars_selfhost_per_speaker_hour"].tolist()[0] == pytest.approx(0.0065)


def _room(stt_audio: dict | None):
    """2 speakers; participant_entrypoint (1 agent participant, VAD-gated: 30 s of speech each sent)
    and multi_dispatch (2 agent participants, a streaming STT fed everything: 60 s each), 60 s window."""
    archs = pd.DataFrame({
        "arch": ["participant_entrypoint", "multi_dispatch"], "agent_participants": [1, 2], "speakers": [2, 2],
        "cpu_s": [12.0, 24.0], "window_s": [60.0, 60.0], "peak_pss_mb": [1024.0, 2048.0],
    })  # fmt: skip
    spk = pd.DataFrame({"arch": ["participant_entrypoint"] * 2 + ["multi_dispatch"] * 2,
                        "participant": ["alice", "bob"] * 2,
                        "cpu_s": [6.0, 6.0, 12.0, 12.0], "pss_mb": [512.0, 512.0, 1024.0, 1024.0]})  # fmt: skip
    if stt_audio is not None:
        spk["stt_audio_s"] = stt_audio["speakers"]
        archs["stt_audio_s"] = stt_audio["architectures"]
    return spk, archs


MEASURED = {"speakers": [30.0, 30.0, 60.0, 60.0], "architectures": [60.0, 120.0]}


def test_the_bill_by_hand():
    spk, archs = _room(MEASURED)
    cost.add_dollars(spk, archs, PRICES_STT, stt_item="stt_hand_streaming_minute")
    a = archs.set_index("arch")
    # participant_entrypoint: 1 agent participant for 2 speakers
    #   agent session: 1 x 60 min x $0.01 / 2 = $0.30; connection: 1 x 60 x $0.0005 / 2 = $0.015
    #   STT: 60 s sent in a 60 s window = 60 min per room-hour, / 2 speakers = 30 min x $0.0077 = $0.231
    #   total $0.546
    pe = a.loc["participant_entrypoint"]
    assert pe["stt_minutes_per_speaker_hour"] == pytest.approx(30.0)
    assert [pe[c] for c in cost.CLOUD_PARTS] == pytest.approx([0.30, 0.015, 0.231])
    assert pe[cost.CLOUD_TOTAL] == pytest.approx(0.546)
    # multi_dispatch: 2 agent participants, the whole 60 s of each participant streamed
    #   agent $0.60, connection $0.03, STT 120 s / 60 s x 60 / 2 = 60 min x $0.0077 = $0.462, total $1.092
    md = a.loc["multi_dispatch"]
    assert [md[c] for c in cost.CLOUD_PARTS] == pytest.approx([0.60, 0.03, 0.462])
    assert md[cost.CLOUD_TOTAL] == pytest.approx(1.092)
    # per speaker: its share of the agent participants, its own audio (alice 30 s of 60 s -> 30 min/h)
    alice = spk[(spk["arch"] == "participant_entrypoint") & (spk["participant"] == "alice")].iloc[0]
    assert alice["stt_minutes_per_speaker_hour"] == pytest.approx(30.0)
    assert [alice[c] for c in cost.CLOUD_PARTS] == pytest.approx([0.30, 0.015, 0.231])
    assert alice[cost.CLOUD_TOTAL] == pytest.approx(0.546)
    assert (spk["stt_price_item"] == "stt_hand_streaming_minute").all() and (archs["stt_price_usd_per_minute"] == 0.0077).all()
    # the self-hosted price does not change: 0.1 core and 0.5 GB per speaker
    assert pe[cost.SELFHOST] == pytest.approx(0.0065)
    assert archs[cost.STT_MUTED].isna().all()  # no muted time measured: not priced, not 0


def test_the_stt_bill_of_muted_time():
    """30 s streamed while muted, at $0.0077 a minute: $0.00385 in this run."""
    spk, archs = _room(MEASURED)
    spk["muted_stt_audio_s"], archs["muted_stt_audio_s"] = [30.0, 0.0, 0.0, 0.0], [30.0, 0.0]
    cost.add_dollars(spk, archs, PRICES_STT, stt_item="stt_hand_streaming_minute")
    assert list(archs[cost.STT_MUTED]) == pytest.approx([0.00385, 0.0])
    assert list(spk[cost.STT_MUTED]) == pytest.approx([0.00385, 0.0, 0.0, 0.0])
    cost.add_dollars(spk, archs, PRICES_STT)  # no STT price: the muted time is not priced
    assert archs[cost.STT_MUTED].isna().all()


def test_an_unknown_stt_price_is_refused_naming_the_known_ones():
    spk, archs = _room(MEASURED)
    before = list(archs.columns)
    with pytest.raises(cost.PricingError, match=r"unknown STT price 'stt_nope_minute' \(known STT items: stt_hand_streaming_minute\)"):
        cost.add_dollars(spk, archs, PRICES_STT, stt_item="stt_nope_minute")
    assert list(archs.columns) == before, "nothing written"
    with pytest.raises(cost.PricingError, match="stt_deepgram_nova3_streaming_minute"):
        cost.load_pricing().stt_price("deepgram")


def test_stt_audio_not_measured_is_nan_never_zero():
    # stt_audio_s absent (before the measurement lands): with an STT price the STT part and the bill are NaN
    spk, archs = _room(None)
    cost.add_dollars(spk, archs, PRICES_STT, stt_item="stt_hand_streaming_minute")
    for table in (spk, archs):
        assert table["stt_minutes_per_speaker_hour"].isna().all()
        assert table[cost.CLOUD_STT].isna().all() and table[cost.CLOUD_TOTAL].isna().all()
        assert table[cost.CLOUD_AGENT].notna().all() and table[cost.CLOUD_CONNECTION].notna().all()
    # without an STT price: the STT part is NaN (not priced), the bill is agent + connection as before
    spk, archs = _room(MEASURED)
    cost.add_dollars(spk, archs, PRICES)
    assert archs[cost.CLOUD_STT].isna().all() and archs["stt_minutes_per_speaker_hour"].tolist() == pytest.approx([30.0, 60.0])
    assert archs[cost.CLOUD_TOTAL].tolist() == pytest.approx([0.315, 0.63]) and archs["stt_price_item"].isna().all()
    # one speaker's audio NaN: only that speaker's STT part is NaN
    spk, archs = _room({"speakers": [30.0, math.nan, 60.0, 60.0], "architectures": [math.nan, 120.0]})
    cost.add_dollars(spk, archs, PRICES_STT, stt_item="stt_hand_streaming_minute")
    assert spk[cost.CLOUD_STT].isna().tolist() == [False, True, False, False]
    assert archs[cost.CLOUD_TOTAL].isna().tolist() == [True, False]


def test_stt_minutes_per_hour():
    assert cost.stt_minutes_per_hour(30.0, 60.0) == pytest.approx(30.0)
    assert cost.stt_minutes_per_hour(0.0, 60.0) == 0.0, "measured nothing sent is 0"
    for audio, window in [(math.nan, 60.0), (None, 60.0), (30.0, 0.0), (30.0, math.nan)]:
        assert math.isnan(cost.stt_minutes_per_hour(audio, window))


@pytest.mark.parametrize(
    "text, message",
    [
        ("item,price_usd\ncloud_agent_session_minute,0.01\n", "missing column"),
        ("item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,cheap,u,https://x,2026-01-01,\n", "non-negative number"),
        ("item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,0.01,u,,2026-01-01,\n", "needs a source_url"),
        ("item,price_usd,unit,source_url,read_on,note\nbananas,0.01,u,https://x,2026-01-01,\n", "unknown item 'bananas'"),
        ("item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,0.01,u,https://x,2026-01-01,\n", "no price for"),
        (HEADER + REQUIRED + "stt_deepgram,0.0048,u,https://x,2026-01-01,\n", "unknown item 'stt_deepgram'"),
        (HEADER + REQUIRED + "stt_x_minute,0.0048,u,,2026-01-01,\n", "stt_x_minute needs a source_url"),
        (HEADER + REQUIRED + "stt_x_minute,-1,u,https://x,2026-01-01,\n", "price of stt_x_minute must be a non-negative"),
        (HEADER + REQUIRED + "stt_x_minute,0.1,u,https://x,2026-01-01,\n" * 2, "stt_x_minute is priced twice"),
    ],
)
def test_bad_pricing_files(tmp_path, text, message):
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(cost.PricingError, match=message):
        cost.load_pricing(f)


def test_cli_rejects_a_bad_pricing_file_before_running(tmp_path, capsys):
    assert main(["compare", "--scenario", "pair-2", "--pricing", str(tmp_path / "none.csv"), "--results", str(tmp_path / "r")]) == 2
    assert "pricing file not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_each_design_billed_at_the_model_it_asked_for():
    """A dict of price rows: each design its own (None: not priced); the bundled file names the models."""
    bundled = cost.load_pricing()
    assert bundled.stt_item_for("inference", "deepgram/nova-3") == "stt_livekit_inference_deepgram_nova3_minute"
    assert bundled.stt_item_for("deepgram", "nova-3") == "stt_deepgram_nova3_streaming_minute"
    assert bundled.stt_item_for("inference", "someone/unpriced") is None
    assert bundled.stt_item_for("inference, openai", "deepgram/nova-3, whisper-1") is None  # several: no one price
    assert PRICES_STT.stt_item_for("inference", "deepgram/nova-3") is None  # a file without the model column
    spk, archs = _room(MEASURED)
    cost.add_dollars(spk, archs, PRICES_STT, stt_item={"participant_entrypoint": "stt_hand_streaming_minute", "multi_dispatch": None})
    a = archs.set_index("arch")
    assert a.loc["participant_entrypoint", cost.CLOUD_STT] == pytest.approx(0.231)
    assert a.loc["participant_entrypoint", cost.CLOUD_TOTAL] == pytest.approx(0.546)
    assert math.isnan(a.loc["multi_dispatch", cost.CLOUD_STT]) and a.loc["multi_dispatch", cost.CLOUD_TOTAL] == pytest.approx(0.63)
    assert a.loc["participant_entrypoint", "stt_price_item"] == "stt_hand_streaming_minute" and a["stt_price_item"].isna().tolist() == [False, True]
    assert spk.groupby("arch")["stt_price_item"].first().dropna().to_dict() == {"participant_entrypoint": "stt_hand_streaming_minute"}


def test_transport_cpu_counts_the_window_only():
    """Per process: from its last sample at or before t0 to its threads' peak inside the window;
    a process that started inside the window counts from zero; other threads are inference."""
    rows = [  # pid 1 ran before t0; pid 2 started at t0 + 5 and exited before the last sample
        {"mono": 9.0, "arch": "a", "pid": 1, "threads": {"tokio-rt-worker": 4.0, "python": 50.0}},
        {"mono": 12.0, "arch": "a", "pid": 1, "threads": {"tokio-rt-worker": 5.0, "python": 60.0}},
        {"mono": 15.0, "arch": "a", "pid": 2, "threads": {"network_thread": 0.5, "rtc-worker": 0.25}},
        {"mono": 20.0, "arch": "a", "pid": 1, "threads": {"tokio-rt-worker": 7.0, "python": 70.0}},
        {"mono": 30.0, "arch": "a", "pid": 1, "threads": {"tokio-rt-worker": 9.0}},  # after the window
        {"mono": 12.0, "arch": "b", "pid": 3, "threads": {"tokio-rt-worker": 100.0}},
    ]
    res = pd.DataFrame(rows)
    assert transport_cpu(res, "a", t0=10.0, end=25.0) == pytest.approx((7.0 - 4.0) + (0.5 + 0.25))
    console = pd.DataFrame([{**r, "threads": None} for r in rows])
    assert np.isnan(transport_cpu(console, "a", t0=10.0, end=25.0))
