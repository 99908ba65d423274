"""Meeting rooms: N participants, one main speaker at a time, a few people doing most of the talking.

`meeting_script(n, duration_s, seed)` writes the synth script (kit/room/synth.py) of a meeting,
`meeting_room` synthesises it once into data/generated/, and `room_statistics` (a loaded room) or
`script_statistics` (a script, without writing audio) measure a room from its ground truth, for a
meeting and for the sweep's all-talk rooms alike. Every draw comes from `random.Random(seed)`:
the same arguments give a byte-identical script, so the same cached room.

The model (a slice of a meeting, 60 s by default; docs/scenarios.md has the statistics it gives):

- **Participants** `p01`..`pNN`. Only `speaker_count(n)` = min(N, max(3, ceil(log2 N))) of them
  speak (3 up to N = 8, then 4, 5, 6 at N = 16, 32, 64), chosen at random; the others never speak
  and stay connected to the end, their tracks digital silence (what a muted or quiet LiveKit
  microphone track delivers). From N = 8 on, a majority never speaks.
- **Skewed talk.** The speaker of rank r has the Zipf weight 1/r. Rank 1 opens; each next turn's
  holder is drawn with these weights among the other speakers who have joined.
- **Turns** of 1, 2 or 3 sentences (probabilities 0.55, 0.30, 0.15) from `SENTENCES`, plain English
  for Whisper. A speaker's own sentences are at least 1.0 s apart (uniform 1.0-1.5 s within a turn,
  1.2 s at least otherwise): longer than the VAD's 0.55 s end of turn, so that every sentence is one
  VAD turn and one reference utterance.
- **Between turns** a gap uniform in 0.2-0.8 s, or an early start: the next speaker starts before
  the current one has finished, by a log-normal overlap (median 0.5 s, sigma 0.5: overlap durations
  in multi-party talk are approximately log-normal, Laskowski, Heldner and Edlund, "On the dynamics
  of overlap in multi-party conversation", Interspeech 2012), capped at 1.2 s and at 40 % of either
  sentence. The overlap is steered to `TARGET_OVERLAP` of the talk time: a turn starts early with
  probability 0.5 + 3 x the running overlap deficit in seconds (within 0.1-0.9), and when behind,
  by at least the deficit (within the caps).
- **Backchannels.** Between two sentences of a turn, with probability 0.7, a listener who may speak
  then (one who has not spoken yet first) says one of `BACKCHANNELS` over the end of the first,
  starting 0.10-0.25 s before it ends (every backchannel lasts longer: 0.33 s at the least).
- **Mutes** (`mutes=True`, `kit sweep --pattern meeting --mutes`): 3 in 4 of the participants who
  never speak are muted from joining to the end (MUTED_SHARE, chosen by their own `Random(seed + 1)`,
  so the rest of the room is the same). An assumption, not a measured figure: the published ones are
  that 48 % of video-call participants speak at all (Cisco Hybrid Work Index, 2022) and that 7.2 % of
  the participants of small virtual meetings stayed muted for the whole meeting (Vyopta, 40 million
  meetings, Q1 2023); neither says how many of the silent ones mute, which in large calls etiquette
  makes most of them.
- **Late joiners.** The last-ranked speaker (when there are 3 or more) joins at 15-35 % of the
  room and speaks 2 s after joining at the earliest; round(N / 8) of the silent participants join
  at 5-60 %. Nobody leaves early.
- **Length.** Sentences are added while they end, by estimate, before `duration_s` less the 2 s tail
  (`estimate_s`: espeak-ng's length of a sentence from its letters, words and commas at the
  speaker's speed, within about 11 % per sentence); the synthesised room is within a few % of it.

Every overlap is a negative `gap_s` after a longer line, so it lasts exactly that long in the
synthesised room whatever espeak-ng's timing; only the talk time around it is estimated. A line
overlaps only the line before it, so at most two people talk at once.
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

import pandas as pd

from kit.config import KitError
from kit.room import synth
from kit.room.bleed import Bleed
from kit.room.scenario import Scenario

TARGET_OVERLAP = 0.13  # of the planned talk time; synthesised rooms come out at 11-14 % (docs/scenarios.md)
LEAD_IN_S, TAIL_S = 1.0, 2.0
TURN_SENTENCES = ([1, 2, 3], [0.55, 0.30, 0.15])
TURN_PAUSE_S = (1.0, 1.5)  # between a speaker's own sentences within a turn
OWN_GAP_S = 1.2  # at least, between a speaker's sentences otherwise (estimated times: keep a margin)
GAP_S = (0.2, 0.8)  # between turns that do not overlap
OVERLAP_MEDIAN_S, OVERLAP_SIGMA, OVERLAP_MAX_S = 0.5, 0.5, 1.2
BACKCHANNEL_P, BACKCHANNEL_LEAD_S = 0.7, (0.10, 0.25)
STEER = (0.5, 3.0)  # P(early start) = 0.5 + 3 x the overlap deficit in s, within 0.1-0.9
LATE_SPEAKER_AT, LATE_SILENT_AT = (0.15, 0.35), (0.05, 0.60)  # fractions of duration_s
SPEEDS = [150, 160, 170, 180]  # words per minute
SENTENCES = [
    "Good morning, let us get started with the updates.", "The build is green again after the fix.",
    "I will review the pull request this afternoon.", "Our users asked for a darker theme.",
    "The search page loads twice as fast now.", "We still need more tests for the parser.",
    "I talked to the design team this morning.", "The release notes are almost done.",
    "Can someone check the nightly report?", "The database upgrade went smoothly.",
    "I am blocked on the payment service.", "Let us ship the feature on Monday.",
    "Support tickets went down this week.", "I will pair with Sam after lunch.",
    "The mobile app crashed on older phones.", "We should talk to the security team first.",
    "The new dashboard is ready for review.", "I think the deadline is too tight.",
    "Who owns the billing migration now?", "The customer wants a demo next week.",
    "I moved the old tickets to the backlog.", "The cache fixed most of the slow pages.",
    "We lost a day because of the outage.", "Please write down the open questions.",
    "The login bug only happens on Fridays.", "I can take the onboarding guide.",
    "Marketing needs the screenshots by Thursday.", "The test server is running out of disk.",
    "Let us keep the scope small this time.", "I will send a summary after the meeting.",
    "The partner team changed their interface again.", "Most of the errors come from one client.",
    "We could split the work into two parts.", "The budget for the new servers was approved.",
    "I need another pair of eyes on this change.", "The survey results look better than last month.",
    "We should measure before we optimize anything.", "The translation files are still missing.",
    "I am not sure the estimate is right.", "The contract with the vendor ends in June.",
    "Nobody has touched that code in years.", "We can turn the feature off with a flag.",
    "The logs show a timeout in the gateway.", "I would rather fix the root cause.",
    "Let us come back to this next week.", "The interns start on the first of the month.",
    "That sounds like a good plan to me.", "The alerts woke me up twice last night.",
]  # fmt: skip
BACKCHANNELS = ["Yes.", "Right.", "Okay.", "Sure.", "Exactly.", "I see.", "Good point.", "Agreed.", "Yeah."]


MUTED_SHARE = 0.75  # of the participants who never speak, muted throughout (mutes=True; the docstring says why)


def speaker_count(n: int) -> int:
    """How many of n participants speak: log2 of the room, at least 3 (everyone in a smaller room)."""
    return min(n, max(3, math.ceil(math.log2(n))))


def estimate_s(text: str, speed: int) -> float:
    """espeak-ng's length of `text` in seconds at `speed` wpm, within about 11 % (fitted on these sentences)."""
    letters = sum(c.isalpha() for c in text)
    return (0.20 + 0.052 * letters + 0.048 * len(text.split()) + 0.31 * text.count(",")) * 160 / speed


class _Plan:
    """The lines in script order with their estimated times; overlaps are exact (negative gaps)."""

    def __init__(self, speeds: dict[str, int]) -> None:
        self.speeds, self.lines = speeds, []  # lines: (speaker, text, gap_s or None, note)
        self.cursor = LEAD_IN_S  # estimated end of the last line
        self.last_end: dict[str, float] = {}
        self.speech_s = self.overlap_s = 0.0

    def add(self, speaker: str, text: str, start: float, note: str = "") -> float:
        """Place a line at (about) `start`; returns its estimated end."""
        gap = round(start - self.cursor, 2) if self.lines else None
        start = self.cursor + (gap or 0.0)
        self.overlap_s += max(0.0, -(gap or 0.0))
        self.lines.append((speaker, text, gap, note))
        self.cursor = self.last_end[speaker] = start + estimate_s(text, self.speeds[speaker])
        self.speech_s += self.cursor - start
        return self.cursor

    def deficit_s(self) -> float:
        """Overlap still missing for the target share of the talk so far (talk = speech - overlap)."""
        return TARGET_OVERLAP * (self.speech_s - self.overlap_s) - self.overlap_s


def meeting_script(n: int, duration_s: float = 60.0, seed: int = 0, bleed: Bleed | None = None, mutes: bool = False) -> str:
    """The TOML synth script of a deterministic meeting of n participants, about duration_s long;
    `bleed`: every microphone hears the others (kit/room/bleed.py); `mutes`: most who never speak are muted."""
    if n < 1:
        raise KitError(f"the number of participants must be at least 1, got {n}")
    if duration_s < 10:
        raise KitError(f"a meeting room lasts at least 10 s, got {duration_s:g}")
    rng = random.Random(seed)
    ids = [f"p{i + 1:02d}" for i in range(n)]
    speakers = rng.sample(ids, speaker_count(n))  # by rank: speakers[0] talks most
    speeds = {p: rng.choice(SPEEDS) for p in ids}
    # distinct voices for the speakers; the silent ones' voices are never heard
    voices = {p: synth.VOICES[speakers.index(p) if p in speakers else i % len(synth.VOICES)] for i, p in enumerate(ids)}
    joins = {p: 0.0 for p in ids}
    if len(speakers) >= 3:
        joins[speakers[-1]] = round(rng.uniform(*LATE_SPEAKER_AT) * duration_s, 1)
    silent = [p for p in ids if p not in speakers]
    for p in rng.sample(silent, min(len(silent), round(n / 8))):
        joins[p] = round(rng.uniform(*LATE_SILENT_AT) * duration_s, 1)
    plan = _plan(rng, speakers, speeds, joins, duration_s)
    head = f"meeting_script(n={n}, duration_s={duration_s:g}, seed={seed}); speakers by rank: {', '.join(speakers)}"
    out = [f"# {head}", f'name = "meeting-{n}"', "sample_rate = 16000", f"lead_in_s = {LEAD_IN_S}", f"tail_s = {TAIL_S}", ""]
    out += [bleed.toml()] if bleed else []
    for p in ids:
        out += ["[[speakers]]" + ("" if p in speakers else "  # never speaks"), f'identity = "{p}"']
        out += [f'voice = "{voices[p]}"', f"speed = {speeds[p]}"]
        out += [f"join_s = {joins[p]}"] if joins[p] else []
        out.append("")
    for speaker, text, gap, note in plan.lines:
        out += ["[[lines]]", f'speaker = "{speaker}"', f'text = "{text}"']
        out += [] if gap is None else [f"gap_s = {gap + 0.0:.2f}" + (f"  # {note}" if note else "")]
        out.append("")
    muted = random.Random(seed + 1).sample(silent, round(MUTED_SHARE * len(silent))) if mutes else []
    for p in sorted(muted):
        out += ["[[mutes]]  # never speaks, muted until the end", f'participant = "{p}"', f"start_s = {joins[p]}", ""]
    return "\n".join(out)


def _plan(rng: random.Random, speakers: list[str], speeds: dict[str, int], joins: dict[str, float], duration_s: float) -> _Plan:
    weights = {p: 1 / (r + 1) for r, p in enumerate(speakers)}  # Zipf
    deck: list[str] = []

    def sentence() -> str:
        if not deck:  # every sentence once before any repeats
            deck.extend(rng.sample(SENTENCES, len(SENTENCES)))
        return deck.pop()

    def joined(p: str, t: float) -> bool:
        return t >= joins[p] + (2.0 if joins[p] else 0.0)  # a late joiner speaks 2 s after joining at the earliest

    plan = _Plan(speeds)
    holder, start, text = speakers[0], LEAD_IN_S, sentence()
    while True:
        sentences = rng.choices(*TURN_SENTENCES)[0]
        for k in range(sentences):
            if k:
                text = sentence()
                start = max(plan.last_end[holder] + rng.uniform(*TURN_PAUSE_S), plan.cursor + 0.1)
            if plan.lines and start + estimate_s(text, speeds[holder]) > duration_s - TAIL_S:
                return plan  # the room ends (after its tail) at about duration_s
            end = plan.add(holder, text, start)
            if k < sentences - 1 and rng.random() < BACKCHANNEL_P:  # a listener's "right" as the speaker goes on
                at = end - rng.uniform(*BACKCHANNEL_LEAD_S)
                listeners = [
                    p for p in speakers if p != holder and joined(p, at) and at >= plan.last_end.get(p, -math.inf) + OWN_GAP_S
                ]
                quiet = [p for p in listeners if p not in plan.last_end]  # so that every speaker says something
                if listeners:
                    plan.add(rng.choice(quiet or listeners), rng.choice(BACKCHANNELS), at, "backchannel")
        others = [p for p in speakers if p != holder and joined(p, plan.cursor - OVERLAP_MAX_S)]
        if others:
            holder = rng.choices(others, [weights[p] for p in others])[0]
        text = sentence()
        start = _turn_start(rng, plan, holder, text)


def _turn_start(rng: random.Random, plan: _Plan, holder: str, text: str) -> float:
    """Where the next turn starts: after a gap, or (steered by the overlap deficit) before the current
    sentence ends; never within OWN_GAP_S of the holder's own last line."""
    earliest = plan.last_end.get(holder, -math.inf) + OWN_GAP_S
    after = max(plan.cursor + rng.uniform(*GAP_S), earliest)
    speaker, previous, _, _ = plan.lines[-1]  # a sentence: backchannels only come within a turn
    if speaker == holder or rng.random() >= min(0.9, max(0.1, STEER[0] + STEER[1] * plan.deficit_s())):
        return after
    # shorter than both sentences, so that only these two talk at once
    cap = min(OVERLAP_MAX_S, 0.4 * estimate_s(previous, plan.speeds[speaker]), 0.4 * estimate_s(text, plan.speeds[holder]))
    overlap = rng.lognormvariate(math.log(OVERLAP_MEDIAN_S), OVERLAP_SIGMA)
    overlap = min(max(overlap, plan.deficit_s()), cap, plan.cursor - earliest)  # behind the target: catch up
    return plan.cursor - overlap if overlap >= 0.15 else after


def meeting_room(n: int, duration_s: float = 60.0, seed: int = 0, cache: Path = synth.GENERATED_DIR,
                 bleed: Bleed | None = None, mutes: bool = False) -> Path:  # fmt: skip
    """The scenario directory of the meeting, synthesised once and cached (keyed by the script's hash)."""
    return synth.cached_room(meeting_script(n, duration_s, seed, bleed, mutes), f"meeting-{n}", cache)


PARTICIPANT_COLUMNS = ["participant", "joined_s", "left_s", "utterances", "speech_s", "share"]


def room_statistics(scenario: Scenario) -> tuple[pd.DataFrame, pd.Series]:
    """A room's talk from its ground-truth utterances, for any room (see `statistics`)."""
    return statistics(
        [(p.identity, p.join_s, p.leave_s) for p in scenario.participants],
        [(u.participant, u.start_s, u.end_s) for u in scenario.utterances],
        scenario.duration_s,
        scenario.name,
    )


def script_statistics(script: str) -> tuple[pd.DataFrame, pd.Series]:
    """The same as room_statistics of the room a script (TOML text) gives, without writing its audio:
    espeak-ng speaks every line (synth.place), so the times are the synthesised room's, exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.toml"
        path.write_text(script, encoding="utf-8")
        placement = synth.place(path)
    return statistics(
        [(s.identity, s.join_s, s.leave_s) for s in placement.speakers],
        [(u["participant"], u["start_s"], u["end_s"]) for u in placement.utterances()],
        placement.duration_s,
        placement.raw.get("name", "script"),
    )


def statistics(
    participants: list[tuple], utterances: list[tuple], duration_s: float, name: str = ""
) -> tuple[pd.DataFrame, pd.Series]:
    """participants: (identity, join_s, leave_s or None); utterances: (participant, start_s, end_s).

    Per participant (PARTICIPANT_COLUMNS): joined_s, left_s (NaN: stays to the end), utterances,
    speech_s (the sum of its utterances), share (of all speech_s).
    The room (a Series named after it): participants; speakers (with at least one utterance);
    late_joiners (joined_s > 0); utterances; duration_s (the longest track); speech_s (the sum over
    participants, overlapped time counted once per talker); talk_s (time where at least one talks);
    overlap_s (time where at least two talk); overlap_share = overlap_s / talk_s; overlap_der_share =
    (speech_s - talk_s) / speech_s, the talker-time beyond the first over all talker-time (what DER
    counts as missed speech for a one-speaker-at-a-time system: the measure of the AMI figures);
    max_simultaneous (most talkers at one instant; utterances that touch do not overlap);
    top_share (the most talkative participant's share)."""
    per = pd.DataFrame(participants, columns=["participant", "joined_s", "left_s"]).astype({"joined_s": float, "left_s": float})
    spans = pd.DataFrame(utterances, columns=["participant", "start_s", "end_s"])
    length = (spans["end_s"] - spans["start_s"]).groupby(spans["participant"])
    per["utterances"] = per["participant"].map(length.size()).fillna(0).astype(int)
    per["speech_s"] = per["participant"].map(length.sum()).fillna(0.0)
    speech = float(per["speech_s"].sum())
    per["share"] = per["speech_s"] / speech if speech else 0.0
    talk, overlap, peak = talk_time(list(zip(spans["start_s"], spans["end_s"])))
    summary = pd.Series({
        "participants": len(per), "speakers": int((per["utterances"] > 0).sum()),
        "late_joiners": int((per["joined_s"] > 0).sum()), "utterances": len(spans), "duration_s": duration_s,
        "speech_s": speech, "talk_s": talk, "overlap_s": overlap, "overlap_share": overlap / talk if talk else 0.0,
        "overlap_der_share": (speech - talk) / speech if speech else 0.0, "max_simultaneous": peak,
        "top_share": float(per["share"].max()) if len(per) else 0.0,
    }, name=name, dtype=object)  # fmt: skip
    return per[PARTICIPANT_COLUMNS], summary


def talk_time(spans: list[tuple[float, float]]) -> tuple[float, float, int]:
    """(time where >= 1 span is open, time where >= 2 are, most open at once) of (start, end) spans."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # at a tie, an end (-1) first
    open_, last, one, two, peak = 0, 0.0, 0.0, 0.0, 0
    for t, step in events:
        one += (t - last) * (open_ >= 1)
        two += (t - last) * (open_ >= 2)
        open_, last = open_ + step, t
        peak = max(peak, open_)
    return one, two, peak
