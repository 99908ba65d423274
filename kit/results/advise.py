"""`kit advise`: the design to ship for a stated room, computed from console runs the kit makes (or finds).

The user states the situation (`Situation`): how many participants and how they talk (a pattern of
kit/results/sweep.py), the STT (self-hosted Whisper, or a cloud STT by its price row, streaming or per
turn), the SDK and the worker's cores and memory. `advise` runs every candidate design on that room,
pinned to those cores, once (a matching complete run under the results directory is reused), and
answers from its tables (`Advice`): the design to ship, the runner-up, what each costs per
speaker-hour, where the answer would change, and the run behind every figure. A cloud STT is stood in
for by the calibration STT of its kind (`delay:0.3` per turn, `stream-delay:0.3` streaming): what the
design sends it, and so the bill, is measured; its words and speed are the provider's, not measured here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.architectures import NAMES
from kit.config import KitError, RunConfig, check_cpus
from kit.results import cost, metrics
from kit.results.sweep import LATENCY_THRESHOLD_S, PATTERNS, pattern_room
from kit.room import scenario as scenario_mod
from kit.run.record import RunRecord

SDKS = ("python", "node")
CALIBRATION_STT_S = 0.3  # a cloud STT's stand-in answers this long after its turn (or endpoint)
# Node.js: agents-js #1927, one AgentSession per participant in one job fails on @livekit/agents 1.9.0 (docs/own-agent.md)
NODE_BROKEN = {"multi_session": "agents-js #1927: a second AgentSession in one job fails on @livekit/agents 1.9.0"}
CANDIDATES = tuple(a for a in NAMES if a != "active_speaker")  # the baseline hears one person at a time


@dataclass(frozen=True)
class Situation:
    """The room and the stack the advice is for."""

    participants: int
    pattern: str = "all-talk"  # "all-talk" (everyone talks, the worst case) or "meeting" (one at a time, most silent)
    stt_price: str | None = None  # None: self-hosted Whisper on the worker; else a cloud STT, by its row of data/pricing.csv
    streaming: bool = False  # a cloud STT fed every frame (streaming) rather than the VAD's turns
    sdk: str = "python"
    cores: int = 2  # the worker's cores (the run is pinned to them: at most this machine's)
    memory_gb: float = 24.0  # the worker's memory
    threshold_s: float = LATENCY_THRESHOLD_S

    def __post_init__(self) -> None:
        if self.participants < 1:
            raise KitError(f"--participants must be at least 1, got {self.participants}")
        if self.pattern not in PATTERNS:
            raise KitError(f"--pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        if self.sdk not in SDKS:
            raise KitError(f"--sdk must be one of {', '.join(SDKS)}, got {self.sdk!r}")
        if self.stt_price is None and self.streaming:
            raise KitError("--streaming is for a cloud STT (--stt-price ITEM): the kit's Whisper answers per turn")
        if self.stt_price is not None:
            cost.load_pricing().stt_price(self.stt_price)  # an unknown row is refused here, naming the known ones
        check_cpus(self.cores)

    @property
    def designs(self) -> tuple[str, ...]:
        return tuple(a for a in CANDIDATES if not (self.sdk == "node" and a in NODE_BROKEN))

    def config(self, results_dir: Path) -> RunConfig:
        """The console run that measures this situation: every candidate on its room, on its cores."""
        if self.stt_price is None:
            stt = "whisper"
        else:
            stt = f"{'stream-delay' if self.streaming else 'delay'}:{CALIBRATION_STT_S}"
        room = pattern_room(self.pattern, self.participants, lines=2)
        return RunConfig(scenario=str(room), archs=self.designs, stt=stt, cpus=self.cores,
                         stt_price=self.stt_price, results_dir=Path(results_dir))  # fmt: skip

    def describe(self) -> str:
        stt = (f"a {'streaming' if self.streaming else 'per-turn'} cloud STT priced as {self.stt_price}" if self.stt_price
               else "self-hosted Whisper (tiny.en)")
        return (f"{self.participants} participants ({self.pattern}), {stt}, the {self.sdk} SDK, a worker of "
                f"{self.cores} core(s) and {self.memory_gb:g} GB")  # fmt: skip


ADVICE_COLUMNS = ["arch", "holds", "latency_p95", "missed", "wer", "cores", "peak_pss_mb", "agent_participants",
                  "stt_minutes_per_speaker_hour", "dollars_cloud_agent_per_speaker_hour", "dollars_stt_per_speaker_hour",
                  "dollars_compute_per_speaker_hour", "dollars_per_speaker_hour", "run_id"]  # fmt: skip


@dataclass
class Advice:
    """The answer. `table`: one row per candidate (ADVICE_COLUMNS): whether it holds (p95 within the
    threshold, nothing missed), its numbers, and its dollars per speaker-hour: LiveKit Cloud agent session
    and connection minutes, the STT bill (a cloud STT), the compute (self-hosted prices), and their sum."""

    situation: Situation
    ship: str | None  # None: no design holds
    runner_up: str | None
    table: pd.DataFrame
    reasons: list[str]
    changes: list[str]  # where the answer would change
    excluded: dict[str, str]  # design -> why it was not a candidate
    runs: list[str]  # the run ids behind every figure

    def markdown(self) -> str:
        lines = [f"**Situation**: {self.situation.describe()}.", ""]
        if self.ship:
            lines.append(f"**Ship {self.ship}**" + (f"; runner-up: {self.runner_up}." if self.runner_up else "."))
        else:
            lines.append(f"**No design holds** p95 ≤ {self.situation.threshold_s:g} s with nothing missed here.")
        lines += [f"- {r}" for r in self.reasons]
        if self.changes:
            lines += ["", "Where the answer would change:"] + [f"- {c}" for c in self.changes]
        if self.excluded:
            lines += ["", "Not a candidate:"] + [f"- {a}: {why}" for a, why in self.excluded.items()]
        lines += ["", f"Runs: {', '.join(self.runs)} (`python -m kit report` on each shows every table)."]
        return "\n".join(lines)


def matching_run(config: RunConfig) -> Path | None:
    """A complete console run under the config's results directory made with exactly this config (its
    results directory aside): the newest. Its numbers are reused instead of replaying the room again."""
    found = []
    for path in Path(config.results_dir).glob("**/run.json"):
        try:
            record = RunRecord.load(path.parent)
        except Exception:  # a run of another version, or half written: not evidence
            continue
        if record.mode == "console" and record.complete and dataclasses.replace(
                record.run_config, results_dir=config.results_dir) == config:  # fmt: skip
            found.append(path.parent)
    return max(found, key=lambda p: p.name) if found else None


def estimate_s(config: RunConfig) -> float:
    """About how long the run takes: each design replays the room in real time, plus start and stop."""
    return len(config.archs) * (scenario_mod.load(config.scenario).duration_s + 15.0)


def advise(situation: Situation, results_dir: Path, progress_factory=None, say=print) -> Advice:
    """Run (or reuse) what the situation needs and decide; `say` tells the user what it is about to do."""
    from kit.run import runner

    config = situation.config(results_dir)
    run_dir = matching_run(config)
    if run_dir is not None:
        say(f"reusing run {run_dir.name} ({len(config.archs)} designs on {Path(config.scenario).name})")
    else:
        say(f"1 run: {len(config.archs)} designs on {Path(config.scenario).name}, one after another, "
            f"about {estimate_s(config) / 60:.0f} min")  # fmt: skip
        run_dir = runner.run(config, progress_factory=progress_factory)
    tables = metrics.compute(run_dir)
    tables.save(run_dir)
    return decide(situation, tables.architectures, run_dir.name)


def decide(situation: Situation, architectures: pd.DataFrame, run_id: str) -> Advice:
    """The advice from one run's architectures table (kit/results/metrics.py)."""
    t = architectures.set_index("arch").reindex(list(situation.designs))
    table = pd.DataFrame({
        "arch": t.index,
        "holds": ((t["latency_p95"] <= situation.threshold_s) & (t["missed"] == 0) & t["complete"].astype(bool)).to_numpy(),
        "latency_p95": t["latency_p95"].to_numpy(), "missed": t["missed"].to_numpy(),
        "wer": t["wer"].to_numpy() if situation.stt_price is None else float("nan"),  # a stand-in's fixed words
        "cores": (t["cpu_s"] / t["window_s"]).to_numpy(), "peak_pss_mb": t["peak_pss_mb"].to_numpy(),
        "agent_participants": t["agent_participants"].to_numpy(),
        "stt_minutes_per_speaker_hour": t[cost.STT_MINUTES].to_numpy(),
        "dollars_cloud_agent_per_speaker_hour": (t[cost.CLOUD_AGENT] + t[cost.CLOUD_CONNECTION]).to_numpy(),
        "dollars_stt_per_speaker_hour": t[cost.CLOUD_STT].fillna(0.0).to_numpy() if situation.stt_price else 0.0,
        "dollars_compute_per_speaker_hour": t[cost.SELFHOST].to_numpy(),
        "run_id": run_id,
    })  # fmt: skip
    table["dollars_per_speaker_hour"] = table[["dollars_cloud_agent_per_speaker_hour", "dollars_stt_per_speaker_hour",
                                               "dollars_compute_per_speaker_hour"]].sum(axis=1)  # fmt: skip
    table = table[ADVICE_COLUMNS]
    holders = ranked(table[table["holds"]])
    ship = holders["arch"].iloc[0] if len(holders) else None
    runner_up = holders["arch"].iloc[1] if len(holders) > 1 else None
    excluded = {a: why for a, why in NODE_BROKEN.items() if a not in situation.designs}
    return Advice(situation, ship, runner_up, table, reasons(situation, table, ship, runner_up),
                  changes(situation, table, ship, runner_up), excluded, [run_id])  # fmt: skip


TIE = 0.05  # designs within 5 % of the cheapest are tied on cost: the one with more room to grow goes first


def ranked(holders: pd.DataFrame) -> pd.DataFrame:
    """The designs that hold, best first: the cheapest, unless another is within TIE of it; the tied ones by
    the cores they used (room to grow), then p95."""
    if holders.empty:
        return holders
    tied = holders["dollars_per_speaker_hour"] <= holders["dollars_per_speaker_hour"].min() * (1 + TIE)
    return holders.assign(tied=~tied).sort_values(["tied", "cores", "latency_p95", "dollars_per_speaker_hour"]).drop(columns="tied")


def _row(table: pd.DataFrame, arch: str) -> pd.Series:
    return table.set_index("arch").loc[arch]


def reasons(situation: Situation, table: pd.DataFrame, ship: str | None, runner_up: str | None) -> list[str]:
    """Why: each design's verdict with the figures it rests on."""
    out = []
    for r in table.itertuples(index=False):
        if pd.isna(r.latency_p95):
            out.append(f"{r.arch}: not measured in this run")
            continue
        verdict = "holds" if r.holds else ("misses utterances" if r.missed else f"p95 over {situation.threshold_s:g} s")
        wer = f"WER {r.wer:.2f}" if pd.notna(r.wer) else "WER: the cloud STT's, not measured here"
        out.append(f"{r.arch}: {verdict} (p95 {r.latency_p95:.2f} s, {int(r.missed)} missed, {wer}); "
                   f"${r.dollars_per_speaker_hour:.4f} per speaker-hour (agents ${r.dollars_cloud_agent_per_speaker_hour:.4f}, "
                   f"STT ${r.dollars_stt_per_speaker_hour:.4f}, compute ${r.dollars_compute_per_speaker_hour:.4f}); "
                   f"{r.cores:.2f} cores, {r.peak_pss_mb:.0f} MB, {int(r.agent_participants)} agent participant(s)")  # fmt: skip
    if ship and runner_up:
        a, b = _row(table, ship), _row(table, runner_up)
        if abs(b["dollars_per_speaker_hour"] - a["dollars_per_speaker_hour"]) <= TIE * min(a["dollars_per_speaker_hour"], b["dollars_per_speaker_hour"]):
            out.append(f"{ship} and {runner_up} are tied on cost (within {TIE:.0%}); {ship} used fewer cores "
                       f"({a['cores']:.2f} against {b['cores']:.2f}): more room for a bigger room.")  # fmt: skip
        else:
            out.append(f"{ship} is the cheapest of the designs that hold: ${a['dollars_per_speaker_hour']:.4f} against "
                       f"${b['dollars_per_speaker_hour']:.4f} per speaker-hour.")  # fmt: skip
    if situation.stt_price:
        out.append(f"Latency with a cloud STT is measured with a stand-in that answers {CALIBRATION_STT_S:g} s after each turn "
                   f"(streaming: after each endpoint): your provider's own delay takes the place of those {CALIBRATION_STT_S:g} s.")  # fmt: skip
    out.append("Dollars: agents are LiveKit Cloud's agent session and connection minutes (none if you host LiveKit "
               "yourself), STT the cloud STT's bill for the audio each design sent it, compute the CPU and memory "
               "measured, at AWS Fargate's prices (docs/cost-and-scaling.md).")  # fmt: skip
    return out


def changes(situation: Situation, table: pd.DataFrame, ship: str | None, runner_up: str | None) -> list[str]:
    """Where the answer would change: the room size at which each holding design runs out of the worker's
    cores or memory (linear in participants from this run: an estimate; `kit sweep` measures it), and the
    STT price at which the runner-up becomes the cheaper."""
    out, n = [], situation.participants
    for r in table[table["holds"]].itertuples(index=False):
        by_cpu = n * situation.cores / r.cores if r.cores > 0 else float("inf")
        by_memory = n * situation.memory_gb * 1024 / r.peak_pss_mb if r.peak_pss_mb > 0 else float("inf")
        limit, what = (by_cpu, "cores") if by_cpu <= by_memory else (by_memory, "memory")
        out.append(f"{r.arch} uses {r.cores:.2f} of {situation.cores} cores and {r.peak_pss_mb:.0f} MB here: its {what} "
                   f"would be full at about {limit:.0f} participants (estimated; measure with `python -m kit sweep "
                   f"--pattern {situation.pattern} --participants {n},{2 * n} --cpus {situation.cores}`).")  # fmt: skip
    if ship and runner_up and situation.stt_price:
        a, b = _row(table, ship), _row(table, runner_up)
        if b["dollars_per_speaker_hour"] > a["dollars_per_speaker_hour"] * (1 + TIE):  # not a tie: the price decides
            # each costs base + minutes x price: they cross at the price where the two lines meet
            base_a = a["dollars_per_speaker_hour"] - a["dollars_stt_per_speaker_hour"]
            base_b = b["dollars_per_speaker_hour"] - b["dollars_stt_per_speaker_hour"]
            minutes = a["stt_minutes_per_speaker_hour"] - b["stt_minutes_per_speaker_hour"]
            cross = (base_b - base_a) / minutes if minutes else float("nan")
            if cross > 0:
                side = "above" if minutes > 0 else "below"
                out.append(f"{side} ${cross:.4f} per STT audio minute {runner_up} would be the cheaper ({ship} sends "
                           f"{abs(minutes):.1f} {'more' if minutes > 0 else 'fewer'} minutes per speaker-hour).")  # fmt: skip
    return out
