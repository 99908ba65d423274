"""The VAD gate (`--vad-gate`): which of one participant's frames its VAD needs, so that silero does
not run on the silence of someone who is not speaking.

It is on by default (`--vad-gate auto`; `--vad-gate off`: every frame) and stands in front of the
VAD only: a streaming STT, which finds turns itself and is billed for what it hears, gets every frame.
A frame is loud when its level reaches the gate's threshold: a fixed floor (`--vad-gate DBFS`), or
(`--vad-gate auto`) `margin_db` (8 dB) above the track's own noise floor, the quietest level seen lately
(it follows a quieter frame at once and rises at most RISE_DB_PER_S, so speech cannot pull it up
between two pauses), and never below QUIETEST_DBFS. A loud frame opens the gate; it stays open for
`hold_s` of quiet frames (the silence that ends a turn, so the VAD still closes it). A closed gate
keeps the last `preroll_s` of frames and lets them through first when it opens: the quiet start of
a word, and the VAD's own prefix padding, are not lost.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncIterator
from typing import TypeVar

import numpy as np
import pandas as pd
from livekit import rtc

from kit.config import VADSettings
from kit.room.audio import to_int16
from kit.room.scenario import Scenario

FRAME_S = 0.020  # the room's frames: 20 ms (kit/room/console.py)

RISE_DB_PER_S = 3.0  # how fast the adaptive floor may follow a louder background
SMOOTH_S = 0.1  # the adaptive gate's level: over the last 100 ms
QUIETEST_DBFS = -70.0  # below this a frame is silence whatever the floor (digital silence, dither)

Frame = TypeVar("Frame")


class Gate:
    """The gate of one track, frame by frame (`admit`): the frames to hand the VAD, in order."""

    def __init__(self, vad: VADSettings) -> None:
        self.fixed_dbfs, self.margin_db = vad.gate_dbfs, vad.gate_margin_db
        self.hold_s, self.preroll_s = gate_hold_s(vad), vad.prefix_padding_duration
        self.floor_dbfs: float | None = None  # the adaptive floor, once a frame was seen
        self.quiet_s = float("inf")  # quiet time since the last loud frame
        self.held: deque[tuple[object, float]] = deque()  # (frame, duration): the closed gate's preroll
        self.held_s = 0.0
        self.recent: deque[tuple[float, float]] = deque()  # (mean square, duration) of the last frames

    @property
    def enabled(self) -> bool:
        return self.fixed_dbfs is not None or self.margin_db is not None

    def admit(self, frame: Frame, pcm: np.ndarray, duration: float) -> list[Frame]:
        """The frames to give the VAD now, given this one (int16 samples, its duration in s)."""
        if not self.enabled:
            return [frame]
        self.quiet_s = 0.0 if self.loud(pcm, duration) else self.quiet_s + duration
        if self.quiet_s <= self.hold_s + 1e-9:
            out = [f for f, _ in self.held] + [frame]
            self.held.clear()
            self.held_s = 0.0
            return out
        self.held.append((frame, duration))
        self.held_s += duration
        while self.held and self.held_s - self.held[0][1] >= self.preroll_s - 1e-9:
            self.held_s -= self.held.popleft()[1]
        return []

    def loud(self, pcm: np.ndarray, duration: float) -> bool:
        if self.margin_db is None:
            return level_dbfs(pcm) >= self.fixed_dbfs
        # the level over the last SMOOTH_S: a noise's own flicker from frame to frame is not speech
        self.recent.append((float(np.mean(pcm.astype(np.float32) ** 2)), duration))
        while sum(d for _, d in self.recent) - self.recent[0][1] >= SMOOTH_S - 1e-9:
            self.recent.popleft()
        level = dbfs(sum(e * d for e, d in self.recent) / sum(d for _, d in self.recent))
        self.floor_dbfs = level if self.floor_dbfs is None else min(level, self.floor_dbfs + RISE_DB_PER_S * duration)
        return level >= max(self.floor_dbfs + self.margin_db, QUIETEST_DBFS)


def level_dbfs(pcm: np.ndarray) -> float:
    return dbfs(float(np.mean(pcm.astype(np.float32) ** 2)))


def dbfs(mean_square: float) -> float:
    """The level of int16 samples of this mean square, in dB below full scale."""
    return float(10 * np.log10(mean_square / 32768.0**2 + 1e-12))


def gate_hold_s(vad: VADSettings) -> float:
    """How long the gate keeps passing quiet frames after a loud one: the silence that ends a turn
    and a margin for silero's window."""
    return vad.min_silence_duration + 0.45


async def gated(frames: AsyncIterator[rtc.AudioFrame], vad: VADSettings, streaming: bool = False) -> AsyncIterator[rtc.AudioFrame]:
    """The frames of one track its VAD needs (all of them with no gate). `streaming`: the track feeds a
    streaming STT, which finds turns itself and is billed for what it hears: every frame, never gated."""
    gate = Gate(vad if not streaming else dataclasses.replace(vad, gate_dbfs=None, gate_margin_db=None))
    async for frame in frames:
        if not gate.enabled:  # the default: no level to read
            yield frame
            continue
        for out in gate.admit(frame, np.frombuffer(frame.data, dtype=np.int16), frame.duration):
            yield out


def track_frames_kept(sc: Scenario, identity: str, vad: VADSettings) -> tuple[range, set[int]]:
    """One participant's track through the gate, offline: the indices k of the 20 ms frames it sends
    (room time [k, k+1) * 20 ms, from its join to its leave) and of those the gate hands the VAD."""
    p, per_frame = sc.participant(identity), int(sc.sample_rate * FRAME_S)
    audio = to_int16(sc.read_audio(identity))
    last = len(audio) // per_frame if p.leave_s is None else min(len(audio) // per_frame, int(p.leave_s / FRAME_S))
    sent = range(int(p.join_s / FRAME_S + 1e-9), last)
    gate = Gate(vad)
    kept = {k for frame in sent for k in gate.admit(frame, audio[frame * per_frame : (frame + 1) * per_frame], FRAME_S)}
    return sent, kept


def gate_shares(sc: Scenario, vad: VADSettings) -> pd.DataFrame:
    """Per participant: frames sent, the share the gate hands the VAD, and whether it ever speaks.
    `python -c "from kit.room import scenario, gate; from kit.config import VADSettings;
    print(gate.gate_shares(scenario.load('noisy'), VADSettings(gate_margin_db=8)))"`"""
    speakers = {u.participant for u in sc.utterances}
    rows = []
    for p in sc.participants:
        sent, kept = track_frames_kept(sc, p.identity, vad)
        rows.append({"participant": p.identity, "speaks": p.identity in speakers, "frames": len(sent),
                     "kept_share": len(kept) / len(sent) if len(sent) else float("nan")})  # fmt: skip
    return pd.DataFrame(rows, columns=["participant", "speaks", "frames", "kept_share"])
