"""Who said it: attribution scores per design and speaker, beside WER (docs/method.md, "Attribution").

Every reference word is looked for, by word alignment (jiwer's), among the finals published under its
own speaker and among those published under the others while it was spoken:

- duplicated: transcribed under its speaker, and under another one too (another microphone heard it);
- misattributed: transcribed only under another speaker;
- missed_words: transcribed under nobody;
- fragmented: a reference utterance whose words came in more than one final.

Under its own speaker a word is found as WER finds it: each reference utterance aligned with the
finals matched to it (kit/results/metrics.py: the speaker's utterance the final's VAD span overlaps
most, or, with no span, the one that ended last before it arrived). Under another speaker T, only the
words of T's finals that T's own alignment left over are looked at (all of a final matched to none of
T's utterances), and only against the reference utterances that overlap the final in time: its VAD
span when the design reports one, else from T's previous final (at most FINAL_SPAN_S before) to its
arrival (your own agent). A run of at least CROSS_RUN_WORDS
consecutive words must match, so that one common word ("the") in a misheard turn is not taken for
someone else's speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import jiwer
import numpy as np
import pandas as pd

from kit.room.scenario import Scenario

CROSS_RUN_WORDS = 2  # consecutive matching words before a word counts as heard under another speaker
FINAL_SPAN_S = 15.0  # a final with no VAD span covers at most this long before its arrival
COUNTS = ["ref_words", "duplicated", "misattributed", "missed_words", "fragmented"]
COLUMNS = ["arch", "participant", *COUNTS]


@dataclass
class Final:
    """One final as attribution sees it: who it was published under, the utterance of theirs it was
    matched to (-1: none), its words, when it was spoken."""

    participant: str
    utt: int
    words: list[str]
    start: float
    end: float


def scores(scenario: Scenario, finals: pd.DataFrame, utts: pd.DataFrame, arch: str, normalize) -> pd.DataFrame:
    """One row per participant of the room (COLUMNS) for one design: `finals`, its `final` events with
    `utt`, the utterance each was matched to (-1: none); `utts`, its utterance rows (which count; fragmented).
    `normalize`: WER's text normalisation (kit.results.metrics.normalize), so a word means the same in both."""
    utterances = scenario.utterances
    refs = [normalize(u.text).split() for u in utterances]
    own = [np.zeros(len(w), bool) for w in refs]  # each reference word: heard under its speaker
    other = [np.zeros(len(w), bool) for w in refs]  # ... under someone else
    fs = final_spans(finals, normalize)
    leftovers = [f.words if f.utt < 0 else [] for f in fs]
    for i in range(len(utterances)):
        matched = [k for k, f in enumerate(fs) if f.utt == i]
        hit_ref, hit_hyp = align(refs[i], [w for k in matched for w in fs[k].words])
        own[i][sorted(hit_ref)] = True
        start = 0
        for k in matched:
            leftovers[k] = [w for j, w in enumerate(fs[k].words, start=start) if j not in hit_hyp]
            start += len(fs[k].words)
    for f, words in zip(fs, leftovers):
        for who in scenario.identities:
            if who == f.participant or not words:
                continue
            during = [i for i, u in enumerate(utterances) if u.participant == who and u.start_s < f.end and f.start < u.end_s]
            hit_ref, hit_hyp = align([w for i in during for w in refs[i]], words, min_run=CROSS_RUN_WORDS)
            _mark(other, during, refs, hit_ref)
            words = [w for j, w in enumerate(words) if j not in hit_hyp]  # a word is one speaker's at most
    counted = utts[utts["kind"] == "reference"]  # not those an interrupted run never reached
    fragmented = counted[counted["n_finals"] > 1].groupby("participant").size()
    reached = set(counted["utt"])
    rows = []
    for who in scenario.identities:
        mine = [i for i, u in enumerate(utterances) if u.participant == who and i in reached]
        o = np.concatenate([own[i] for i in mine] or [np.zeros(0, bool)])
        x = np.concatenate([other[i] for i in mine] or [np.zeros(0, bool)])
        rows.append({"arch": arch, "participant": who, "ref_words": len(o), "duplicated": int((o & x).sum()),
                     "misattributed": int((~o & x).sum()), "missed_words": int((~o & ~x).sum()),
                     "fragmented": int(fragmented.get(who, 0))})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def final_spans(finals: pd.DataFrame, normalize) -> list[Final]:
    """Each final's words and time span (see the module docstring), in order of arrival."""
    out, previous = [], {}
    for f in finals.sort_values("t").itertuples(index=False):
        if pd.notna(f.speech_start) and pd.notna(f.speech_end):
            start, end = float(f.speech_start), float(f.speech_end)
        else:
            start, end = max(previous.get(f.participant, -np.inf), f.t - FINAL_SPAN_S), float(f.t)
        previous[f.participant] = float(f.t)
        out.append(Final(f.participant, int(f.utt), normalize(str(f.text)).split(), start, end))
    return out


def align(ref: list[str], hyp: list[str], min_run: int = 1) -> tuple[set[int], set[int]]:
    """The reference and hypothesis word indexes that match (jiwer's alignment, 'equal' chunks of at
    least `min_run` words)."""
    if not ref or not hyp:
        return set(), set()
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    hit_ref, hit_hyp = set(), set()
    for chunk in out.alignments[0]:
        if chunk.type == "equal" and chunk.ref_end_idx - chunk.ref_start_idx >= min_run:
            hit_ref.update(range(chunk.ref_start_idx, chunk.ref_end_idx))
            hit_hyp.update(range(chunk.hyp_start_idx, chunk.hyp_end_idx))
    return hit_ref, hit_hyp


def _mark(heard: list[np.ndarray], utterances: list[int], refs: list[list[str]], hits: set[int]) -> None:
    """Set the words `hits` indexes, in the concatenation of `utterances`' words, in `heard`."""
    k = 0
    for i in utterances:
        for j in range(len(refs[i])):
            if k + j in hits:
                heard[i][j] = True
        k += len(refs[i])
