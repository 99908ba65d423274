"""Hard rooms: overlap, late joiners, leavers, a silent participant, noise — every concurrent design."""

from pathlib import Path

import pytest

from kit.cli import main
from kit.config import DATA_DIR, RunConfig
from kit.results import metrics
from kit.room import scenario
from kit.room.synth import synth
from kit.run.events import read_events
from kit.run.runner import run

CONCURRENT = ("multi_session", "participant_entrypoint", "multi_dispatch")


def _run(room: str | Path, tmp_path: Path, archs=CONCURRENT) -> tuple[Path, metrics.Tables]:
    run_dir = run(RunConfig(scenario=str(room), archs=archs, results_dir=tmp_path))
    return run_dir, metrics.compute(run_dir)


def _every_utterance_matched(tables: metrics.Tables, max_wer: float, archs=CONCURRENT) -> None:
    ref = tables.utterances[(tables.utterances["kind"] == "reference") & tables.utterances["arch"].isin(archs)]
    for arch, u in ref.groupby("arch"):
        assert not u["missed"].any(), (arch, u[u["missed"]][["participant", "ref_text"]])
        assert metrics.wer(list(u["ref_text"]), list(u["hyp_text"])) <= max_wer, arch


@pytest.mark.replay
@pytest.mark.whisper
def test_crosstalk_every_overlapped_utterance_is_transcribed(tmp_path):
    sc = scenario.load("crosstalk")
    assert any(not i.isascii() for i in sc.identities) and any("-" in i for i in sc.identities)
    _, tables = _run("crosstalk", tmp_path, CONCURRENT + ("active_speaker",))
    _every_utterance_matched(tables, 0.35)
    baseline = tables.architectures.set_index("arch").loc["active_speaker"]
    assert baseline["missed"] >= 2, "one session following the loudest speaker cannot hear overlapped speech"
    # no bleed: overlapping speech, each on its own microphone, is nobody else's words
    attribution = tables.architectures.set_index("arch").loc[list(CONCURRENT), ["duplicated", "misattributed"]]
    assert (attribution == 0).all().all(), attribution


@pytest.mark.replay
@pytest.mark.whisper
def test_shared_office_bleed_is_transcribed_twice_by_every_per_track_design(tmp_path):
    """alice and bob share an office (each 20 dB on the other's microphone): every design that gives each
    track its own STT transcribes some of their words under both, and still every utterance under its
    speaker; carol, at home, has nothing duplicated."""
    _, tables = _run("shared-office", tmp_path)
    _every_utterance_matched(tables, 0.35)
    spk = tables.speakers.set_index(["arch", "participant"])
    for arch in CONCURRENT:
        assert tables.architectures.set_index("arch").loc[arch, "duplicated"] > 0, tables.speakers
        assert spk.loc[(arch, "carol"), "duplicated"] == 0


@pytest.mark.replay
@pytest.mark.whisper
def test_comings_and_goings(tmp_path, capsys):
    """Through `compare` as a user runs it: with a silent participant (mo) it exits 0 and writes the report."""
    sc = scenario.load("comings-and-goings")
    args = [a for arch in CONCURRENT + ("active_speaker",) for a in ("--arch", arch)]
    assert main(["compare", "--scenario", "comings-and-goings", "--results", str(tmp_path), *args]) == 0
    run_dir = next(p.parent for p in tmp_path.glob("*/run.json"))
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out
    tables = metrics.compute(run_dir)
    _every_utterance_matched(tables, 0.35, CONCURRENT + ("active_speaker",))  # no overlap: the baseline hears all
    events = read_events(run_dir)
    for arch in CONCURRENT:
        ev = events[events["arch"] == arch]
        assert not (ev["kind"] == "error").any(), arch
        mo = ev[ev["participant"] == "mo"]
        assert (mo["kind"] == "participant_joined").sum() == 1 and not (mo["kind"] == "final").any()
        assert not (mo["kind"] == "recognized").any(), "a silent participant costs no STT"
        left = ev[(ev["participant"] == "lia") & (ev["kind"] == "participant_left")]["t"]
        assert len(left) == 1 and left.iloc[0] - sc.participant("lia").leave_s < 3.0, "the leaver's pipeline closed"
        ken_joined = ev[(ev["participant"] == "ken") & (ev["kind"] == "participant_joined")]["t"].iloc[0]
        assert ken_joined == pytest.approx(sc.participant("ken").join_s, abs=0.5), "the late joiner starts on time"
    spk = tables.speakers.set_index(["arch", "participant"])
    for arch in CONCURRENT:
        assert spk.loc[(arch, "ken"), "matched"] == spk.loc[(arch, "ken"), "utterances"], "from its first word"
        assert spk.loc[(arch, "mo"), ["utterances", "matched", "missed"]].tolist() == [0, 0, 0]


@pytest.mark.replay
@pytest.mark.whisper
def test_noisy_room(tmp_path):
    """A short noisy room (pair-2 with pink noise at 10 dB SNR), so the test stays quick."""
    script = tmp_path / "noisy-pair.toml"
    script.write_text(f'extends = "{DATA_DIR / "scripts" / "pair-2.toml"}"\nname = "noisy-pair"\n'
                      '[noise]\nkind = "pink"\nsnr_db = 10.0\nseed = 1\n')  # fmt: skip
    synth(script, tmp_path / "room")
    _, tables = _run(tmp_path / "room", tmp_path / "results")
    _every_utterance_matched(tables, 0.45)
