"""Dollars from a pricing table: what one hour of one speaker costs, two ways.

- LiveKit Cloud: agent session minutes and connection minutes of the AGENT participants (the
  humans' own connection minutes are the same whatever the design, so they are left out).
  Multi-dispatch pays for N agent participants, the single-job designs for one.
- Self-hosted compute: the measured CPU (cores busy) and memory (PSS) per speaker, at one named
  instance type's price per vCPU-hour and per GB-hour.

`data/pricing.csv` holds every price with its source URL and the date it was read; pass your own
file with the same columns to price your own deal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.config import DATA_DIR, KitError

DEFAULT_PRICING = DATA_DIR / "pricing.csv"
COLUMNS = ["item", "price_usd", "unit", "source_url", "read_on", "note"]
ITEMS = {
    "cloud_agent_session_minute": "per agent session minute (LiveKit Cloud agent hosting)",
    "cloud_connection_minute": "per participant connection minute (LiveKit Cloud WebRTC)",
    "selfhost_vcpu_hour": "per vCPU-hour (self-hosted compute)",
    "selfhost_gb_hour": "per GB-hour of memory (self-hosted compute)",
}


class PricingError(KitError):
    pass


@dataclass(frozen=True)
class Pricing:
    agent_session_minute: float
    connection_minute: float
    vcpu_hour: float
    gb_hour: float
    table: pd.DataFrame  # the file as read, with sources and dates


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
    prices = {}
    for row in df.itertuples(index=False):
        if row.item not in ITEMS:
            raise PricingError(f"{path}: unknown item {row.item!r} (known: {', '.join(ITEMS)})")
        try:
            price = float(row.price_usd)
        except ValueError:
            price = math.nan
        if not math.isfinite(price) or price < 0:
            raise PricingError(f"{path}: price of {row.item} must be a non-negative number, got {row.price_usd!r}")
        if not row.source_url.strip() or not row.read_on.strip():
            raise PricingError(f"{path}: {row.item} needs a source_url and the date it was read (read_on)")
        prices[row.item] = price
    absent = [i for i in ITEMS if i not in prices]
    if absent:
        raise PricingError(f"{path}: no price for {', '.join(absent)}")
    return Pricing(
        prices["cloud_agent_session_minute"], prices["cloud_connection_minute"],
        prices["selfhost_vcpu_hour"], prices["selfhost_gb_hour"], df,
    )  # fmt: skip


def cloud_per_speaker_hour(pricing: Pricing, agent_participants: float, speakers: float) -> float:
    """LiveKit Cloud dollars per speaker-hour: each agent participant bills session + connection minutes."""
    return agent_participants * 60 * (pricing.agent_session_minute + pricing.connection_minute) / speakers


def selfhost_per_speaker_hour(pricing: Pricing, cores: float, memory_mb: float) -> float:
    """Self-hosted dollars per speaker-hour for `cores` busy and `memory_mb` resident per speaker."""
    return cores * pricing.vcpu_hour + memory_mb / 1024 * pricing.gb_hour


def add_dollars(speakers: pd.DataFrame, architectures: pd.DataFrame, pricing: Pricing) -> None:
    """Adds dollars_cloud_per_speaker_hour and dollars_selfhost_per_speaker_hour to both tables (in place).

    Needs: architectures.{arch, agent_participants, speakers, cpu_s, window_s, peak_pss_mb};
    speakers.{arch, cpu_s, pss_mb}.
    """
    architectures["dollars_cloud_per_speaker_hour"] = [
        cloud_per_speaker_hour(pricing, r.agent_participants, r.speakers) for r in architectures.itertuples()
    ]
    architectures["dollars_selfhost_per_speaker_hour"] = [
        selfhost_per_speaker_hour(pricing, r.cpu_s / r.window_s / r.speakers, r.peak_pss_mb / r.speakers)
        for r in architectures.itertuples()
    ]
    arch = architectures.set_index("arch")
    speakers["dollars_cloud_per_speaker_hour"] = [
        arch.loc[a, "dollars_cloud_per_speaker_hour"] for a in speakers["arch"]
    ]
    speakers["dollars_selfhost_per_speaker_hour"] = [
        selfhost_per_speaker_hour(pricing, r.cpu_s / arch.loc[r.arch, "window_s"], r.pss_mb) for r in speakers.itertuples()
    ]
