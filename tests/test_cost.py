import pandas as pd
import pytest

from kit import cost
from kit.cli import main

PRICES = cost.Pricing(agent_session_minute=0.01, connection_minute=0.0005, vcpu_hour=0.04, gb_hour=0.005, table=None)


def test_bundled_pricing_has_a_source_and_date_for_every_price():
    p = cost.load_pricing()
    assert set(p.table["item"]) == set(cost.ITEMS)
    assert p.table["source_url"].str.startswith("https://").all()
    assert p.table["read_on"].str.match(r"\d{4}-\d{2}-\d{2}$").all()


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


@pytest.mark.parametrize(
    "text, message",
    [
        ("item,price_usd\ncloud_agent_session_minute,0.01\n", "missing column"),
        ("item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,cheap,u,https://x,2026-01-01,\n", "non-negative number"),
        ("item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,0.01,u,,2026-01-01,\n", "needs a source_url"),
        ("item,price_usd,unit,source_url,read_on,note\nbananas,0.01,u,https://x,2026-01-01,\n", "unknown item 'bananas'"),
        ("item,price_usd,unit,source_url,read_on,note\ncloud_agent_session_minute,0.01,u,https://x,2026-01-01,\n", "no price for"),
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
