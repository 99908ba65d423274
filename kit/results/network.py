"""The live uplink as the server saw it: each publisher's audio packets sent, lost and jittered (its
`uplink` event: the server's RTCP receiver reports, read as the track ended). A lossy network
(`--net`, kit/live/net.py) shows here; console runs have no network, so NaN.

Columns, per speaker: `uplink_packets` (RTP packets sent), `uplink_lost`, `uplink_loss` (lost / sent),
`uplink_jitter_ms`; per design the sums and the loss of the sums (jitter: the speakers' mean).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["uplink_packets", "uplink_lost", "uplink_loss", "uplink_jitter_ms"]


def uplink(events: pd.DataFrame) -> pd.DataFrame:
    """arch, participant and COLUMNS, from the `uplink` events (none: an empty frame)."""
    ev = events[events["kind"] == "uplink"] if len(events) else events
    if not len(ev) or "packets_sent" not in ev:
        return pd.DataFrame(columns=["arch", "participant", *COLUMNS])
    out = ev.groupby(["arch", "participant"], sort=False).agg(uplink_packets=("packets_sent", "sum"), uplink_lost=("packets_lost", "sum"),
                                                              uplink_jitter_ms=("jitter_s", "mean")).reset_index()  # fmt: skip
    out["uplink_jitter_ms"] *= 1000
    out["uplink_loss"] = out["uplink_lost"] / out["uplink_packets"].replace(0, np.nan)
    return out[["arch", "participant", *COLUMNS]]


def add_uplink(speakers: pd.DataFrame, architectures: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables with COLUMNS merged in (NaN where nothing was reported)."""
    up = uplink(events)
    speakers = speakers.merge(up, on=["arch", "participant"], how="left")
    per_arch = up.groupby("arch", sort=False).agg(uplink_packets=("uplink_packets", "sum"), uplink_lost=("uplink_lost", "sum"),
                                                  uplink_jitter_ms=("uplink_jitter_ms", "mean")).reset_index()  # fmt: skip
    per_arch["uplink_loss"] = per_arch["uplink_lost"] / per_arch["uplink_packets"].replace(0, np.nan)
    if len(architectures):
        architectures = architectures.merge(per_arch[["arch", *COLUMNS]], on="arch", how="left")
    return speakers, architectures
