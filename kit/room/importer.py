"""Bring your own room: one recording per participant -> a scenario (docs/scenarios.md).

    python -m kit scenario import recordings/ -o data/scenarios/my-room
    python -m kit scenario import alice.wav bob.m4a@1.5 -o data/scenarios/my-room

Each input is one participant's whole track: wav, flac, ogg (libsndfile) or anything FFmpeg
decodes through PyAV (mp3, m4a, webm, opus, ...), at any sample rate and channel count. Each is
down-mixed (mean of the channels) and resampled once to 16 kHz mono (kit.room.audio), then all are
aligned on a common start: `FILE@SECONDS` places the recording SECONDS after the room's start
(the participant joins then); a negative offset drops the recording's first seconds instead.
Shorter tracks are padded with silence to the longest, and every track gets TAIL_S (1.5 s) of
silence after that, as `kit synth` does: a turn still open when the room ends would never be
finalised by the VAD under test. The identity is the file's stem, sanitised to letters,
digits, `_` and `-`.

Reference text is optional, one transcript per participant with the recording's stem, beside
it (or in the list of inputs): `alice.vtt` / `alice.srt` (WebVTT or SubRip: the cue times,
relative to the recording, are the utterance boundaries) or `alice.txt` (one utterance per
line: the boundaries come from the speech detector, in order, and the counts must agree).
Either every participant has a transcript (an empty one for a silent participant) or none
does. Without transcripts the boundaries come from the speech detector (kit.room.boundaries), the
text is empty and the scenario says `"reference": false`: latency and cost are measured, WER
is not.

Refused, in one line: a recording with NaN or infinite samples (a float WAV can hold them: the
file, the first such sample and its time are named), an offset of more than 4 hours (a typo),
and a room where nobody speaks (no utterance detected or transcribed: nothing to measure).

Everything is written to a temporary directory beside the target and renamed into place at
the end, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from kit.config import KitError
from kit.room import boundaries
from kit.room import scenario as scenario_mod
from kit.room.audio import resample, to_int16
from kit.room.bleed import Bleed, add_bleed
from kit.room.scenario import Scenario, Utterance

RATE = 16_000
TAIL_S = 1.5  # silence after the longest recording, so the VAD under test can close the last turn
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm", ".mka")
TIMED_SUFFIXES = (".vtt", ".srt")
TRANSCRIPT_SUFFIXES = TIMED_SUFFIXES + (".txt",)
MAX_OFFSET_S = 4 * 3600  # FILE@SECONDS beyond this is a typo, not a room (the silence would fill the memory)


class RecordingError(KitError):
    """An input that cannot become a scenario, with the reason in one line (line breaks are escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


@dataclass(frozen=True)
class Recording:
    """One participant's input: its audio file, where it starts in the room, its transcript."""

    identity: str
    path: Path
    offset_s: float = 0.0
    transcript: Path | None = None

    @property
    def join_s(self) -> float:
        """The participant joins when its recording starts (a cut recording: at the room's start)."""
        return max(0.0, self.offset_s)


@dataclass(frozen=True)
class Cue:
    """One utterance of a WebVTT/SRT transcript, its times relative to the recording."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ImportResult:
    scenario: Scenario
    # one row per participant: identity, file, offset_s, seconds (of the recording),
    # utterances, speech_s, boundaries ("detector" | "transcript times" | "detector + text")
    participants: pd.DataFrame


def import_room(inputs: list[str], out_dir: Path, name: str | None = None, min_silence_s: float = 0.5,
                replace: bool = False, bleed: Bleed | None = None) -> ImportResult:  # fmt: skip
    """Build and write the scenario; return it loaded (validated) from its final place. `bleed`: mix the
    others into each track after the utterances were found on the clean ones (kit/room/bleed.py)."""
    out_dir = Path(out_dir)
    if not (math.isfinite(min_silence_s) and min_silence_s >= 0):
        raise RecordingError(f"--min-silence must be a number of seconds of at least 0, not {min_silence_s}")
    if out_dir.exists() and not replace:
        raise RecordingError(f"{out_dir} already exists (--force replaces it)")
    recordings = collect(inputs)
    tracks = {r.identity: place(read_mono_16k(r.path), r.offset_s) for r in recordings}
    utterances, rows = [], []
    for r in recordings:
        utts, how = utterances_of(r, tracks[r.identity], min_silence_s)
        utterances += utts
        rows.append((r.identity, r.path.name, r.offset_s, _seconds(r.path), len(utts),
                     round(sum(u.end_s - u.start_s for u in utts), 2), how))  # fmt: skip
    if not utterances:
        found = "the transcripts hold none" if recordings[0].transcript is not None else "the speech detector found none"
        raise RecordingError(f"no utterance in {', '.join(r.path.name for r in recordings)} ({found}): "
                             "a room where nobody speaks has nothing to measure")  # fmt: skip
    length = max(len(t) for t in tracks.values()) + round(TAIL_S * RATE)
    tracks = {i: np.pad(t, (0, length - len(t))) for i, t in tracks.items()}  # every track to the longest
    if bleed is not None:
        tracks = add_bleed(tracks, RATE, bleed)
    reference = recordings[0].transcript is not None  # collect() made it all or none
    doc = _scenario_doc(name or out_dir.name, recordings, utterances, reference)
    sc = _write_atomically(out_dir, doc, tracks, replace)
    cols = ["identity", "file", "offset_s", "seconds", "utterances", "speech_s", "boundaries"]
    return ImportResult(sc, pd.DataFrame(rows, columns=cols))


# --- inputs -> recordings -------------------------------------------------------------------------


def collect(inputs: list[str]) -> list[Recording]:
    """Directories and files (FILE@OFFSET) -> one Recording per participant, transcripts matched."""
    audio: list[tuple[Path, float]] = []
    transcripts: list[Path] = []
    for item in inputs:
        path, offset = _split_offset(item)
        if path.is_dir():
            audio += [(p, offset) for p in sorted(path.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES]
            transcripts += [p for p in sorted(path.iterdir()) if p.suffix.lower() in TRANSCRIPT_SUFFIXES]
        elif not path.is_file():
            raise RecordingError(f"not found: {path}")
        elif path.suffix.lower() in TRANSCRIPT_SUFFIXES:
            transcripts.append(path)
        else:
            audio.append((path, offset))
    if not audio:
        raise RecordingError(f"no recordings in {' '.join(inputs)} (looked for {', '.join(AUDIO_SUFFIXES)})")
    recordings = [Recording(identity_of(p), p, offset) for p, offset in audio]
    _check_unique(recordings)
    return _attach_transcripts(recordings, transcripts)


def _split_offset(item: str) -> tuple[Path, float]:
    """'alice.wav@1.5' -> (alice.wav, 1.5); an '@' not followed by a number is part of the name."""
    m = re.fullmatch(r"(.+)@([+-]?(?:\d+\.?\d*|\.\d+))", item)
    if not m:
        return Path(item), 0.0
    offset = float(m.group(2))
    if abs(offset) > MAX_OFFSET_S:
        raise RecordingError(f"{item}: an offset of {m.group(2)} s is more than {MAX_OFFSET_S // 3600} hours; "
                             "give FILE@SECONDS in seconds")  # fmt: skip
    return Path(m.group(1)), offset


def identity_of(path: Path) -> str:
    """The participant identity a file name gives: its stem, sanitised."""
    identity = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_")
    if not identity:
        raise RecordingError(f"{path.name}: the file name gives no usable participant identity; rename it")
    return identity


def _check_unique(recordings: list[Recording]) -> None:
    seen: dict[str, Path] = {}
    for r in recordings:
        if r.identity in seen:
            raise RecordingError(f"two recordings for participant {r.identity!r}: {seen[r.identity]} and {r.path}")
        seen[r.identity] = r.path


def _attach_transcripts(recordings: list[Recording], listed: list[Path]) -> list[Recording]:
    """Each recording's transcript: a listed one with its stem, else one beside it. All or none."""
    by_stem = {r.path.stem: r for r in recordings}
    found: dict[str, list[Path]] = {r.identity: [] for r in recordings}
    for t in listed:
        if t.stem not in by_stem:
            raise RecordingError(f"transcript {t.name} matches no recording (recordings: {', '.join(sorted(by_stem))})")
        found[by_stem[t.stem].identity].append(t)
    for r in recordings:
        if not found[r.identity]:
            found[r.identity] = [p for s in TRANSCRIPT_SUFFIXES if (p := r.path.with_suffix(s)).is_file()]
    for identity, paths in found.items():
        if len(set(paths)) > 1:
            raise RecordingError(f"several transcripts for {identity!r}: {', '.join(sorted({p.name for p in paths}))}")
    have = sorted(i for i, p in found.items() if p)
    lack = sorted(i for i, p in found.items() if not p)
    if have and lack:
        raise RecordingError(f"transcripts for {', '.join(have)} but not for {', '.join(lack)}: "
                           "give every participant one (an empty file for a silent one) or none")  # fmt: skip
    return [Recording(r.identity, r.path, r.offset_s, found[r.identity][0] if have else None) for r in recordings]


# --- audio ------------------------------------------------------------------------------------------


def read_mono_16k(path: Path) -> np.ndarray:
    """Any supported file -> float32 mono at 16 kHz: channels averaged, resampled once, within [-1, 1]."""
    if path.stat().st_size == 0:
        raise RecordingError(f"{path.name} holds no audio (an empty file)")
    samples, rate = decode(path)
    if len(samples) == 0:
        raise RecordingError(f"{path.name} holds no audio")
    _check_finite(path, samples, rate)
    # Mixed in float64 (float32 overflows on float recordings near their range) and clipped as the
    # int16 track will be: the speech detector sees what is written.
    return np.clip(resample(samples.mean(axis=1, dtype=np.float64), rate, RATE), -1.0, 1.0)


def _check_finite(path: Path, samples: np.ndarray, rate: int) -> None:
    """NaN or infinite samples (a float WAV can hold them) would pass the mixing and resampling
    silently and come out as clicks or silence: refuse them, saying where the first one is."""
    finite = np.isfinite(samples)
    if finite.all():
        return
    frame, channel = (int(i) for i in np.argwhere(~finite)[0])
    where = f"sample {frame} ({frame / rate:.3f} s)" + (f", channel {channel + 1}" if samples.shape[1] > 1 else "")
    raise RecordingError(
        f"{path.name}: {int((~finite).sum())} samples are not finite numbers (NaN or infinity), the first "
        f"{samples[frame, channel]} at {where}; the recording is damaged"
    )


def decode(path: Path) -> tuple[np.ndarray, int]:
    """float32 samples (frames x channels) and the rate: libsndfile first, then FFmpeg through PyAV."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return samples, rate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass  # not a format libsndfile knows (m4a, webm, ...): FFmpeg may
    try:
        return _decode_av(path)
    except (ImportError, ValueError, OSError) as e:  # av's errors are ValueErrors or OSErrors
        reason = getattr(e, "strerror", None) or str(e)  # FFmpeg's own words, without errno and path
        raise RecordingError(f"cannot decode {path.name}: {reason}") from None


def _decode_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise ValueError("no audio stream")
        chunks, converter = [], None
        for frame in container.decode(stream):
            if converter is None:  # to planar float, same layout and rate: our own resampler does the rest
                converter = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                rate = frame.sample_rate
            chunks += [f.to_ndarray() for f in converter.resample(frame)]
        if converter is None:
            raise ValueError("no audio frames")
        chunks += [f.to_ndarray() for f in converter.resample(None)]
    return np.concatenate(chunks, axis=1).T.astype(np.float32), rate


def _seconds(path: Path) -> float:
    """Length of the original recording (for the summary), without decoding it again."""
    try:
        return round(sf.info(str(path)).duration, 2)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        import av

        with av.open(str(path)) as container:
            return round(container.duration / 1e6, 2) if container.duration else float("nan")


def place(track: np.ndarray, offset_s: float) -> np.ndarray:
    """The recording on the room's timeline: silence before a positive offset, cut for a negative one."""
    shift = round(offset_s * RATE)
    if shift >= 0:
        return np.concatenate([np.zeros(shift, dtype=np.float32), track])
    if -shift >= len(track):
        raise RecordingError(f"an offset of {offset_s} s cuts the whole recording ({len(track) / RATE:.2f} s)")
    return track[-shift:]


# --- utterances ---------------------------------------------------------------------------------------


def utterances_of(r: Recording, track: np.ndarray, min_silence_s: float) -> tuple[list[Utterance], str]:
    """The participant's utterances on the room's timeline (`track`: its placed, unpadded audio),
    and where their boundaries came from."""
    if r.transcript is not None and r.transcript.suffix.lower() in TIMED_SUFFIXES:
        cues = read_timed(r.transcript)
        _check_cues(r, cues, (len(track) / RATE) - r.offset_s)
        on_room = [Utterance(r.identity, _t(c.start_s + r.offset_s), _t(c.end_s + r.offset_s), c.text) for c in cues]
        return on_room, "transcript times"
    segments = [s for s in boundaries.detect(track, min_silence_s) if s.end_s > r.join_s]
    spans = [(_t(max(s.start_s, r.join_s)), _t(s.end_s)) for s in segments]  # a frame's blur never before joining
    if r.transcript is None:
        return [Utterance(r.identity, a, b, "") for a, b in spans], "detector"
    lines = read_lines(r.transcript)
    if len(lines) != len(spans):
        found = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in spans) or "none"
        raise RecordingError(
            f"{r.transcript.name} has {len(lines)} lines but the speech detector found {len(spans)} utterances in "
            f"{r.path.name} (at {found} s); put one line per utterance, change --min-silence, or give times (WebVTT/SRT)"
        )
    return [Utterance(r.identity, a, b, text) for (a, b), text in zip(spans, lines)], "detector + text"


def _t(seconds: float) -> float:
    return round(seconds, 4)


def _check_cues(r: Recording, cues: list[Cue], recording_s: float) -> None:
    name = r.transcript.name
    for prev, cue in zip([None, *cues], cues):
        if not cue.start_s < cue.end_s:
            raise RecordingError(f"{name}: cue {cue.text[:30]!r} ends before it starts")
        if prev is not None and cue.start_s < prev.end_s:
            raise RecordingError(f"{name}: cues overlap at {cue.start_s:.2f} s (one speaker, one cue at a time)")
    if cues and cues[-1].end_s > recording_s + 1e-3:
        raise RecordingError(f"{name}: a cue ends at {cues[-1].end_s:.2f} s, after {r.path.name} ({recording_s:.2f} s)")
    if cues and cues[0].start_s + r.offset_s < 0:
        raise RecordingError(f"{name}: a cue starts at {cues[0].start_s:.2f} s, before the offset {r.offset_s} s cuts in")


def read_lines(path: Path) -> list[str]:
    """A plain transcript: one utterance per non-empty line."""
    return [line.strip() for line in _read_text(path).splitlines() if line.strip()]


_CUE_TIMES = re.compile(r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})")


def read_timed(path: Path) -> list[Cue]:
    """WebVTT or SubRip cues in time order: the text lines after each timing line, tags removed."""
    cues: list[Cue] = []
    current: tuple[float, float, list[str]] | None = None
    for line in _read_text(path).splitlines() + [""]:
        m = _CUE_TIMES.match(line)
        if m:
            current = (_timestamp(m.group(1)), _timestamp(m.group(2)), [])
        elif current is not None and line.strip():
            current[2].append(re.sub(r"<[^>]*>", "", line).strip())
        elif current is not None:  # a blank line ends the cue
            text = " ".join(t for t in current[2] if t)
            if text:
                cues.append(Cue(text, current[0], current[1]))
            current = None
    if not cues and re.sub(r"^\ufeff?WEBVTT[^\n]*", "", _read_text(path).strip()).strip():  # text, but no cue
        raise RecordingError(f"{path.name}: no cues found (expected 'HH:MM:SS.mmm --> HH:MM:SS.mmm' lines)")
    return sorted(cues, key=lambda c: c.start_s)


def _timestamp(text: str) -> float:
    parts = text.replace(",", ".").split(":")
    return sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise RecordingError(f"{path.name}: not UTF-8 text") from None


# --- writing ------------------------------------------------------------------------------------------


def _scenario_doc(name: str, recordings: list[Recording], utterances: list[Utterance], reference: bool) -> dict:
    return {
        "name": name,
        "sample_rate": RATE,
        "reference": reference,
        "participants": [
            {"identity": r.identity, "audio": f"{r.identity}.flac", "join_s": r.join_s, "leave_s": None}
            for r in recordings
        ],
        "utterances": [
            {"participant": u.participant, "start_s": u.start_s, "end_s": u.end_s, "text": u.text}
            for u in sorted(utterances, key=lambda u: (u.start_s, u.participant))
        ],
    }


def _write_atomically(out_dir: Path, doc: dict, tracks: dict[str, np.ndarray], replace: bool) -> Scenario:
    """Write into a temporary sibling, validate it as any scenario, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for identity, track in tracks.items():
            sf.write(tmp / f"{identity}.flac", to_int16(track), RATE, subtype="PCM_16", format="FLAC")
        (tmp / "scenario.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        scenario_mod.load(tmp)  # the same validation as every scenario, before anything is in place
        if out_dir.exists() and replace:
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return scenario_mod.load(out_dir)
