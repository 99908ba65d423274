"""Resampling with one family of windowed-sinc filters (numpy only).

The room replays at 48 kHz (what rtc.AudioStream delivers) and Whisper wants 16 kHz: the two
rates differ by exactly 3, so one linear-phase low-pass filter serves both directions. Its
taps vanish at every multiple of 3, so upsampling keeps the original samples exactly and a
16 -> 48 -> 16 kHz round trip returns the source up to int16 rounding.

Any other pair of rates (44.1 kHz or 22.05 kHz recordings -> 16 kHz) goes through the same
filter as a polyphase resampler: up by L, low-pass, down by M (L/M the reduced ratio), computed
only at the output samples, so 44.1 -> 16 kHz never builds the 160x upsampled signal. The
cut-off is the lower Nyquist frequency; the Kaiser window (beta 8) keeps aliasing below about -80 dB.
"""

from __future__ import annotations

from math import gcd

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
    return rational_resample(x, from_rate, to_rate)


def rational_resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 samples at any rate -> float32 at any other (same duration), by polyphase filtering."""
    g = gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    widest = max(up, down)  # the filter is designed on the up-sampled grid with the lower cut-off
    taps = _lowpass(widest) * (up / widest)  # gain `up` restores the level lost to zero-stuffing
    x = np.asarray(x, dtype=np.float64)
    n_out = (len(x) * up) // down
    out = np.empty(n_out, dtype=np.float32)
    for first in range(0, n_out, 1 << 18):  # in blocks, so an hour of audio needs no GBs of indices
        outputs = np.arange(first, min(n_out, first + (1 << 18)), dtype=np.int64)
        out[outputs[0] : outputs[-1] + 1] = _polyphase(x, outputs * down, up, taps)
    return out


def _polyphase(x: np.ndarray, grid: np.ndarray, up: int, taps: np.ndarray) -> np.ndarray:
    """The filtered up-sampled signal at positions `grid` of the up-sampled grid, from the inputs alone."""
    half = len(taps) // 2
    nearest = -((half - grid) // up)  # ceil((grid - half) / up): first input within the filter's reach
    acc = np.zeros(len(grid), dtype=np.float64)
    for k in range(2 * half // up + 2):  # one pass per tap of a phase, vectorised over all outputs
        j = nearest + k
        tap = grid - j * up + half
        valid = (tap >= 0) & (j >= 0) & (j < len(x))  # tap < len(taps) holds from `nearest` on
        acc[valid] += x[j[valid]] * taps[tap[valid]]
    return acc.astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def to_float32(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 32768.0).astype(np.float32)
