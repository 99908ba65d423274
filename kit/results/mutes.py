"""What a design does with a muted microphone (the scenario's `mutes`; docs/method.md, "Mutes").

A muted LiveKit track still reaches the agent as frames, at the usual pace, of digital silence
(measured live: docs/scenarios.md, "Mutes"). So a pipeline's VAD hears silence and sends nothing, while a
streaming STT client, which sends every frame it gets, streams the muted time and is billed for it.

Per participant: `muted_s` (the room's muted time, while they were present), `muted_stt_audio_s` (the
STT audio that fell inside it: the VAD turns the STT was given, each its span from speech_start to
speech_end, or each stream's audio, which is its connected time, ending when it closed),
`muted_finals` (finals spoken while muted: more than half of their VAD span inside a mute). A design
whose STT clients report no audio of their own (your agent, `--stt inference`: the stand-in counts
per stream, not per moment) gets NaN for muted_stt_audio_s: not measured, not 0.
"""

from __future__ import annotations

import pandas as pd

from kit.room.scenario import Scenario

COLUMNS = ["participant", "muted_s", "muted_stt_audio_s", "muted_finals"]


def overlap(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end) inside the spans."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


def usage(sc: Scenario, events: pd.DataFrame) -> pd.DataFrame:
    """COLUMNS for every participant of one design's events."""
    counted = events["kind"].isin(["recognized", "stt_sent"]).any()
    rows = []
    for who in sc.identities:
        muted = sc.muted(who)
        mine = events[events["participant"] == who]
        turns = mine[mine["kind"] == "recognized"]
        streams = mine[mine["kind"] == "stt_sent"]
        if len(streams):  # a stream sends every frame from its start to its close
            sent = sum(overlap(muted, e.t - e.audio_s, e.t) for e in streams.itertuples(index=False))
        else:
            sent = sum(overlap(muted, e.speech_start, e.speech_end) for e in turns.itertuples(index=False) if pd.notna(e.speech_start))
        finals = mine[(mine["kind"] == "final") & mine["speech_start"].notna()]
        spoken = sum(overlap(muted, e.speech_start, e.speech_end) > (e.speech_end - e.speech_start) / 2 for e in finals.itertuples(index=False))
        rows.append({"participant": who, "muted_s": overlap(muted, 0.0, float("inf")), "muted_stt_audio_s": sent if counted else float("nan"),
                     "muted_finals": int(spoken)})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)
