"""The comparison, read: `verdict(tables)`, markdown computed from the numbers (which design to ship
for this room, and why), and `markdown_html`, that markdown as HTML for the report."""

from __future__ import annotations

import re

import pandas as pd
from markdown_it import MarkdownIt
from markupsafe import Markup

from kit.results import cost, plots
from kit.results.metrics import Tables

LATENCY_TOLERANCE_S = 0.1  # p95 differences below this are within run-to-run noise on one machine


WER_TOLERANCE = 0.02  # about one word in fifty


CPU_TOLERANCE_PCT = 5.0  # CPU differences below this are within run-to-run noise


ATTRIBUTION_TOLERANCE = 0.02  # words under the wrong speaker, as a share of the reference words: like WER's


def code(name: str) -> str:
    """A name as a markdown code span: shown literally, never read as markup."""
    name = str(name).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", name)), default=0) + 1)
    return f"{fence} {name} {fence}" if name.startswith("`") or name.endswith("`") else f"{fence}{name}{fence}"


def verdict(tables: Tables) -> str:
    """The reading of a comparison, as markdown computed from the tables: which design to ship for
    this room and why (accuracy, then latency within tolerances, then cost decides)."""
    arch = tables.architectures
    if arch.empty:
        return "**Nothing was measured**: no architecture reached the start of the room."
    if len(arch) == 1:
        r = arch.iloc[0]
        return f"**Only {code(r.arch)} ran**, so there is nothing to compare.\n\n" + _bullets(tables, arch)
    pool, excluded = _candidates(arch)
    if pool.empty:  # e.g. nothing transcribed at all: no latency to compare
        reasons = "".join(f"- {code(a)}: {reason}.\n" for a, reason in excluded)
        return "**No design can be recommended from this run.**\n\n" + reasons + "\n" + _bullets(tables, arch)
    best = pool.sort_values(["cpu_s_per_speaker", "peak_pss_mb"]).iloc[0]
    text = f"**Ship {code(best.arch)} for this room.** " + _why(pool, best) + _close_second(pool, best) + _stt_bill(pool, best)
    text += "\n\n"
    text += "".join(f"- {code(a)} is left out: {reason}.\n" for a, reason in excluded)
    return text + ("\n" if excluded else "") + _bullets(tables, arch)


def _candidates(arch: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The designs as accurate and as fast as the best (within tolerances), complete; and why the others are not."""
    complete = arch[arch["complete"].astype(bool)]
    base = complete if len(complete) else arch
    best_missed, best_wer, best_p95 = base["missed"].min(), base["wer"].min(), base["latency_p95"].min()
    wrong = wrong_speaker_share(arch)
    best_wrong = wrong[base.index].min()
    excluded = []
    for r, r_wrong in zip(arch.itertuples(index=False), wrong):
        if not r.complete and len(complete):
            excluded.append((r.arch, "its run is incomplete (errors, see below)"))
        elif r.missed > best_missed:
            excluded.append((r.arch, f"it missed {r.missed} of {r.utterances} utterances, the best missed {best_missed}"))
        elif r_wrong > best_wrong + ATTRIBUTION_TOLERANCE:
            excluded.append((r.arch, f"it put {r.duplicated + r.misattributed} of {r.ref_words} words under the wrong speaker "
                                     f"({r.duplicated} duplicated, {r.misattributed} misattributed), the best "
                                     f"{best_wrong:.0%} of the words"))  # fmt: skip
        elif r.wer > best_wer + WER_TOLERANCE:
            excluded.append((r.arch, f"its WER is {r.wer:.2f} against {best_wer:.2f}"))
        elif not r.latency_p95 <= best_p95 + LATENCY_TOLERANCE_S:
            excluded.append((r.arch, f"its p95 latency is {r.latency_p95:.2f} s against {best_p95:.2f} s"))
    out = {a for a, _ in excluded}
    return arch[~arch["arch"].isin(out)], excluded


def wrong_speaker_share(arch: pd.DataFrame) -> pd.Series:
    """Per design: its duplicated and misattributed words as a share of the room's reference words
    (NaN where attribution was not measured: no reference text, or tables from before it existed)."""
    if not {"duplicated", "misattributed", "ref_words"} <= set(arch.columns):
        return pd.Series(float("nan"), index=arch.index)
    words = arch["ref_words"].astype(float)
    return ((arch["duplicated"].astype(float) + arch["misattributed"].astype(float)) / words.where(words > 0)).astype(float)


def _why(pool: pd.DataFrame, best: pd.Series) -> str:
    if len(pool) == 1:
        return f"It is the only design as accurate and as fast as the best: {_summary(best)}."
    names = ", ".join(code(a) for a in pool["arch"])
    missed = int(pool["missed"].max())
    wer = _range(pool["wer"]) if pool["wer"].notna().any() else "not measured: no reference text"
    return (
        f"{names} are equally accurate (WER {wer}, "
        f"{'no utterance missed' if missed == 0 else f'{missed} missed at most'}) and equally fast "
        f"(p95 latency {_range(pool['latency_p95'])} s, within {LATENCY_TOLERANCE_S:.1f} s), "
        f"so cost decides: {code(best.arch)} needs the least CPU per speaker ({best.cpu_s_per_speaker:.1f} CPU s per speaker "
        f"over the room, {best.cpu_pct:.0f} % of one core in all)."
    )


def _close_second(pool: pd.DataFrame, best: pd.Series) -> str:
    """Say so when the runner-up costs almost the same: one run cannot separate them."""
    rest = pool[pool["arch"] != best.arch]
    if rest.empty:
        return ""
    second = rest.loc[rest["cpu_s_per_speaker"].idxmin()]
    more = 100 * (second.cpu_s_per_speaker / best.cpu_s_per_speaker - 1) if best.cpu_s_per_speaker > 0 else 0.0
    if more >= CPU_TOLERANCE_PCT:
        return ""
    return f" {code(second.arch)} needs only {more:.0f} % more, within run-to-run noise: either will do."


def _stt_bill(pool: pd.DataFrame, best: pd.Series) -> str:
    """With an STT priced per audio minute, say when another equally good design has the lower cloud
    bill (it sends fewer STT minutes): the CPU decides for your own cores, the bill for LiveKit Cloud."""
    item = cost.stt_item_of(pool)
    bills = pool.set_index("arch")[cost.CLOUD_TOTAL] if cost.CLOUD_TOTAL in pool else pd.Series(dtype=float)
    if item is None or bills.isna().all() or pd.isna(bills.get(best.arch)):
        return ""
    cheapest = bills.idxmin()
    if cheapest == best.arch or bills[best.arch] <= bills[cheapest] * (1 + CPU_TOLERANCE_PCT / 100):
        return ""
    minutes = pool.set_index("arch")[cost.STT_MINUTES]
    return (f" On the LiveKit Cloud bill with {code(item)} for the STT, {code(cheapest)} costs less: "
            f"${bills[cheapest]:.3g} against ${bills[best.arch]:.3g} per speaker-hour ({minutes[cheapest]:.1f} STT "
            f"minutes per speaker-hour against {minutes[best.arch]:.1f}); if you pay per streamed minute rather than "
            f"for your own cores, prefer {code(cheapest)}.")


def _range(values: pd.Series) -> str:
    lo, hi = f"{values.min():.2f}", f"{values.max():.2f}"
    return lo if lo == hi else f"{lo}–{hi}"


def _wer(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.2f}"


def _summary(r: pd.Series) -> str:
    return f"WER {_wer(r.wer)}, {r.missed} missed, p95 latency {r.latency_p95:.2f} s, {r.cpu_s_per_speaker:.1f} CPU s per speaker"


def _bullets(tables: Tables, arch: pd.DataFrame) -> str:
    cheapest = float(arch["cpu_s_per_speaker"].min())
    rows = list(arch.itertuples())
    lines = [
        "**Accuracy**: " + "; ".join(f"{code(r.arch)} WER {_wer(r.wer)}, missed {r.missed}/{r.utterances}" for r in rows),
        "**Latency** (final − true end of speech, p50 / p95): "
        + "; ".join(f"{code(r.arch)} {r.latency_p50:.2f} / {r.latency_p95:.2f} s" for r in rows)
        + f"; the floor (VAD silence + inference) is about {arch['floor_p50'].median():.2f} s",
        "**CPU per speaker**: " + "; ".join(_relative(r.arch, r.cpu_s_per_speaker, cheapest, "CPU s") for r in rows),
        "**Peak memory (PSS)**: " + "; ".join(f"{code(r.arch)} {r.peak_pss_mb:.0f} MB" for r in rows),
        "**In the room**: " + "; ".join(f"{code(r.arch)} {r.jobs} job(s), {r.processes} process(es), "
                                        f"{r.agent_participants} agent participant(s)" for r in rows),
    ]  # fmt: skip
    lines += _dollar_lines(arch)
    lines += _speaker_problems(tables)
    return "".join(f"- {line}\n" for line in lines)


def _relative(name: str, value: float, base: float, unit: str) -> str:
    more = f" (+{100 * (value / base - 1):.0f} %)" if base > 0 and value > base * 1.005 else ""
    return f"{code(name)} {value:.1f} {unit}{more}"


def _dollars(value: float) -> str:
    return "not measured" if pd.isna(value) else f"${value:.3g}"


def _dollar_lines(arch: pd.DataFrame) -> list[str]:
    """One line per price; the cloud bill with its parts, and the STT bill when an STT is priced."""
    lines = []
    for col in plots.dollar_panels(arch):
        if col == cost.CLOUD_TOTAL and all(c in arch for c in cost.CLOUD_PARTS):
            lines.append(_cloud_line(arch))
        else:
            lines.append(f"**{plots.dollar_label(col)}**: " + "; ".join(f"{code(a)} {_dollars(v)}" for a, v in zip(arch["arch"], arch[col])))
    return lines + _stt_lines(arch)


def _cloud_line(arch: pd.DataFrame) -> str:
    priced = cost.stt_item_of(arch) is not None
    parts = cost.CLOUD_PARTS if priced else cost.CLOUD_PARTS[:2]
    what = "agent session + connection + STT" if priced else "agent session + connection; STT not priced"
    items = []
    for r in arch.to_dict("records"):
        shares = " + ".join("n/a" if pd.isna(r[c]) else f"{r[c]:.3g}" for c in parts)
        items.append(f"{code(r['arch'])} {_dollars(r[cost.CLOUD_TOTAL])} ({shares})")
    return f"**{plots.dollar_label(cost.CLOUD_TOTAL)}** ({what}): " + "; ".join(items)


def _stt_lines(arch: pd.DataFrame) -> list[str]:
    """The STT bill: minutes sent per speaker-hour and their price per design; which sends the fewest."""
    item = cost.stt_item_of(arch)
    if item is None:
        return []
    price = float(arch["stt_price_usd_per_minute"].iloc[0])
    head = f"**STT bill** ({code(item)}, ${price:.4g} per audio minute): "
    minutes = arch.set_index("arch")[cost.STT_MINUTES] if cost.STT_MINUTES in arch else pd.Series(dtype=float)
    if minutes.isna().all():
        return [head + "not measured in this run (no audio sent to the STT recorded), so the cloud bill is not shown"]
    per = "; ".join(f"{code(a)} {'not measured' if pd.isna(m) else f'{m:.1f} min per speaker-hour'}"
                    f"{'' if pd.isna(d) else f' (${d:.3g})'}"
                    for a, m, d in zip(arch["arch"], arch[cost.STT_MINUTES], arch[cost.CLOUD_STT]))  # fmt: skip
    fewest = minutes.dropna()
    tied = fewest[fewest <= fewest.min() * 1.005]
    names = " and ".join(code(a) for a in tied.index)
    return [head + per + f"; {names} send{'s' if len(tied) == 1 else ''} the fewest STT minutes"]


def _speaker_problems(tables: Tables) -> list[str]:
    spk = tables.speakers
    bad = spk[(spk["missed"] > 0) | (spk["insertions"] > 0)] if "insertions" in spk else spk[spk["missed"] > 0]
    return [
        f"**Speaker** {code(r.participant)} with {code(r.arch)}: {r.missed} of {r.utterances} utterances missed"
        + (f", {r.insertions} insertion(s)" if getattr(r, "insertions", 0) else "")
        for r in bad.itertuples()
    ]


def markdown_html(text: str) -> str:
    """The verdict's markdown as HTML (CommonMark, by markdown-it-py); raw HTML in it is escaped, never passed on."""
    return Markup(_MARKDOWN.render(text))


_MARKDOWN = MarkdownIt("commonmark", {"html": False})
