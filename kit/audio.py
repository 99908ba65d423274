"""Integer-ratio resampling with one windowed-sinc filter (numpy only).

The room replays at 48 kHz (what rtc.AudioStream delivers) and Whisper wants 16 kHz: the two
rates differ by exactly 3, so one linear-phase low-pass filter serves both directions. Its
taps vanish at every multiple of 3, so upsampling keeps the original samples exactly and a
16 -> 48 -> 16 kHz round trip returns the source up to int16 rounding.
"""

from __future__ import annotations

import numpy as np

_HALF_TAPS_PER_PHASE = 16


def _lowpass(factor: int) -> np.ndarray:
    n = np.arange(-_HALF_TAPS_PER_PHASE * factor, _HALF_TAPS_PER_PHASE * factor + 1)
    return np.sinc(n / factor) * np.kaiser(len(n), 8.0)


def upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """float32 samples at rate r -> float32 samples at rate r * factor (same duration)."""
    if factor == 1:
        return x.astype(np.float32, copy=True)
    stuffed = np.zeros(len(x) * factor, dtype=np.float64)
    stuffed[::factor] = x
    return np.convolve(stuffed, _lowpass(factor), mode="same").astype(np.float32)


def downsample(x: np.ndarray, factor: int) -> np.ndarray:
    """float32 samples at rate r * factor -> float32 samples at rate r, anti-aliased."""
    if factor == 1:
        return x.astype(np.float32, copy=True)
    filtered = np.convolve(x.astype(np.float64), _lowpass(factor) / factor, mode="same")
    return filtered[::factor].astype(np.float32)


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return x.astype(np.float32, copy=True)
    if to_rate % from_rate == 0:
        return upsample(x, to_rate // from_rate)
    if from_rate % to_rate == 0:
        return downsample(x, from_rate // to_rate)
    raise ValueError(f"cannot resample {from_rate} Hz to {to_rate} Hz: rates must be integer multiples")


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def to_float32(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 32768.0).astype(np.float32)
