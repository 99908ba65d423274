"""Figures from known numbers (a synthetic run): axes, labels and units, one colour per design."""

import re
import shutil

import matplotlib.colors as mcolors
import pytest
from synthetic import make_run, rename_participant

from kit import lab
from kit.architectures import BASELINES, NAMES
from kit.config import REPO_ROOT, SCENARIOS_DIR
from kit.results import plots, style


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("run"), latency={"multi_dispatch": 1.4}, missed={"multi_session": [1]},
                       cpu={"participant_entrypoint": 6.0, "multi_session": 9.0, "multi_dispatch": 8.0})  # fmt: skip
    return lab.load(run_dir)


@pytest.fixture(scope="module")
def figures(run):
    return plots.all_figures(run.tables, run.scenario, run.events)


def _legend_colors(fig) -> dict[str, tuple]:
    """label (up to a colon) -> RGBA of its legend handle, over every legend of the figure."""
    out = {}
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            color = handle.get_facecolor()
            out[text.get_text().split(":")[0]] = tuple(color[0] if len(color) and hasattr(color[0], "__len__") else color)
    return out


def test_every_architecture_has_its_own_colour():
    colors = [plots.arch_color(a) for a in NAMES + BASELINES]
    assert len(set(colors)) == len(colors)
    assert plots.arch_color("someday_design") == plots.arch_color("someday_design")


@pytest.mark.parametrize("name", ["tradeoff", "latency", "accuracy", "cost"])
def test_each_figure_uses_the_one_colour_of_each_architecture(figures, run, name):
    legend = _legend_colors(figures[name])
    for arch in run.archs:
        assert legend[arch] == pytest.approx(mcolors.to_rgba(plots.arch_color(arch))[:3] + (legend[arch][3],)), (name, arch)


def test_timeline_lanes_are_coloured_per_architecture_and_mark_the_missed(figures, run):
    ax = figures["timeline"].axes[0]
    labels = {t.get_text(): mcolors.to_hex(t.get_color()) for t in ax.get_yticklabels()}
    for arch in run.archs:
        assert labels[arch] == plots.arch_color(arch).lower()
    assert set(run.scenario.identities) <= set(labels), "a ground-truth lane per participant"
    assert ax.get_xlabel() == "time since the room started (s)"
    assert [t.get_text() for t in ax.texts].count("missed") == 1, "multi_session missed one utterance"


def test_timeline_of_the_room_alone(run):
    ax = plots.timeline(run.scenario).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == run.scenario.identities


def test_axes_say_what_they_measure_and_in_which_unit(figures):
    assert "p95" in figures["tradeoff"].axes[0].get_ylabel() and "(s)" in figures["tradeoff"].axes[0].get_ylabel()
    assert "CPU seconds per speaker" in figures["tradeoff"].axes[0].get_xlabel()
    lat = figures["latency"].axes[0]
    assert lat.get_ylabel().startswith("latency (s)") and lat.get_ylim()[0] == 0
    assert any("floor" in t.get_text() for t in lat.get_legend().get_texts())
    assert [ax.get_ylabel() for ax in figures["accuracy"].axes] == ["word error rate", "missed utterances"]
    ylabels = [ax.get_ylabel() for ax in figures["cost"].axes]
    assert ylabels[:2] == ["CPU seconds over the room", "peak PSS per speaker (MB)"]


def test_the_dollars_panels_appear_only_with_pricing_columns(run):
    priced = plots.cost(run.tables)
    # two panels: the cloud bill (its three parts stacked) and self-hosted compute
    assert plots.dollar_panels(run.tables.architectures) == ["dollars_cloud_per_speaker_hour", "dollars_selfhost_per_speaker_hour"]
    assert [ax.get_ylabel() for ax in priced.axes].count("US dollars") == 2
    assert plots.dollar_label("dollars_cloud_per_speaker_hour") == "cloud: $ per speaker-hour"
    unpriced = lab.Run(run.run_dir, run.record, run.scenario, run.events, _without_dollars(run.tables))
    assert "US dollars" not in [ax.get_ylabel() for ax in plots.cost(unpriced.tables).axes]


def _cloud_axis(fig):
    return next(ax for ax in fig.axes if ax.get_title().startswith("cloud: $ per speaker-hour"))


def test_the_cloud_bill_is_stacked_agent_connection_and_stt(run):
    from kit.results import cost
    from kit.results.metrics import Tables

    # unpriced STT (the synthetic run has no stt_audio_s and no STT price): two parts, said so
    ax = _cloud_axis(plots.cost(run.tables))
    assert "STT not priced" in ax.get_title()
    assert all("STT not priced" in t.get_text() for t in ax.texts) and len(ax.texts) == len(run.archs)
    # priced and measured: three segments per design whose heights add up to the bill
    spk, archs = run.tables.speakers.copy(), run.tables.architectures.copy()
    archs["stt_audio_s"] = archs["window_s"] * archs["speakers"]  # a streaming STT fed everything
    spk["stt_audio_s"] = spk["arch"].map(archs.set_index("arch")["window_s"])
    prices = cost.load_pricing()
    cost.add_dollars(spk, archs, prices, stt_item="stt_deepgram_nova3_streaming_minute")
    fig = plots.cost(Tables(run.tables.utterances, spk, archs))
    ax = _cloud_axis(fig)
    assert "stt_deepgram_nova3_streaming_minute" in ax.get_title()
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 3 * len(run.archs)
    total = archs.set_index("arch")["dollars_cloud_per_speaker_hour"]
    for i, arch in enumerate(style.archs_of(Tables(run.tables.utterances, spk, archs))):
        heights = sum(p.get_height() for p in bars if abs(p.get_x() + p.get_width() / 2 - i) < 0.01)
        assert heights == pytest.approx(total[arch])
        # the STT part: 60 min per speaker-hour at $0.0048 = $0.288
        assert archs.set_index("arch").loc[arch, "dollars_cloud_stt_per_speaker_hour"] == pytest.approx(0.288)
    labels = {text.get_text() for text in fig.legends[0].get_texts()}
    assert {"cloud $: agent session minutes", "cloud $: connection minutes", "cloud $: STT minutes × price"} <= labels


def _without_dollars(tables):
    from kit.results.metrics import Tables

    drop = lambda df: df.drop(columns=plots.dollar_columns(df))  # noqa: E731
    return Tables(tables.utterances, drop(tables.speakers), drop(tables.architectures))


def test_names_are_drawn_as_text_not_math(tmp_path):
    room = tmp_path / "room"
    shutil.copytree(SCENARIOS_DIR / "pair-2", room)
    rename_participant(room / "scenario.json", "alice", r"$\undefined{x}$ <b>")
    run = lab.load(make_run(tmp_path, scenario=room))
    for fig in plots.all_figures(run.tables, run.scenario, run.events).values():
        plots.png_bytes(fig)  # a math parse error would raise here
    ticks = [t.get_text() for t in plots.timeline(run.scenario).axes[0].get_yticklabels()]
    assert ticks[0] == r"\$\undefined{x}\$ <b>"


def test_figures_save_as_png(figures, tmp_path):
    paths = plots.save_pngs(figures, tmp_path / "figures")
    assert [p.name for p in paths] == [f"{n}.png" for n in plots.FIGURES]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_kit_plots_never_touch_pyplot():
    for name in ("plots.py", "cost_plots.py", "style.py"):
        source = (REPO_ROOT / "kit" / "results" / name).read_text()
        assert not re.search(r"^\s*(import matplotlib\.pyplot|from matplotlib import pyplot)", source, re.M), name
        assert "plt." not in source and ".show(" not in source, name
