"""Dollars from a pricing table: what one hour of one speaker costs, two ways.

- LiveKit Cloud: agent session minutes and connection minutes of the AGENT participants (the
  humans' own connection minutes are the same whatever the design, so they are left out), plus,
  when an STT price is chosen (`stt_item`, `--stt-price ITEM`), the minutes of audio each design
  sent to a cloud STT billed per audio minute. Multi-dispatch pays for N agent participants, the
  single-job designs for one; a VAD-gated pipeline sends only speech turns, a streaming STT fed
  everything sends the whole time the participant is connected.
- Self-hosted compute: the measured CPU (cores busy) and memory (PSS) per speaker, at one named
  instance type's price per vCPU-hour and per GB-hour.

`data/pricing.csv` holds every price with its source URL and the date it was read; pass your own
file with the same columns to price your own deal. Besides the four required items (ITEMS), a file
may hold any number of STT prices, items named `stt_<provider>_<model>[_<mode>]_minute` in USD per
audio minute (optional: a file without them still loads; `Pricing.stt` lists them). An optional
`model` column names the model an STT row prices as the STT service logs it, `<api>:<model>` (e.g.
`inference:deepgram/nova-3`, `deepgram:nova-3`, `openai:whisper-1`): without `--stt-price`, a design
whose STT clients asked the run's service for exactly one such model is billed at that row.

Columns `add_dollars` adds to both tables (per speaker-hour: one hour of one speaker's room time):

- `dollars_cloud_agent_per_speaker_hour`: agent participants × 60 × agent session price ÷ speakers.
- `dollars_cloud_connection_per_speaker_hour`: agent participants × 60 × connection price ÷ speakers.
- `stt_minutes_per_speaker_hour`: minutes of audio sent to the STT per hour of room, per speaker:
  `stt_audio_s / window_s × 60` (per speaker: its own audio; per design: the sum ÷ speakers).
  NaN where `stt_audio_s` is not measured (absent or NaN), never 0.
- `dollars_cloud_stt_per_speaker_hour`: `stt_minutes_per_speaker_hour × stt price`; NaN without
  an STT price or without a measured `stt_audio_s`.
- `dollars_cloud_per_speaker_hour`: the sum of the three parts. Without an STT price it is agent +
  connection (as before STT prices existed); with one, the STT part is included, and where
  `stt_audio_s` is not measured the total is NaN too (a bill missing its STT part is not shown as one).
- `stt_price_item`, `stt_price_usd_per_minute`: the STT price row used (None / NaN without one).
- `dollars_selfhost_per_speaker_hour`: cores busy per speaker × vCPU-hour price + GB per speaker ×
  GB-hour price.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.config import DATA_DIR, KitError

DEFAULT_PRICING = DATA_DIR / "pricing.csv"
COLUMNS = ["item", "price_usd", "unit", "source_url", "read_on", "note"]
MODEL_COLUMN = "model"  # optional: the `<api>:<model>` an STT row prices
ITEMS = {
    "cloud_agent_session_minute": "per agent session minute (LiveKit Cloud agent hosting)",
    "cloud_connection_minute": "per participant connection minute (LiveKit Cloud WebRTC)",
    "selfhost_vcpu_hour": "per vCPU-hour (self-hosted compute)",
    "selfhost_gb_hour": "per GB-hour of memory (self-hosted compute)",
}
STT_ITEM = re.compile(r"stt_[a-z0-9]+(?:_[a-z0-9]+)*_minute")  # optional rows: USD per audio minute

# The cloud bill's three parts, their sum, and the self-hosted price (the columns add_dollars writes).
CLOUD_AGENT = "dollars_cloud_agent_per_speaker_hour"
CLOUD_CONNECTION = "dollars_cloud_connection_per_speaker_hour"
CLOUD_STT = "dollars_cloud_stt_per_speaker_hour"
CLOUD_PARTS = (CLOUD_AGENT, CLOUD_CONNECTION, CLOUD_STT)
CLOUD_TOTAL = "dollars_cloud_per_speaker_hour"
SELFHOST = "dollars_selfhost_per_speaker_hour"
STT_MINUTES = "stt_minutes_per_speaker_hour"
STT_MUTED = "stt_muted_usd"  # the STT bill of the run's muted time (USD in this run, not per hour; not a dollars_* rate)


class PricingError(KitError):
    pass


@dataclass(frozen=True)
class Pricing:
    agent_session_minute: float
    connection_minute: float
    vcpu_hour: float
    gb_hour: float
    table: pd.DataFrame | None  # the file as read, with sources and dates
    # The STT price rows (columns COLUMNS, price_usd as float), one per item; empty when the file has none.
    stt: pd.DataFrame | None = None

    def stt_items(self) -> list[str]:
        return [] if self.stt is None else list(self.stt["item"])

    def stt_row(self, item: str) -> pd.Series:
        """The STT price row `item` (item, price_usd, unit, source_url, read_on, note)."""
        rows = self.stt[self.stt["item"] == item] if self.stt is not None else None
        if rows is None or rows.empty:
            known = ", ".join(self.stt_items()) or "none in this pricing file"
            raise PricingError(f"unknown STT price {item!r} (known STT items: {known})")
        return rows.iloc[0]

    def stt_price(self, item: str) -> float:
        """USD per audio minute of the STT price row `item`; PricingError naming the known ones otherwise."""
        return float(self.stt_row(item)["price_usd"])

    def stt_item_for(self, api: str, model: str) -> str | None:
        """The STT price row of the model a design's clients asked for (`api` and `model` as the service
        logged them, one each), None when none is priced or they named several."""
        if self.stt is None or MODEL_COLUMN not in self.stt or not api or not model or "," in api + model:
            return None
        rows = self.stt[self.stt[MODEL_COLUMN] == f"{api}:{model}"]
        return str(rows["item"].iloc[0]) if len(rows) else None


def load_pricing(path: Path | str | None = None) -> Pricing:
    path = Path(path) if path else DEFAULT_PRICING
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise PricingError(f"pricing file not found: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PricingError(f"{path}: not a CSV file ({e})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise PricingError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    prices, stt = {}, []
    for row in df.itertuples(index=False):
        is_stt = STT_ITEM.fullmatch(row.item) is not None
        if row.item not in ITEMS and not is_stt:
            raise PricingError(f"{path}: unknown item {row.item!r} (known: {', '.join(ITEMS)}, "
                               "or an STT price named stt_<provider>_<model>_minute)")  # fmt: skip
        if row.item in prices:
            raise PricingError(f"{path}: {row.item} is priced twice")
        try:
            price = float(row.price_usd)
        except ValueError:
            price = math.nan
        if not math.isfinite(price) or price < 0:
            raise PricingError(f"{path}: price of {row.item} must be a non-negative number, got {row.price_usd!r}")
        if not row.source_url.strip() or not row.read_on.strip():
            raise PricingError(f"{path}: {row.item} needs a source_url and the date it was read (read_on)")
        prices[row.item] = price
        if is_stt:
            stt.append({**row._asdict(), "price_usd": price, MODEL_COLUMN: getattr(row, MODEL_COLUMN, "")})
    absent = [i for i in ITEMS if i not in prices]
    if absent:
        raise PricingError(f"{path}: no price for {', '.join(absent)}")
    return Pricing(
        prices["cloud_agent_session_minute"], prices["cloud_connection_minute"],
        prices["selfhost_vcpu_hour"], prices["selfhost_gb_hour"], df, pd.DataFrame(stt, columns=[*COLUMNS, MODEL_COLUMN]),
    )  # fmt: skip


def cloud_per_speaker_hour(pricing: Pricing, agent_participants: float, speakers: float) -> float:
    """LiveKit Cloud dollars per speaker-hour: each agent participant bills session + connection minutes."""
    return agent_participants * 60 * (pricing.agent_session_minute + pricing.connection_minute) / speakers


def selfhost_per_speaker_hour(pricing: Pricing, cores: float, memory_mb: float) -> float:
    """Self-hosted dollars per speaker-hour for `cores` busy and `memory_mb` resident per speaker."""
    return cores * pricing.vcpu_hour + memory_mb / 1024 * pricing.gb_hour


def stt_minutes_per_hour(stt_audio_s: float, window_s: float) -> float:
    """Minutes of audio sent to the STT per hour of room: stt_audio_s / window_s × 60; NaN when
    either is not measured (NaN) or the window is empty, never 0 for 'unknown'."""
    try:
        audio, window = float(stt_audio_s), float(window_s)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(audio) and math.isfinite(window)) or window <= 0:
        return math.nan
    return audio / window * 60


def stt_item_of(table: pd.DataFrame) -> str | None:
    """The STT price row a priced table was billed with (its `stt_price_item`), None when unpriced."""
    if "stt_price_item" not in table.columns:
        return None
    return next((str(v) for v in table["stt_price_item"] if isinstance(v, str) and v.strip()), None)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column as floats, all NaN when the table does not have it (not measured)."""
    if name not in df.columns:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[name], errors="coerce").astype(float)


def add_dollars(speakers: pd.DataFrame, architectures: pd.DataFrame, pricing: Pricing,
                stt_item: str | dict[str, str | None] | None = None) -> None:  # fmt: skip
    """Adds the dollar columns (module docstring) to both tables, in place, priced with `pricing`
    and, for the STT part, the STT price row `stt_item` (None: the STT part is not priced; a dict:
    each design's own row, design -> item or None).

    Needs: architectures.{arch, agent_participants, speakers, cpu_s, window_s, peak_pss_mb};
    speakers.{arch, cpu_s, pss_mb}; optionally `stt_audio_s` in both (seconds of audio sent to the
    STT: per speaker its own, per design the sum), NaN or absent = not measured, and likewise
    `muted_stt_audio_s` (the part of it sent while muted: STT_MUTED, the dollars of this run). An unknown
    `stt_item` raises PricingError (naming the known STT items) before any column is written.
    """
    items = stt_item if isinstance(stt_item, dict) else {a: stt_item for a in architectures["arch"]}
    prices = {a: pricing.stt_price(i) if i is not None else math.nan for a, i in items.items()}
    arch_agent = architectures["agent_participants"] * 60 / architectures["speakers"]
    architectures[CLOUD_AGENT] = arch_agent * pricing.agent_session_minute
    architectures[CLOUD_CONNECTION] = arch_agent * pricing.connection_minute
    architectures[STT_MINUTES] = [
        stt_minutes_per_hour(audio, window) / n
        for audio, window, n in zip(_column(architectures, "stt_audio_s"), architectures["window_s"], architectures["speakers"])
    ]
    architectures[CLOUD_STT] = architectures[STT_MINUTES] * architectures["arch"].map(prices)
    architectures[STT_MUTED] = _column(architectures, "muted_stt_audio_s") / 60 * architectures["arch"].map(prices)
    _total(architectures, architectures["arch"].map(items), architectures["arch"].map(prices))
    architectures[SELFHOST] = [
        selfhost_per_speaker_hour(pricing, r.cpu_s / r.window_s / r.speakers, r.peak_pss_mb / r.speakers)
        for r in architectures.itertuples()
    ]
    arch = architectures.set_index("arch")
    window = speakers["arch"].map(arch["window_s"])
    speakers[CLOUD_AGENT] = speakers["arch"].map(arch[CLOUD_AGENT])
    speakers[CLOUD_CONNECTION] = speakers["arch"].map(arch[CLOUD_CONNECTION])
    speakers[STT_MINUTES] = [stt_minutes_per_hour(a, w) for a, w in zip(_column(speakers, "stt_audio_s"), window)]
    speakers[CLOUD_STT] = speakers[STT_MINUTES] * speakers["arch"].map(prices)
    speakers[STT_MUTED] = _column(speakers, "muted_stt_audio_s") / 60 * speakers["arch"].map(prices)
    _total(speakers, speakers["arch"].map(items), speakers["arch"].map(prices))
    speakers[SELFHOST] = [
        selfhost_per_speaker_hour(pricing, r.cpu_s / arch.loc[r.arch, "window_s"], r.pss_mb) for r in speakers.itertuples()
    ]


def _total(table: pd.DataFrame, items: pd.Series, prices: pd.Series) -> None:
    """The cloud bill: agent + connection (+ STT where an STT price applies; NaN where it is not measured)."""
    priced = items.notna()
    table[CLOUD_TOTAL] = table[CLOUD_AGENT] + table[CLOUD_CONNECTION] + table[CLOUD_STT].where(priced, 0.0)
    table["stt_price_item"] = [i if isinstance(i, str) else None for i in items]
    table["stt_price_usd_per_minute"] = prices.astype(float)
