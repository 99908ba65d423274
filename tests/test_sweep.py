import numpy as np
import pandas as pd
import pytest

from kit.cli import main
from kit.results import sweep
from kit.room import scenario


def test_fit_recovers_a_known_line():
    n = np.array([1, 2, 4, 8], dtype=float)
    fixed, marginal, r2 = sweep.fit_line(n, 0.2 + 0.15 * n)
    assert (fixed, marginal, r2) == pytest.approx((0.2, 0.15, 1.0))
    noisy = 0.2 + 0.15 * n + np.array([0.01, -0.01, 0.01, -0.01])
    assert sweep.fit_line(n, noisy)[1] == pytest.approx(0.15, abs=0.01)
    assert np.isnan(sweep.fit_line(np.array([4.0]), np.array([1.0]))[1])
    assert all(np.isnan(sweep.fit_line(np.array([]), np.array([]))))  # every N refused: no fit, no warning


def test_sweep_rooms_are_deterministic_with_distinct_concurrent_speakers(tmp_path):
    assert sweep.sweep_script(5) == sweep.sweep_script(5)
    room = sweep.sweep_room(3, lines=2, cache=tmp_path)
    assert sweep.sweep_room(3, lines=2, cache=tmp_path) == room  # cached
    sc = scenario.load(room)
    assert sc.identities == ["s01", "s02", "s03"]
    voices = [line.split('"')[1] for line in sweep.sweep_script(8).splitlines() if line.startswith("voice")]
    assert len(set(voices)) == 8
    first = {}
    for u in sorted(sc.utterances, key=lambda u: u.start_s):
        first.setdefault(u.participant, u)
    assert max(u.start_s for u in first.values()) < min(u.end_s for u in first.values()), "they talk at once"


def test_capacity_is_the_largest_n_under_threshold():
    table = pd.DataFrame({"arch": ["a"] * 3 + ["b"] * 2, "participants": [1, 2, 4, 1, 2],
                          "latency_p95": [1.0, 1.4, 2.0, 2.0, 2.5], "missed": [0] * 5, "cpus": [1] * 5})
    cap = sweep.capacity(table, 1.5)
    assert cap["max_participants"].tolist() == [2, 0] and cap["cpus"].tolist()[0] == 1


@pytest.mark.replay
@pytest.mark.whisper
def test_tiny_sweep_end_to_end(tmp_path, capsys):
    code = main(["sweep", "--participants", "1,2", "--lines", "1", "--arch", "participant_entrypoint", "--results",
                 str(tmp_path), "--cpus", "1"])  # fmt: skip
    assert code == 0
    (sweep_dir,) = tmp_path.iterdir()
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert table["participants"].tolist() == [1, 2] and table["speakers"].tolist() == [1, 2]
    assert (table["pattern"] == "all-talk").all() and (table["cpus"] == 1).all()
    assert (table["stt_placement"] == "in-process").all()
    assert (table["compute_bound_p95"] > 0).all() and (table["p95_over_bound"] >= 1.0).all(), "no run beats the bound"
    assert (table["missed"] == 0).all() and table["latency_p95"].between(0.3, 5.0).all()
    assert (table["processes"] == 1).all() and (table["agent_participants"] == 1).all()
    assert (table["cores"] > 0).all() and (table["dollars_cloud_per_speaker_hour"] > 0).all()
    assert table.loc[1, "dollars_cloud_per_speaker_hour"] == pytest.approx(table.loc[0, "dollars_cloud_per_speaker_hour"] / 2)
    fits = pd.read_csv(sweep_dir / "fits.csv")
    assert set(fits["resource"]) == {"cores", "peak_pss_mb"}
    assert "largest N with p95 latency" in capsys.readouterr().out


def test_reading_and_scaling_figure_from_a_known_table():
    from kit.results import plots

    table = pd.DataFrame({
        "arch": ["a"] * 3 + ["b"] * 3, "participants": [1, 2, 4] * 2, "cpus": [2] * 6,
        "latency_p95": [1.0, 1.1, 1.2, 1.0, 1.4, 3.2], "missed": [0] * 6,
        "cores": [0.2, 0.35, 0.65, 0.3, 0.6, 1.2], "peak_pss_mb": [700, 720, 760, 700, 1000, 1600],
    })  # fmt: skip
    fits = sweep.fits(table)
    text = sweep.reading(table, fits, 1.5)
    assert "**a** held p95 ≤ 1.5 s up to **4** participants (the largest N tried)" in text
    assert "**b** held p95 ≤ 1.5 s up to **2** participants" in text and "0.150 cores" in text
    assert "On 2 core(s) the most participants within the threshold: **a**, 2.0 participants per core." in text
    fig = plots.scaling(table, fits, 1.5)
    assert [ax.get_ylabel() for ax in fig.axes] == ["p95 latency (s)", "cores busy (CPU s per room s)", "peak PSS (MB)"]


def test_a_meeting_sweep_room_and_a_bad_pattern(tmp_path):
    from kit.config import KitError, RunConfig

    room = scenario.load(sweep.pattern_room("meeting", 8))
    assert len(room.participants) == 8 and len({u.participant for u in room.utterances}) < 8, "some never speak"
    with pytest.raises(KitError, match="unknown --pattern"):
        sweep.run_sweep([2], RunConfig(results_dir=tmp_path), pattern="everyone")
