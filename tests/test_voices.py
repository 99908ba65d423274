"""voices-4, the room of real human speech (data/scripts/voices.py): it rebuilds from its packages,
it loads, every design transcribes every utterance with the default options, and no inference option
costs WER on it.

Synthetic speech flatters Whisper: an option that shortens its work can look free on the espeak
rooms and lose words on people. So every option of RunConfig that changes how Whisper infers is
checked here against the default, on this room (test_every_inference_option_is_guarded makes a
new field of RunConfig take a side).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import ctranslate2
import numpy as np
import pytest
import soundfile as sf

from kit import stt
from kit.architectures import NAMES
from kit.cli import main
from kit.config import DATA_DIR, SCENARIOS_DIR, RunConfig
from kit.results import metrics
from kit.room import scenario

ROOM = "voices-4"
DEFAULT = RunConfig(scenario=ROOM)
WER_MARGIN = 0.05  # an inference option may cost at most this much absolute WER against the default
DEFAULT_MAX_WER = 0.15  # the default options on this room: 0.05 measured, every design (docs/scenarios.md)

# RunConfig's fields, each on one side. Inference options change how Whisper turns a turn's audio
# into text (threads, precision; tomorrow workers, batching, window length, decoding limits): each
# non-default value is guarded below. The others choose what is measured, not how Whisper infers.
INFERENCE_OPTIONS = {
    "compute_type": sorted(ctranslate2.get_supported_compute_types("cpu") - {DEFAULT.compute_type}),
    "cpu_threads": [1],  # default None: the cores the process may use (2 here)
    "num_workers": [1],
    "max_batch": [4],  # several waiting turns in one greedy CTranslate2 batch (no temperature fallback)
    "window_s": [10.0],  # turns padded to 10 s, not Whisper's 30 s
}
NOT_INFERENCE = {
    "scenario", "archs", "stt", "results_dir", "pricing", "fault",
    "stt_price",  # which price row the bill uses, not how a turn is inferred
    "cpus",  # where the processes run (pinning), not how a turn is inferred
    "net",  # what the live network does to the audio, not how a turn is inferred (its own table: docs/live.md)
    "workers", "cpus_per_worker",  # how many agent workers share the jobs (a fleet), not how a turn is inferred
    "model",  # other weights are another measurement (and a download), not a shortcut of these
    "vad",  # decides the turns, not how they are transcribed (the VAD's turns: docs/scenarios.md)
}  # fmt: skip


def _voices():
    spec = importlib.util.spec_from_file_location("voices_script", DATA_DIR / "scripts" / "voices.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    voices = _voices()
    out = tmp_path_factory.mktemp("voices") / ROOM
    try:
        voices.build(out, quiet=True)
    except voices.FetchError as e:
        if os.environ.get("CI"):  # CI reaches Debian and PyPI: a package that cannot be had is a failure there
            pytest.fail(f"the room's packages cannot be had: {e}")
        pytest.skip(f"the room's packages cannot be had here: {e}")
    return out


@pytest.mark.replay
def test_the_committed_room_is_what_the_script_builds(rebuilt):
    committed = SCENARIOS_DIR / ROOM
    assert (rebuilt / "scenario.json").read_bytes() == (committed / "scenario.json").read_bytes()
    assert (rebuilt / "SOURCES.md").read_bytes() == (committed / "SOURCES.md").read_bytes()
    assert sorted(p.name for p in rebuilt.iterdir()) == sorted(p.name for p in committed.iterdir())
    for flac in committed.glob("*.flac"):
        new, rate = sf.read(rebuilt / flac.name, dtype="int16")
        old, _ = sf.read(flac, dtype="int16")
        assert rate == 16_000 and np.array_equal(new, old), flac.name


def test_the_room_loads_with_turns_an_overlap_and_a_late_joiner():
    sc = scenario.load(ROOM)
    assert sc.reference and sc.sample_rate == 16_000 and 30 <= sc.duration_s <= 60
    assert len(sc.participants) >= 4 and len(sc.utterances) == 13
    assert {p.identity: p.join_s for p in sc.participants} == {"reader": 0.0, "dealer": 0.0, "operator": 0.0, "guest": 29.0}
    assert all(u.text.strip() for u in sc.utterances)
    utts = sorted(sc.utterances, key=lambda u: u.start_s)
    overlaps = [(a.participant, b.participant) for a in utts for b in utts if a.start_s < b.start_s < a.end_s]
    assert overlaps == [("reader", "dealer")]
    for p in sc.participants:
        with sf.SoundFile(p.audio) as f:
            assert (f.samplerate, f.channels, f.format, f.subtype) == (16_000, 1, "FLAC", "PCM_16")


def test_sources_name_every_utterance_and_its_licence():
    sc = scenario.load(ROOM)
    rows = [line for line in (SCENARIOS_DIR / ROOM / "SOURCES.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(sc.utterances)
    for row, u in zip(rows, sorted(sc.utterances, key=lambda u: u.start_s)):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == u.participant and cells[-1] == u.text
        assert cells[7] and cells[8], "a licence and the transcription file it comes from"


def test_every_inference_option_is_guarded():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert fields == INFERENCE_OPTIONS.keys() | NOT_INFERENCE, "a new RunConfig field: guard it here or say why not"
    assert all(INFERENCE_OPTIONS.values()), "each inference option has a non-default value to check"


# --- every design, default options, through the real AgentServer (process jobs, StreamAdapter, silero, Whisper) ---


@pytest.fixture(scope="module")
def voices_compare(tmp_path_factory):
    """`python -m kit compare --scenario voices-4`: the three designs, one real-time replay each (about 50 s)."""
    results = tmp_path_factory.mktemp("voices-compare")
    assert main(["compare", "--scenario", ROOM, "--results", str(results), "--no-report"]) == 0
    (run_dir,) = results.iterdir()
    return metrics.compute(run_dir).utterances


@pytest.mark.replay
def test_every_design_transcribes_every_utterance_of_real_speech(voices_compare):
    ref = voices_compare[voices_compare["kind"] == "reference"]
    assert sorted(set(ref["arch"])) == sorted(NAMES)
    for arch, u in ref.groupby("arch"):
        assert len(u) == 13 and not u["missed"].any(), (arch, u[["participant", "ref_text", "hyp_text"]])
        wer = metrics.wer(list(u["ref_text"]), list(u["hyp_text"]))
        assert wer <= DEFAULT_MAX_WER, (arch, u[["ref_text", "hyp_text"]].to_string())
        assert u["latency_s"].between(0.3, 8.0).all()  # a sanity bound, not a benchmark


# --- every non-default inference option against the default, on the room's turns ------------------------
# The same turns for every option, without a replay (one replay per option would cost a minute each):
# each utterance as the VAD hands it over, prefix padding before and the closing silence after.


def _turns(sc) -> list[np.ndarray]:
    pad_before, pad_after = DEFAULT.vad.prefix_padding_duration, DEFAULT.vad.min_silence_duration
    tracks = {p.identity: sc.read_audio(p.identity) for p in sc.participants}
    rate = sc.sample_rate
    return [
        tracks[u.participant][max(0, round((u.start_s - pad_before) * rate)) : round((u.end_s + pad_after) * rate)]
        for u in sc.utterances
    ]


def _turn_wer(config: RunConfig, turns: list[np.ndarray], refs: list[str]) -> tuple[float, list[str]]:
    whisper = stt.load_whisper(config)
    with ThreadPoolExecutor(len(turns)) as pool:  # all at once: the turns queue, so batches form
        hyps = [t.text for t in pool.map(whisper.transcribe, turns)]
    return metrics.wer(refs, hyps), hyps


@pytest.fixture(scope="module")
def room_turns():
    sc = scenario.load(ROOM)
    turns, refs = _turns(sc), [u.text for u in sc.utterances]
    return turns, refs, _turn_wer(DEFAULT, turns, refs)[0]


@pytest.mark.parametrize(
    "option,value", [(name, v) for name, values in INFERENCE_OPTIONS.items() for v in values], ids=lambda x: str(x)
)
@pytest.mark.slow  # Whisper flat out on the room's turns: no replay
def test_inference_option_keeps_the_wer_on_real_speech(room_turns, option, value):
    turns, refs, default_wer = room_turns
    assert default_wer <= DEFAULT_MAX_WER
    wer, hyps = _turn_wer(dataclasses.replace(DEFAULT, **{option: value}), turns, refs)
    assert wer <= default_wer + WER_MARGIN, (option, value, wer, default_wer, list(zip(refs, hyps)))
