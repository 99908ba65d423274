"""Events -> pandas DataFrames: utterances, speakers, architectures (definitions in DESIGN §9).

`utterances`: one row per (architecture, reference utterance), plus one row per insertion.
    arch, participant, utt (index in the scenario, -1 for insertions), kind ("reference" | "insertion"),
    start_s, end_s (ground truth, s since t0), ref_text, hyp_text (finals joined in order),
    n_finals, final_t (time of the last final), latency_s (final_t - end_s),
    vad_end_s (the VAD's end of speech behind the last final), vad_latency_s (final_t - vad_end_s),
    infer_s (STT wall time of the last final), floor_s (VAD silence threshold + infer_s),
    stt_cpu_s (STT CPU of all its finals), missed (no final matched).
`speakers`: one row per (architecture, participant): counts, WER, latency percentiles.
"""

from __future__ import annotations

import re

import jiwer
import numpy as np
import pandas as pd

from kit.scenario import Scenario

UTTERANCE_COLUMNS = [
    "arch", "participant", "utt", "kind", "start_s", "end_s", "ref_text", "hyp_text", "n_finals",
    "final_t", "latency_s", "vad_end_s", "vad_latency_s", "infer_s", "floor_s", "stt_cpu_s", "missed",
]  # fmt: skip

# --- text normalisation for WER: lowercase, numbers as spoken, punctuation stripped -----------------

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 10**12 in words, as a speaker says it ("one hundred twenty three")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return number_words(n // size) + " " + name + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def normalize(text: str) -> str:
    text = text.lower().replace("%", " percent")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"\d+", lambda m: " " + number_words(int(m.group())) + " ", text)
    text = re.sub(r"[^\w\s']|_", " ", text)  # punctuation out, apostrophes inside words kept
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over aligned lists of texts, after normalize(); NaN with no reference words."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    if not any(refs):
        return float("nan")
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


# --- matching finals to utterances ------------------------------------------------------------------


def utterances(scenario: Scenario, events: pd.DataFrame, vad_silence_s: float) -> pd.DataFrame:
    """Match each architecture's finals to the reference utterances (see module docstring)."""
    finals = events[events["kind"] == "final"]
    rows = []
    for arch, arch_finals in finals.groupby("arch", sort=False):
        rows += _match_arch(scenario, str(arch), arch_finals, vad_silence_s)
    return pd.DataFrame(rows, columns=UTTERANCE_COLUMNS)


def _match_arch(scenario: Scenario, arch: str, finals: pd.DataFrame, vad_silence_s: float) -> list[dict]:
    refs = list(enumerate(scenario.utterances))
    matched: dict[int, list] = {i: [] for i, _ in refs}
    insertions = []
    for f in finals.sort_values("t").itertuples(index=False):
        best, best_overlap = None, 0.0
        for i, u in refs:
            if u.participant != f.participant:
                continue
            overlap = min(u.end_s, f.speech_end) - max(u.start_s, f.speech_start)
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        (matched[best] if best is not None else insertions).append(f)
    rows = []
    for i, u in refs:
        fs = matched[i]
        last = fs[-1] if fs else None
        rows.append(_row(arch, u.participant, i, "reference", u.start_s, u.end_s, u.text, fs, last, vad_silence_s))
    for f in insertions:
        rows.append(_row(arch, f.participant, -1, "insertion", np.nan, np.nan, "", [f], f, vad_silence_s))
    return rows


def _row(arch, participant, utt, kind, start_s, end_s, ref_text, finals, last, vad_silence_s) -> dict:
    final_t = last.t if last is not None else np.nan
    vad_end = last.speech_end if last is not None else np.nan
    infer = last.infer_s if last is not None else np.nan
    return {
        "arch": arch, "participant": participant, "utt": utt, "kind": kind, "start_s": start_s, "end_s": end_s,
        "ref_text": ref_text, "hyp_text": " ".join(str(f.text) for f in finals), "n_finals": len(finals),
        "final_t": final_t, "latency_s": final_t - end_s, "vad_end_s": vad_end, "vad_latency_s": final_t - vad_end,
        "infer_s": infer, "floor_s": vad_silence_s + infer,
        "stt_cpu_s": float(sum(f.stt_cpu_s for f in finals if pd.notna(f.stt_cpu_s))),
        "missed": kind == "reference" and not finals,
    }  # fmt: skip


def speakers(utts: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, participant): utterances, matched, missed, insertions, finals, wer,
    latency p50/p95/p99/max (s), vad_latency_p50 (s), floor_p50 (s), transcript."""
    rows = []
    for (arch, who), g in utts.groupby(["arch", "participant"], sort=False):
        ref = g[g["kind"] == "reference"]
        lat = ref["latency_s"].dropna()
        rows.append({
            "arch": arch, "participant": who, "utterances": len(ref), "matched": int((~ref["missed"]).sum()),
            "missed": int(ref["missed"].sum()), "insertions": int((g["kind"] == "insertion").sum()),
            "finals": int(g["n_finals"].sum()), "wer": wer(list(ref["ref_text"]), list(ref["hyp_text"])),
            "latency_p50": lat.quantile(0.5), "latency_p95": lat.quantile(0.95), "latency_p99": lat.quantile(0.99),
            "latency_max": lat.max(), "vad_latency_p50": ref["vad_latency_s"].median(),
            "floor_p50": ref["floor_s"].median(), "transcript": " ".join(t for t in g.sort_values("final_t")["hyp_text"] if t),
        })  # fmt: skip
    return pd.DataFrame(rows)
