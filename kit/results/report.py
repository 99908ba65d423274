"""One self-contained HTML report per run (`write(run_dir)` -> <run_dir>/report.html): the
question, the reading (kit/results/reading.py), the room, the method, the results, each design, the record.

The report has no script and loads nothing: figures are inlined as base64 PNG, styles inline, and
a Content-Security-Policy forbids scripts and network access. Every text that comes from a
scenario, an event or run.json is HTML-escaped; secrets are never written.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from kit import architectures
from kit.lab import Run, load, pricing_path
from kit.live.common import redact
from kit.results import cost, metrics, plots
from kit.results.reading import (
    ATTRIBUTION_TOLERANCE,
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
        ("attribution", "each reference word, aligned (jiwer) with the finals under its speaker and with the others' finals "
                        "spoken at the same time: duplicated (under its speaker and another), misattributed (only under "
                        "another), missed words (under nobody); fragmented: utterances split over several finals"),
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
    """The whole report as one HTML string (kit/results/templates/report.html)."""
    console_run = (run.record.live or {}).get("console_run")
    if console is None and console_run and Path(console_run, "run.json").is_file():
        console = load(console_run)
    title = f"{run.scenario.name}: which design transcribes every participant — run {run.record.run_id}"
    page = _TEMPLATES.get_template("report.html").render(
        title=title, question=QUESTION, run=run, mode=run.record.mode, config=run.record.run_config,
        problems=list(run.problems().itertuples()), verdict=markdown_html(verdict(run.tables)),
        tolerance=Tolerances(WER_TOLERANCE, LATENCY_TOLERANCE_S, CPU_TOLERANCE_PCT, ATTRIBUTION_TOLERANCE),
        figures=set(pngs), tables=_tables(run, console), stt_price=_stt_price(run),
        console=console, server_version=(run.record.live or {}).get("server_version") or "(version unknown)",
        arch_sections=[_arch_section(run, a) for a in run.archs],
        other_rooms=_other_rooms([run, *others]) if others else [],
        config_json=json.dumps(redact(asdict(run.record)).get("config"), indent=1), machine=run.record.machine or {},
    )  # fmt: skip
    page = redact(page)
    # Images go in last, so that scrubbing text can never touch their base64.
    return re.sub(r"@@png:(\w+)@@", lambda m: base64.b64encode(pngs[m.group(1)]).decode("ascii"), page)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
)  # fmt: skip


@dataclass(frozen=True)
class Tolerances:
    """The verdict's tolerances, as its note states them."""

    wer: float
    latency_s: float
    cpu_pct: float
    attribution: float


@dataclass(frozen=True)
class ReportTables:
    """Every table of the report, as escaped HTML (pandas' own to_html)."""

    room: Markup
    ground_truth: Markup
    designs: Markup
    metrics: Markup
    architectures: Markup
    speakers: Markup
    prices: Markup
    console_vs_live: Markup
    attribution: Markup
    record: Markup
    versions: Markup


ATTRIBUTION_COLUMNS = {
    "arch": "architecture", "participant": "speaker", "ref_words": "words", "duplicated": "duplicated",
    "misattributed": "misattributed", "missed_words": "missed words", "fragmented": "fragmented",
    "muted_s": "muted s", "muted_stt_audio_s": "STT audio while muted s", "stt_muted_usd": "its STT bill $",
    "muted_finals": "finals while muted",
}  # fmt: skip


def _tables(run: Run, console: Run | None) -> ReportTables:
    dollars = _dollar_columns(run)
    return ReportTables(
        room=_table(room_frame(run.scenario)),
        ground_truth=_table(run.scenario.utterances_frame()),
        designs=_table(designs(run.archs).rename(columns={"arch": "architecture"})),
        metrics=_table(METRICS),
        architectures=_table(run.tables.architectures, {**metrics.ARCH_COLUMNS, **_uplink_columns(run), **dollars}),
        speakers=_table(run.tables.speakers, {**metrics.SPEAKER_COLUMNS, **dollars}),
        attribution=_table(run.tables.speakers, ATTRIBUTION_COLUMNS),
        prices=_table(cost.load_pricing(pricing_path(run.record)).table) if dollars else Markup(""),
        console_vs_live=_table(metrics.console_vs_live(console.tables, run.tables)) if console else Markup(""),
        record=_table(_record_facts(run)),
        versions=_table(pd.DataFrame(sorted((run.record.versions or {}).items()), columns=["package", "version"])),
    )


def _dollar_columns(run: Run) -> dict[str, str]:
    """The dollar columns of this run's tables -> their headers (with the STT minutes first when priced)."""
    dollars = {c: plots.dollar_label(c) for c in plots.dollar_columns(run.tables.architectures)}
    if dollars and cost.STT_MINUTES in run.tables.architectures:
        dollars = {cost.STT_MINUTES: "STT min/spk-h", **dollars}
    return dollars


def _uplink_columns(run: Run) -> dict[str, str]:
    """Live: the uplink's loss and jitter as the server reported them (kit/results/network.py)."""
    reported = run.tables.architectures.get("uplink_loss", pd.Series(dtype=float)).notna().any()
    return {"uplink_loss": "uplink loss", "uplink_jitter_ms": "uplink jitter ms"} if reported else {}


def _table(df: pd.DataFrame, columns: dict[str, str] | None = None) -> Markup:
    if columns:
        df = df[[c for c in columns if c in df.columns]].rename(columns=columns)
    return Markup(df.to_html(index=False, escape=True, na_rep="–", float_format=_number, border=0, classes="data"))


def _number(v: float) -> str:
    return f"{v:.3g}" if v != 0 and abs(v) < 0.1 else f"{v:.2f}"


@dataclass(frozen=True)
class SttPrice:
    """The STT price row the cloud bill's STT part used; item None: none was chosen (then `choices`
    says how many there are); source_url None: the row is no longer in the pricing file."""

    item: str | None
    price_usd: float = float("nan")
    source_url: str | None = None
    read_on: str = ""
    note: str = ""
    measured: bool = False
    choices: int = 0


def _stt_price(run: Run) -> SttPrice | None:
    """Which STT price row the cloud bill's STT part used, or that none was; None: no dollars at all."""
    if not _dollar_columns(run):
        return None
    pricing = cost.load_pricing(pricing_path(run.record))
    item = cost.stt_item_of(run.tables.architectures)
    if item is None:
        return SttPrice(item=None, choices=len(pricing.stt_items()))
    try:
        row = pricing.stt_row(item)
    except cost.PricingError:  # the tables were priced with a row this pricing file no longer has
        return SttPrice(item=item, price_usd=float(run.tables.architectures["stt_price_usd_per_minute"].iloc[0]))
    arch = run.tables.architectures
    measured = bool(cost.STT_MINUTES in arch and arch[cost.STT_MINUTES].notna().any())
    return SttPrice(item, row.price_usd, row.source_url, row.read_on, row.note, measured)


@dataclass(frozen=True)
class OtherRoom:
    """One more room's section: per speaker and design, missed utterances and latency."""

    name: str
    run_id: str
    table: Markup


def _other_rooms(runs: list[Run]) -> list[OtherRoom]:
    frame = rooms_frame(runs)
    return [OtherRoom(run.scenario.name, run.record.run_id, _table(frame[frame["room"] == run.scenario.name].drop(columns="room")))
            for run in runs]  # fmt: skip


UTTERANCE_COLUMNS = {
    "participant": "speaker", "start_s": "start s", "end_s": "end s", "ref_text": "reference", "hyp_text": "transcript",
    "n_finals": "finals", "latency_s": "latency s", "vad_latency_s": "VAD latency s", "missed": "missed",
}  # fmt: skip


@dataclass(frozen=True)
class ArchSection:
    """One design's section: what it ran, its problems, its jobs and its transcripts."""

    arch: str
    per_participant: str
    jobs: int
    processes: int
    agent_participants: int
    complete: bool
    problems: list[str]
    jobs_table: Markup
    transcripts_table: Markup


def _arch_section(run: Run, arch: str) -> ArchSection:
    design = architectures.design(arch)
    row = run.tables.architectures.set_index("arch").loc[arch]
    problems = run.problems()
    return ArchSection(
        arch=arch, per_participant=design.per_participant if design else "(no description)",
        jobs=int(row["jobs"]), processes=int(row["processes"]), agent_participants=int(row["agent_participants"]),
        complete=bool(row["complete"]), problems=list(problems.loc[problems["arch"] == arch, "problem"]),
        jobs_table=_table(jobs_frame(run.events[run.events["arch"] == arch])),
        transcripts_table=_table(run.tables.utterances[run.tables.utterances["arch"] == arch], UTTERANCE_COLUMNS),
    )  # fmt: skip


def vad_settings(v) -> str:
    """The VAD settings as the report's facts say them."""
    return f"turn ends after {v.min_silence_duration:g} s of silence; speech from p = {v.activation_threshold:g}; {v.prefix_padding_duration:g} s kept before"


def _record_facts(run: Run) -> pd.DataFrame:
    rec = redact(asdict(run.record))
    model = rec.get("model") or {}
    return pd.DataFrame(
        [("run id", rec.get("run_id")), ("started", rec.get("started")), ("ended", rec.get("ended")),
         ("complete", rec.get("complete")), ("git sha", rec.get("git_sha")),
         ("network (live, --net)", run.record.run_config.net or "not impaired") if rec.get("mode") == "live" else ("mode", "console"),
         ("scenario", f"{rec['scenario']['name']} (sha256 {rec['scenario']['sha256']})"),
         ("VAD gate (--vad-gate)", run.record.run_config.vad.gate),
         ("VAD (--min-silence, --activation-threshold, --prefix-padding)", vad_settings(run.record.run_config.vad)),
         ("model", f"{model.get('source')}: {model.get('location')} (sha256 {model.get('sha256')})" if model
                   else "none (calibration STT)"),
         *((f"machine: {k}", v) for k, v in (rec.get("machine") or {}).items())],
        columns=["", "value"],
    )  # fmt: skip
