"""The verdict (computed from the numbers) and the HTML report, checked in a real headless chromium."""

import os
import re
import shutil
from html import escape

import pytest
from browser import chromium_path, inspect
from synthetic import make_run, rename_participant

from kit import lab
from kit.cli import main
from kit.config import REPO_ROOT, SCENARIOS_DIR, RunConfig
from kit.results import cost, reading, report
from kit.room import scenario

ALL = ("multi_session", "participant_entrypoint", "multi_dispatch")
CHEAP_PE = {"participant_entrypoint": 6.0, "multi_session": 9.0, "multi_dispatch": 12.0}
XSS = "<script>alert(1)</script>"


def tables(tmp_path, **kw):
    return lab.load(make_run(tmp_path, **kw)).tables


# --- verdict -------------------------------------------------------------------------------------


def test_equal_designs_the_cheapest_is_shipped(tmp_path):
    t = tables(tmp_path, cpu=CHEAP_PE)
    text = reading.verdict(t)
    assert text.startswith("**Ship `participant_entrypoint` for this room.**")
    assert "equally accurate" in text and "cost decides" in text and "left out" not in text
    cpu = t.architectures.set_index("arch")["cpu_s_per_speaker"]
    more = 100 * (cpu["multi_session"] / cpu["participant_entrypoint"] - 1)
    assert f"`multi_session` {cpu['multi_session']:.1f} CPU s (+{more:.0f} %)" in text


def test_the_verdict_follows_the_numbers(tmp_path):
    text = reading.verdict(tables(tmp_path, cpu={"participant_entrypoint": 12.0, "multi_session": 6.0, "multi_dispatch": 12.0}))
    assert text.startswith("**Ship `multi_session` for this room.**") and "either will do" not in text


def test_a_close_runner_up_is_named(tmp_path):
    text = reading.verdict(tables(tmp_path, cpu={"participant_entrypoint": 6.0, "multi_session": 6.1, "multi_dispatch": 12.0}))
    assert text.startswith("**Ship `participant_entrypoint` for this room.**")
    assert "`multi_session` needs only 1 % more, within run-to-run noise: either will do." in text


def test_a_design_that_misses_utterances_is_left_out_whatever_it_costs(tmp_path):
    text = reading.verdict(tables(tmp_path, cpu=CHEAP_PE, missed={"participant_entrypoint": [2]}))
    assert text.startswith("**Ship `multi_session`")
    assert "- `participant_entrypoint` is left out: it missed 1 of 4 utterances, the best missed 0." in text
    assert "**Speaker** `alice` with `participant_entrypoint`: 1 of 2 utterances missed" in text


def test_words_under_the_wrong_speaker_leave_a_design_out(tmp_path):
    t = tables(tmp_path, cpu=CHEAP_PE)
    archs = t.architectures.set_index("arch")
    assert (archs["duplicated"] == 0).all() and (archs["ref_words"] > 0).all()  # measured on the made-up run
    words = int(archs.loc["participant_entrypoint", "ref_words"])
    t.architectures.loc[t.architectures["arch"] == "participant_entrypoint", "duplicated"] = 3
    text = reading.verdict(t)
    assert text.startswith("**Ship `multi_session`")
    assert (f"- `participant_entrypoint` is left out: it put 3 of {words} words under the wrong speaker (3 duplicated, "
            f"0 misattributed), the best 0% of the words.") in text  # fmt: skip
    t.architectures.loc[t.architectures["arch"] == "participant_entrypoint", ["duplicated", "misattributed"]] = [0, 3]
    assert f"it put 3 of {words} words under the wrong speaker (0 duplicated, 3 misattributed)" in reading.verdict(t)


def test_latency_counts_only_beyond_the_tolerance(tmp_path):
    slow = reading.verdict(tables(tmp_path / "a", cpu=CHEAP_PE, latency={"participant_entrypoint": 1.5}))
    assert "`participant_entrypoint` is left out: its p95 latency is 1.50 s against 1.00 s" in slow
    close = reading.verdict(tables(tmp_path / "b", cpu=CHEAP_PE, latency={"participant_entrypoint": 1.05}))
    assert close.startswith("**Ship `participant_entrypoint`")


def test_an_incomplete_design_is_left_out(tmp_path):
    text = reading.verdict(tables(tmp_path, cpu=CHEAP_PE, failed={"participant_entrypoint": "job j1 never started"}))
    assert "`participant_entrypoint` is left out: its run is incomplete" in text


def test_nothing_transcribed_recommends_nothing(tmp_path):
    every = [0, 1, 2, 3]
    text = reading.verdict(tables(tmp_path, missed={a: every for a in ALL}))
    assert text.startswith("**No design can be recommended from this run.**")


def test_one_design_or_none(tmp_path):
    assert reading.verdict(tables(tmp_path, archs=("multi_dispatch",))).startswith("**Only `multi_dispatch` ran**")
    empty = lab.load(make_run(tmp_path / "e")).tables
    empty.architectures = empty.architectures.iloc[0:0]
    assert reading.verdict(empty).startswith("**Nothing was measured**")


STREAMING = "stt_deepgram_nova3_streaming_minute"


def priced(t, share: dict | None, item: str | None = STREAMING):
    """The tables re-priced as if each design sent `share` of every participant's time to a cloud STT
    (None: stt_audio_s not measured), with the STT price row `item`."""
    spk, archs = t.speakers.copy(), t.architectures.copy()
    if share is None:  # as a run whose STT audio was not measured (your own agent's)
        spk["stt_audio_s"] = archs["stt_audio_s"] = float("nan")
    else:
        window = archs.set_index("arch")["window_s"]
        archs["stt_audio_s"] = [window[a] * n * share[a] for a, n in zip(archs["arch"], archs["speakers"])]
        spk["stt_audio_s"] = [window[a] * share[a] for a in spk["arch"]]
    cost.add_dollars(spk, archs, cost.load_pricing(), stt_item=item)
    return type(t)(t.utterances, spk, archs)


def test_the_verdict_shows_the_cloud_bill_in_its_parts(tmp_path):
    t = tables(tmp_path, cpu=CHEAP_PE)
    text = reading.verdict(t)
    assert "**cloud: $ per speaker-hour** (agent session + connection; STT not priced): `multi_session` $0.315 (0.3 + 0.015)" in text
    assert "STT bill" not in text
    # VAD-gated designs send 40 % of the room to the STT, multi_dispatch streams all of it
    text = reading.verdict(priced(t, {"participant_entrypoint": 0.4, "multi_session": 0.4, "multi_dispatch": 1.0}))
    assert text.startswith("**Ship `participant_entrypoint` for this room.**") and "costs less" not in text
    # 2 speakers, 1 agent participant: 0.30 + 0.015 + 24 min x $0.0048 = $0.43
    assert "`participant_entrypoint` $0.43 (0.3 + 0.015 + 0.115)" in text
    assert "**cloud: $ per speaker-hour** (agent session + connection + STT)" in text
    assert ("**STT bill** (`stt_deepgram_nova3_streaming_minute`, $0.0048 per audio minute): `multi_session` "
            "24.0 min per speaker-hour ($0.115)") in text
    assert "`multi_dispatch` 60.0 min per speaker-hour ($0.288)" in text
    assert "`multi_session` and `participant_entrypoint` send the fewest STT minutes" in text


def test_the_verdict_says_when_the_stt_bill_favours_another_design(tmp_path):
    t = tables(tmp_path, cpu=CHEAP_PE)
    text = reading.verdict(priced(t, {"participant_entrypoint": 1.0, "multi_session": 0.4, "multi_dispatch": 1.0}))
    assert text.startswith("**Ship `participant_entrypoint` for this room.**"), "the CPU still decides for your own cores"
    assert ("On the LiveKit Cloud bill with `stt_deepgram_nova3_streaming_minute` for the STT, `multi_session` costs less: "
            "$0.43 against $0.603 per speaker-hour (24.0 STT minutes per speaker-hour against 60.0); if you pay per "
            "streamed minute rather than for your own cores, prefer `multi_session`.") in text
    assert "`multi_session` sends the fewest STT minutes" in text


def test_an_stt_price_without_measured_audio_is_not_a_bill(tmp_path):
    text = reading.verdict(priced(tables(tmp_path, cpu=CHEAP_PE), None))
    assert "`multi_session` not measured (0.3 + 0.015 + n/a)" in text
    assert "**STT bill** (`stt_deepgram_nova3_streaming_minute`, $0.0048 per audio minute): not measured in this run" in text
    assert "costs less" not in text


@pytest.mark.slow
def test_the_report_names_the_stt_price_row(tmp_path):
    run_dir = make_run(tmp_path, cpu=CHEAP_PE)
    run = lab.load(run_dir)
    assert "STT: not priced." in report.write(run_dir, run=run).read_text()
    share = {"participant_entrypoint": 0.4, "multi_session": 0.4, "multi_dispatch": 1.0}
    run = lab.Run(run.run_dir, run.record, run.scenario, run.events, priced(run.tables, share))
    html = report.write(run_dir, run=run).read_text()
    row = cost.load_pricing().stt_row(STREAMING)
    assert (f"STT: <code>{STREAMING}</code>, $0.0048 per audio minute, from {row.source_url}, read on 2026-12-02.") in html
    for header in ("STT min/spk-h", "cloud agent: $ per speaker-hour", "cloud connection: $ per speaker-hour",
                   "cloud STT: $ per speaker-hour", "cloud: $ per speaker-hour"):  # fmt: skip
        assert f"<th>{header}</th>" in html


def test_names_in_the_verdict_stay_text(tmp_path):
    assert reading.code("a`b") == "``a`b``" and reading.code("`x") == "`` `x ``"
    html = reading.markdown_html(f"**Ship {reading.code('x_y')}.**\n\n- {reading.code(XSS)} and {reading.code('**b**')}")
    assert html.startswith("<p><strong>Ship <code>x_y</code>.</strong></p>")
    assert "<li><code>&lt;script&gt;alert(1)&lt;/script&gt;</code> and <code>**b**</code></li>" in html
    assert "<script" not in html


# --- the report ----------------------------------------------------------------------------------


@pytest.fixture
def xss_run(tmp_path):
    """A synthetic run of all three designs on a copy of pair-2 whose alice is called <script>…."""
    room = tmp_path / "room"
    shutil.copytree(SCENARIOS_DIR / "pair-2", room)
    rename_participant(room / "scenario.json", "alice", XSS)
    return make_run(tmp_path, scenario=room, cpu=CHEAP_PE)


@pytest.mark.slow
def test_report_escapes_every_name_and_holds_a_section_per_design(xss_run):
    path = report.write(xss_run)
    html = path.read_text()
    assert path == xss_run / "report.html" and "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.findall(r'<section class="arch" id="arch-(\w+)"', html) == list(ALL)
    for heading in ("The question", "The room", "Method and metrics", "Results", "Run record", "Caveats"):
        assert f">{heading}</h2>" in html
    assert html.count('src="data:image/png;base64,') == 5 and "http://" not in html.replace('"http://www.w3.org', "")
    assert "This run is complete" in html and "Console mode" in html
    assert len(path.read_bytes()) < 2_000_000
    assert sorted(p.name for p in (xss_run / "figures").iterdir()) == sorted(f"{n}.png" for n in report.plots.FIGURES)


def test_a_partial_run_says_so(tmp_path):
    run_dir = make_run(tmp_path, failed={"multi_dispatch": "job j2 ended without job_end (its process died)"},
                       missed={"multi_dispatch": [0, 1, 2, 3]})  # fmt: skip
    html = report.write(run_dir).read_text()
    assert "This run is partial" in html and "job j2 ended without job_end" in html


def test_a_design_whose_jobs_never_started_still_reports(tmp_path):
    run_dir = make_run(tmp_path, dead=("multi_dispatch",), failed={"multi_dispatch": "job j1 could not be launched"})
    html = report.write(run_dir).read_text()
    assert "This run is partial" in html and html.count('src="data:image/png;base64,') == 5
    assert "`multi_dispatch` is left out: its run is incomplete" in reading.verdict(lab.load(run_dir).tables)


def test_secrets_never_reach_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEKIT_API_SECRET", "s3cr3t-value-xyz")
    run_dir = make_run(tmp_path, extra_config={"livekit_api_secret": "s3cr3t-value-xyz", "note": "key s3cr3t-value-xyz"})
    html = report.write(run_dir).read_text()
    assert "s3cr3t-value-xyz" not in html and "[redacted]" in html


def test_compare_writes_the_report_unless_told_not_to():
    from kit.cli import _parser

    assert _parser().parse_args(["compare"]).report
    assert not _parser().parse_args(["compare", "--no-report"]).report


def test_cli_report_and_its_errors(xss_run, tmp_path, capsys):
    assert main(["report", str(xss_run.parent)]) == 0  # a results directory: its newest run
    assert capsys.readouterr().out.strip() == f"report: {xss_run / 'report.html'}"
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no run found" in err and err.count("\n") == 1


IMAGES_AND_SECTIONS = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return {
    images: imgs.map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete})),
    archs: [...document.querySelectorAll('section.arch')].map(s => s.dataset.arch),
    scripts: document.scripts.length,
    text: document.body.innerText,
  };
})()"""


def test_report_in_a_real_headless_browser(xss_run, tmp_path):
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    page = inspect((report.write(xss_run)).as_uri(), IMAGES_AND_SECTIONS, tmp_path / "profile")
    assert page.console_errors == [] and page.dialogs == []
    assert len(page.value["images"]) == 5
    assert all(img["complete"] and img["width"] > 0 for img in page.value["images"]), page.value["images"]
    assert page.value["archs"] == list(ALL)
    assert page.value["scripts"] == 0 and XSS in page.value["text"], "the name shows as text, not markup"
    assert {url.split(":", 1)[0] for url in page.requests} <= {"file", "data"}, "no network"


def test_the_example_report_is_shipped_small_and_linked():
    path = REPO_ROOT / "reports" / "standup-4.html"
    html = path.read_text()
    assert len(path.read_bytes()) < 2_000_000 and "<script" not in html.lower()
    assert re.findall(r'<section class="arch" id="arch-(\w+)"', html) == list(ALL)
    assert "reports/standup-4.html" in (REPO_ROOT / "README.md").read_text()


@pytest.mark.slow
def test_other_rooms_side_by_side(tmp_path, capsys):
    main_run = make_run(tmp_path / "a", archs=("participant_entrypoint", "active_speaker"), missed={"active_speaker": [1]})
    other = make_run(tmp_path / "b", scenario="comings-and-goings", archs=("participant_entrypoint", "active_speaker"))
    frame = report.rooms_frame([report.load(main_run), report.load(other)])
    assert list(frame.columns[:4]) == ["room", "participant", "participant_entrypoint missed", "participant_entrypoint p50 s"]
    assert set(frame["room"]) == {"pair-2", "comings-and-goings"}
    pair = frame[frame["room"] == "pair-2"].set_index("participant")
    assert pair.loc["bob", "active_speaker missed"] == 1 and pair.loc["bob", "participant_entrypoint missed"] == 0
    assert main(["report", str(main_run), "--room", str(other)]) == 0
    html = (main_run / "report.html").read_text()
    assert '<section id="rooms"><h2>Other rooms</h2>' in html
    assert len(re.findall(r'<section class="room" id="room-', html)) == 2 and "comings-and-goings" in html


# --- every bundled room, and a participant who never speaks (issue: the report crashed on them) ---------


BUNDLED = sorted(p.name for p in SCENARIOS_DIR.iterdir() if (p / "scenario.json").is_file())


@pytest.mark.parametrize("room", BUNDLED)
@pytest.mark.slow
def test_the_report_is_written_for_every_bundled_room(tmp_path, room):
    run_dir = make_run(tmp_path, scenario=room)
    t = lab.load(run_dir).tables
    assert t.speakers["utterances"].notna().all() and t.speakers["utterances"].dtype.kind == "i"
    html = report.write(run_dir).read_text()
    assert html.count('src="data:image/png;base64,') == 5
    for who in scenario.load(room).identities:
        assert escape(who) in html, who


def test_a_silent_participant_is_a_row_of_zeros_with_no_wer(tmp_path):
    t = lab.load(make_run(tmp_path, scenario="comings-and-goings")).tables
    mo = t.speakers[t.speakers["participant"] == "mo"]
    assert list(mo["arch"]) == list(ALL), "a row per design"
    assert (mo[["utterances", "matched", "missed", "insertions", "finals"]] == 0).all().all()
    assert mo["wer"].isna().all() and mo["latency_p50"].isna().all() and (mo["transcript"] == "").all()
    assert (mo["cpu_s"] >= 0).all(), "its share of the cost is still counted"
    assert "mo" in report.rooms_frame([report.load(make_run(tmp_path / "b", scenario="comings-and-goings"))])["participant"].values


@pytest.mark.slow
def test_a_silent_participant_in_the_browser(tmp_path):
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    run_dir = make_run(tmp_path, scenario="comings-and-goings")
    page = inspect(report.write(run_dir).as_uri(), IMAGES_AND_SECTIONS, tmp_path / "profile")
    assert page.console_errors == [] and page.dialogs == []
    assert all(img["complete"] and img["width"] > 0 for img in page.value["images"]) and len(page.value["images"]) == 5
    assert page.value["archs"] == list(ALL)


def test_a_report_that_fails_after_a_measured_run_is_its_own_exit_code(tmp_path, monkeypatch, capsys):
    from kit.run import runner

    run_dir = make_run(tmp_path, scenario="comings-and-goings")
    monkeypatch.setattr(runner, "run", lambda config, progress_factory=None: run_dir)
    monkeypatch.setattr(report, "write", lambda *a, **kw: (_ for _ in ()).throw(ValueError("a figure broke")))
    assert main(["compare", "--scenario", "comings-and-goings", "--results", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "error: writing the report failed (ValueError: a figure broke)" in err and err.count("\n") == 1
    assert (run_dir / "speakers.csv").is_file() and (run_dir / "architectures.csv").is_file()


@pytest.mark.slow
def test_the_report_says_which_vad_gate_ran(tmp_path):
    """The gate's default changed (off before December 8, 2026): a report says which one its run had, and
    the VAD's settings (--min-silence and the others)."""
    off = {"vad": {**RunConfig().to_dict()["vad"], "gate_margin_db": None}}
    for gate, extra in (("auto", None), ("off", off)):
        run_dir = make_run(tmp_path / gate, extra_config=extra)
        html = re.sub(r">\s+<", "><", report.write(run_dir).read_text())
        assert f"<td>VAD gate (--vad-gate)</td><td>{gate}</td>" in html
    tuned = {"vad": {**RunConfig().to_dict()["vad"], "min_silence_duration": 0.3}}
    html = report.write(make_run(tmp_path / "tuned", extra_config=tuned)).read_text()
    assert "turn ends after 0.3 s of silence; speech from p = 0.5; 0.5 s kept before" in html
