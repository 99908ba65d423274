"""One self-contained HTML report per run (`write(run_dir)` -> <run_dir>/report.html): the
question, the reading (kit/results/reading.py), the room, the method, the results, each design, the record.

The report has no script and loads nothing: figures are inlined as base64 PNG, styles inline, and
a Content-Security-Policy forbids scripts and network access. Every text that comes from a
scenario, an event or run.json is HTML-escaped; secrets are never written.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from kit import architectures
from kit.lab import Run, load, pricing_path
from kit.live.common import redact
from kit.results import cost, metrics, plots
from kit.results.reading import (
    CPU_TOLERANCE_PCT,
    LATENCY_TOLERANCE_S,
    WER_TOLERANCE,
    markdown_html,
    verdict,
)

QUESTION = (
    "I must transcribe every participant of one LiveKit room with LiveKit Agents (Python). "
    "Which design should I ship, and what will it cost me per speaker?"
)

DESIGN_COLUMNS = {"jobs": "jobs", "agent_participants": "agent participants", "per_participant": "per participant",
                  "livekit_parts": "livekit-agents parts"}  # fmt: skip


def designs(archs) -> pd.DataFrame:
    """The design table of these architectures, in their order, from each design module's DESIGN
    (a name that is no design of the kit, e.g. your own agent's label, gets an empty row)."""
    rows = []
    for arch in archs:
        d = architectures.design(arch)
        rows.append({"arch": arch, **{col: getattr(d, field) if d else None for field, col in DESIGN_COLUMNS.items()}})
    return pd.DataFrame(rows, columns=["arch", *DESIGN_COLUMNS.values()])


METRICS = pd.DataFrame(
    [
        ("latency", "time of an utterance's (last) final transcript minus its ground-truth end of speech"),
        ("VAD latency", "final minus the moment the VAD handed the turn to the STT, i.e. after its silence threshold (LiveKit's transcription delay counts from the last speech frame instead)"),
        ("floor", "the VAD silence threshold + that turn's measured STT inference time: what no design can beat"),
        ("matching", "a final belongs to the utterance of the same participant it overlaps most; "
                     "unmatched utterances are missed, unmatched finals insertions"),
        ("WER", "word error rate (jiwer) after lowercasing, spelling numbers out and stripping punctuation"),
        ("CPU seconds", "user + system time of the whole process tree from the room's start to the end of the run "
                        "(/proc, every second); per speaker: its own STT CPU plus a share of the rest by the audio its "
                        "VAD processed (multi_dispatch: its own process plus an equal share of the rest)"),
        ("PSS", "peak proportional set size of the process tree (shared pages split between processes); "
                "per speaker: the peak ÷ speakers"),
        ("cold start", "from job submission to the job's entrypoint running"),
        ("dollars", "from data/pricing.csv, per speaker-hour: LiveKit Cloud agent session + connection minutes per agent "
                    "participant + the minutes of audio sent to a cloud STT × its price per audio minute (the STT price row "
                    "chosen with --stt-price; not priced without one), or self-hosted vCPU-hours and GB-hours of the "
                    "measured CPU and memory"),
        ("STT minutes", "seconds of audio each design sent to the STT ÷ the room's measured window × 60: minutes per "
                        "speaker-hour (a VAD-gated pipeline sends speech turns, a streaming STT everything while connected)"),
    ],
    columns=["metric", "definition"],
)  # fmt: skip


# --- the verdict ---------------------------------------------------------------------------------


# --- tables for notebooks and the report ---------------------------------------------------------


def plan_frame(scenario, archs) -> pd.DataFrame:
    """What each design asks the AgentServer for on this room: arch, job, serves (one participant or all)."""
    from kit import architectures

    rows = [(a, r.job, r.participant or "every participant") for a in archs for r in architectures.get(a).plan(scenario)]
    return pd.DataFrame(rows, columns=["arch", "job", "serves"])


def jobs_frame(events: pd.DataFrame) -> pd.DataFrame:
    """One row per job that ran: arch, job, pid, participants (served), speech_turns, finals, errors,
    cold_start_s, proc_cpu_s (the job process's CPU over its life)."""
    ev = events[events["job"] != "runner"]
    rows = []
    for (arch, job), g in ev.groupby(["arch", "job"], sort=False):
        start, end = g[g["kind"] == "job_start"], g[g["kind"] == "job_end"]
        rows.append({
            "arch": arch, "job": job, "pid": int(g["pid"].iloc[0]),
            "participants": ", ".join(g.loc[g["kind"] == "participant_joined", "participant"].astype(str)),
            "speech_turns": int((g["kind"] == "speech_end").sum()), "finals": int((g["kind"] == "final").sum()),
            "errors": int((g["kind"] == "error").sum()),
            "cold_start_s": float(start["cold_start_s"].iloc[0]) if len(start) else np.nan,
            "proc_cpu_s": float(end["proc_cpu_s"].iloc[0]) if len(end) else np.nan,
        })  # fmt: skip
    columns = ["arch", "job", "pid", "participants", "speech_turns", "finals", "errors", "cold_start_s", "proc_cpu_s"]
    return pd.DataFrame(rows, columns=columns)


def event_counts(events: pd.DataFrame) -> pd.DataFrame:
    """How many events of each kind (columns, in schema order) each architecture (rows) logged."""
    from kit.run.events import KINDS

    counts = events.groupby(["arch", "kind"], sort=False).size().unstack(fill_value=0)
    return counts[[k for k in KINDS if k in counts.columns]]


def room_frame(scenario) -> pd.DataFrame:
    """One row per participant: identity, join_s, leave_s, utterances, speech_s, words."""
    utts = scenario.utterances_frame()
    rows = []
    for p in scenario.participants:
        u = utts[utts["participant"] == p.identity]
        leave = np.nan if p.leave_s is None else p.leave_s
        speech = float((u["end_s"] - u["start_s"]).sum())
        rows.append((p.identity, p.join_s, leave, len(u), speech, int(u["text"].str.split().str.len().sum())))
    return pd.DataFrame(rows, columns=["identity", "join_s", "leave_s", "utterances", "speech_s", "words"])


# --- the HTML report -----------------------------------------------------------------------------


def rooms_frame(runs: list[Run]) -> pd.DataFrame:
    """Several rooms side by side (hard rooms): one row per (room, participant), and for each design
    its missed utterances and p50/p95 latency (s). Columns: room, participant, then
    `<arch> missed`, `<arch> p50 s`, `<arch> p95 s` per design, in run order."""
    rows = []
    for run in runs:
        spk = run.tables.speakers
        for who in dict.fromkeys(spk["participant"]):
            row = {"room": run.scenario.name, "participant": who}
            for arch in run.archs:
                r = spk[(spk["arch"] == arch) & (spk["participant"] == who)]
                get = (lambda c: r[c].iloc[0] if len(r) else float("nan"))  # noqa: E731
                row.update({f"{arch} missed": get("missed"), f"{arch} p50 s": get("latency_p50"), f"{arch} p95 s": get("latency_p95")})
            rows.append(row)
    return pd.DataFrame(rows)


def write(run_dir: Path | str, run: Run | None = None, rooms: list[Path | str] = (), console: Run | None = None) -> Path:
    """<run_dir>/report.html (and figures/*.png) for a run; returns the report's path. `run`: the run
    already loaded (its tables are not computed again); `rooms`: runs of other rooms (e.g. the hard
    rooms) to add, one section each, side by side with this one; `console`: a live run's console
    twin (compare --mode both), loaded (default: read from the live run's record)."""
    run = run or load(run_dir)
    others = [load(r) for r in rooms]
    figures = plots.all_figures(run.tables, run.scenario, run.events)
    pngs = {name: plots.png_bytes(fig) for name, fig in figures.items()}
    (run.run_dir / "figures").mkdir(exist_ok=True)
    for name, data in pngs.items():
        (run.run_dir / "figures" / f"{name}.png").write_bytes(data)
    path = run.run_dir / "report.html"
    path.write_text(render(run, pngs, others, console), encoding="utf-8")
    return path


def render(run: Run, pngs: dict[str, bytes], others: list[Run] = (), console: Run | None = None) -> str:
    """The whole report as one HTML string."""
    sections = [
        _section("question", "The question", f"<p>{_e(QUESTION)}</p>" + _status(run)),
        _section("verdict", "The reading", markdown_html(verdict(run.tables)) + _verdict_note()),
        _section("room", "The room", _room(run, pngs)),
        _section("method", "Method and metrics", _method(run)),
        _section("results", "Results", _results(run, pngs)),
        _section("architectures", "Each architecture", "".join(_arch_section(run, a) for a in run.archs)),
        _section("record", "Run record", _record(run)),
        _section("caveats", "Caveats", _caveats(run)),
    ]
    if others:
        sections.insert(6, _section("rooms", "Other rooms", _other_rooms([run, *others])))
    console_run = (run.record.live or {}).get("console_run")
    if console is None and console_run and Path(console_run, "run.json").is_file():
        console = load(console_run)
    if console is not None:
        sections.insert(5, _section("modes", "Console and live", _console_vs_live(run, console)))
    title = f"{run.scenario.name}: which design transcribes every participant — run {run.record.run_id}"
    page = redact(_PAGE.format(title=_e(title), style=_STYLE, toc=_toc(), body="\n".join(sections)))
    # Images go in last, so that scrubbing text can never touch their base64.
    return re.sub(r"@@png:(\w+)@@", lambda m: base64.b64encode(pngs[m.group(1)]).decode("ascii"), page)


def _other_rooms(runs: list[Run]) -> str:
    """One subsection per room: missed utterances and latency per speaker per design, side by side."""
    frame = rooms_frame(runs)
    parts = ['<p>Each room run separately (its own run directory); per speaker and design: missed utterances '
             "and p50 / p95 latency in seconds.</p>"]  # fmt: skip
    for run in runs:
        part = frame[frame["room"] == run.scenario.name].drop(columns="room")
        parts.append(f'<section class="room" id="room-{_e(run.record.run_id)}"><h3>{_e(run.scenario.name)} '
                     f'<small>(run {_e(run.record.run_id)})</small></h3>{_table(part)}</section>')  # fmt: skip
    return "".join(parts)


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _console_vs_live(run: Run, console: Run) -> str:
    """The same room run by each design in console mode and live: what the real transport adds."""
    frame = metrics.console_vs_live(console.tables, run.tables)
    return (f"<p>The same room, each design run in console mode (run {_e(console.record.run_id)}) and live through "
            f"livekit-server {_e((run.record.live or {}).get('server_version') or '(version unknown)')} (this run). The latency "
            "added live is the transport: Opus coding, the jitter buffer, the server, and the text stream that carries each "
            "final back. CPU and PSS are the agent side only (live: the agent worker's process tree; WebRTC CPU: its "
            "transport threads); the kit's publishers and listener are not counted.</p>" + _table(frame))  # fmt: skip


def _toc() -> str:
    names = [("question", "Question"), ("verdict", "Reading"), ("room", "Room"), ("method", "Method"), ("results", "Results"),
             ("architectures", "Architectures"), ("record", "Run record"), ("caveats", "Caveats")]  # fmt: skip
    return " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in names)


def _status(run: Run) -> str:
    if run.complete:
        return '<p class="ok">This run is complete: every architecture ran to the end without an error.</p>'
    items = "".join(f"<li>{_e(r.arch)}: {_e(r.problem)}</li>" for r in run.problems().itertuples())
    return f'<div class="partial"><strong>This run is partial.</strong> Read its numbers with care:<ul>{items}</ul></div>'


def _verdict_note() -> str:
    return (f'<p class="note">Computed from the tables by <code>kit.results.reading.verdict</code>: designs within {WER_TOLERANCE} WER, '
            f"the fewest missed utterances and {LATENCY_TOLERANCE_S} s of the best p95 latency count as equal; "
            "among them the least CPU per speaker wins; with an STT price (<code>--stt-price</code>), it also names an equally "
            f"good design whose LiveKit Cloud bill is more than {CPU_TOLERANCE_PCT:.0f} % lower.</p>")  # fmt: skip


def _table(df: pd.DataFrame, columns: dict[str, str] | None = None) -> str:
    if columns:
        df = df[[c for c in columns if c in df.columns]].rename(columns=columns)
    return df.to_html(index=False, escape=True, na_rep="–", float_format=_number, border=0, classes="data")


def _number(v: float) -> str:
    return f"{v:.3g}" if v != 0 and abs(v) < 0.1 else f"{v:.2f}"


def _figure(pngs: dict[str, bytes], name: str, caption: str) -> str:
    if name not in pngs:
        return ""
    return (f'<figure><img src="data:image/png;base64,@@png:{name}@@" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")  # fmt: skip


def _room(run: Run, pngs) -> str:
    sc = run.scenario
    intro = (f"<p>Room <strong>{_e(sc.name)}</strong>: {len(sc.participants)} participants, {len(sc.utterances)} utterances, "
             f"{sc.duration_s:.1f} s, replayed in real time from one mono track per participant.</p>")  # fmt: skip
    utts = sc.utterances_frame()
    return (intro + _table(room_frame(sc))
            + _figure(pngs, "timeline", "Who speaks when (grey); for each design, the VAD turn sent to the STT and the final's arrival")
            + "<h3>Utterances (ground truth)</h3>" + _table(utts))  # fmt: skip


def _method(run: Run) -> str:
    config = run.record.run_config
    return (
        f"<p>Mode: <strong>{_e(_mode(run))}</strong>. "
        "Every design runs on the same room (same audio, same timing), with the same STT and VAD settings, "
        "through a real livekit-agents <code>AgentServer</code> with process job executors, one design after the other. "
        f"STT: <code>{_e(config.stt)}</code>; VAD: silero, silence threshold {_e(config.vad.min_silence_duration)} s.</p>"
        + _table(designs(run.archs).rename(columns={"arch": "architecture"}))
        + "<h3>Metric definitions</h3>" + _table(METRICS)
    )  # fmt: skip


def _results(run: Run, pngs) -> str:
    dollars = {c: plots.dollar_label(c) for c in plots.dollar_columns(run.tables.architectures)}
    if dollars and cost.STT_MINUTES in run.tables.architectures:
        dollars = {cost.STT_MINUTES: "STT min/spk-h", **dollars}
    return (
        "<h3>Per architecture</h3>" + _table(run.tables.architectures, {**metrics.ARCH_COLUMNS, **dollars})
        + _figure(pngs, "tradeoff", "Which design: CPU per speaker against p95 latency; marker area grows with peak memory")
        + _figure(pngs, "latency", "Latency per utterance, per speaker and design, with the floor")
        + _figure(pngs, "accuracy", "Word error rate and missed utterances per speaker")
        + _figure(pngs, "cost", "Cost per speaker: CPU, memory and dollars (the cloud bill stacked: agent session, "
                                "connection and STT minutes)")
        + "<h3>Per speaker</h3>" + _table(run.tables.speakers, {**metrics.SPEAKER_COLUMNS, **dollars})
        + _pricing(run, dollars)
    )  # fmt: skip


def _pricing(run: Run, dollars: dict) -> str:
    if not dollars:
        return ""
    pricing = cost.load_pricing(pricing_path(run.record))
    return "<h3>Prices used</h3>" + _stt_price(run, pricing) + _table(pricing.table)


def _stt_price(run: Run, pricing: cost.Pricing) -> str:
    """Which STT price row the cloud bill's STT part used (item, price, source, date), or that none was."""
    item = cost.stt_item_of(run.tables.architectures)
    if item is None:
        return ('<p class="stt-price">STT: not priced. The cloud bill is agent session + connection minutes only; '
                "choose an STT price row with <code>--stt-price ITEM</code> to add the minutes sent to the STT "
                f"({len(pricing.stt_items())} STT prices in the table below).</p>")  # fmt: skip
    try:
        row = pricing.stt_row(item)
    except cost.PricingError:  # the tables were priced with a row this pricing file no longer has
        price = run.tables.architectures["stt_price_usd_per_minute"].iloc[0]
        return f'<p class="stt-price">STT: <code>{_e(item)}</code>, ${_e(f"{price:.4g}")} per audio minute (not in the pricing file any more).</p>'
    measured = cost.STT_MINUTES in run.tables.architectures and run.tables.architectures[cost.STT_MINUTES].notna().any()
    return (f'<p class="stt-price">STT: <code>{_e(item)}</code>, ${_e(f"{row.price_usd:.4g}")} per audio minute, '
            f"from {_e(row.source_url)}, read on {_e(row.read_on)}. {_e(row.note)}"
            + ("" if measured else " The audio sent to the STT was not measured in this run: the STT part and the "
                                   "cloud bill are empty.")
            + "</p>")  # fmt: skip


UTTERANCE_COLUMNS = {
    "participant": "speaker", "start_s": "start s", "end_s": "end s", "ref_text": "reference", "hyp_text": "transcript",
    "n_finals": "finals", "latency_s": "latency s", "vad_latency_s": "VAD latency s", "missed": "missed",
}  # fmt: skip


def _arch_section(run: Run, arch: str) -> str:
    design = architectures.design(arch)
    what = _e(design.per_participant) if design else "(no description)"
    row = run.tables.architectures.set_index("arch").loc[arch]
    utts = run.tables.utterances[run.tables.utterances["arch"] == arch]
    problems = run.problems()
    problems = problems[problems["arch"] == arch]
    return (
        f'<section class="arch" id="arch-{_e(arch)}" data-arch="{_e(arch)}"><h3>{_e(arch)}</h3>'
        f"<p>Per participant: {what}. Ran {int(row['jobs'])} job(s) in {int(row['processes'])} process(es), with "
        f"{int(row['agent_participants'])} agent participant(s); complete: {_e(bool(row['complete']))}.</p>"
        + "".join(f'<p class="problem">{_e(p)}</p>' for p in problems["problem"])
        + "<h4>Jobs</h4>" + _table(jobs_frame(run.events[run.events["arch"] == arch]))
        + "<h4>Transcripts</h4>" + _table(utts, UTTERANCE_COLUMNS)
        + "</section>"
    )  # fmt: skip


def _record(run: Run) -> str:
    rec = redact(asdict(run.record))
    model = rec.get("model") or {}
    versions = pd.DataFrame(sorted((rec.get("versions") or {}).items()), columns=["package", "version"])
    facts = pd.DataFrame(
        [("run id", rec.get("run_id")), ("started", rec.get("started")), ("ended", rec.get("ended")),
         ("complete", rec.get("complete")), ("git sha", rec.get("git_sha")),
         ("scenario", f"{rec['scenario']['name']} (sha256 {rec['scenario']['sha256']})"),
         ("model", f"{model.get('source')}: {model.get('location')} (sha256 {model.get('sha256')})" if model
                   else "none (calibration STT)"),
         *((f"machine: {k}", v) for k, v in (rec.get("machine") or {}).items())],
        columns=["", "value"],
    )  # fmt: skip
    config = json.dumps(rec.get("config"), indent=1)
    return _table(facts) + "<h3>Versions</h3>" + _table(versions) + f"<h3>Configuration</h3><pre>{_e(config)}</pre>"


def _caveats(run: Run) -> str:
    items = []
    if not run.complete:
        problems = "; ".join(_e(f"{r.arch}: {r.problem}") for r in run.problems().itertuples())
        items.append(f"This run is <strong>partial</strong>: {problems}")
    if _mode(run) == "console":
        items.append("Console mode: the room is simulated on one machine. There is no LiveKit server, no network, no WebRTC "
                     "jitter buffer and no Opus coding, so latency in a real room will be somewhat higher; the designs' "
                     "relative costs carry over.")  # fmt: skip
    else:
        items.append(f"Mode {_e(_mode(run))}: a real LiveKit room; latency includes the trip through the server, and "
                     "CPU and memory are those of the machine that ran the agents.")  # fmt: skip
    if run.record.run_config.stt.calibration:
        items.append("The STT is the calibration STT (a fixed delay, no model): latency here measures the instrument, "
                     "and WER is meaningless.")  # fmt: skip
    n = len(run.scenario.utterances)
    items.append(f"{n} utterances in all: percentiles per speaker rest on a handful of values (p95 is close to the maximum).")
    machine = run.record.machine or {}
    items.append(f"CPU and memory were measured on this machine ({_e(machine.get('cpu_count'))} cores, "
                 f"{_e(machine.get('cpu_model'))}); PSS includes the worker's main process, the same fixed cost for every design.")  # fmt: skip
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _mode(run: Run) -> str:
    """console (the simulated room) unless the run records another mode."""
    return run.record.mode


_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; margin-top: 2em; } h3 { margin-top: 1.5em; }
nav { margin-bottom: 1em; } code, pre { background: #f4f4f4; padding: 0 .2em; } pre { padding: .6em; overflow-x: auto; }
table.data { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
table.data th, table.data td { border: 1px solid #ddd; padding: .2em .5em; text-align: left; vertical-align: top; }
table.data th { background: #f4f4f4; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
.partial { border: 2px solid #c00; background: #fff0f0; padding: .5em 1em; }
.ok { color: #060; } .note { font-size: 13px; color: #555; } .problem { color: #c00; }
section.arch { border-left: 4px solid #ddd; padding-left: 1em; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<nav>{toc}</nav>
{body}
</body>
</html>
"""
