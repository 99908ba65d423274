"""The one typed config: the --stt spec parsed once, validation at construction, and its two outside
forms (JSON for run.json and the jobs, flags for the agent worker and the STT service) round-trip."""

import argparse
import dataclasses
import os
import threading

import pytest

from kit import config as config_mod
from kit.config import KitError, RunConfig, SttSpec, VADSettings
from kit.stt import make_stt
from kit.stt import service as stt_service


def test_the_stt_spec():
    assert SttSpec.parse("service") == SttSpec("service", url="") and SttSpec.parse("whisper").url is None
    assert SttSpec.parse("service:http://127.0.0.1:8000/v1").url == "http://127.0.0.1:8000/v1"
    assert SttSpec.parse("delay:0.5").delay == 0.5 and SttSpec.parse("delay:0.5").calibration
    assert SttSpec.parse("stream-delay:0.2").calibration and SttSpec.parse("stream-delay:0.2").needs_service_start
    assert [SttSpec.parse(s).placement for s in ("whisper", "service", "stream:http://h:1/v1", "delay:1")] == [
        "in-process", "service", "service", "none"]  # fmt: skip
    for text in ("whisper", "delay:0.3", "service", "service:http://h:1/v1", "stream", "stream:http://h:1/v1", "stream-delay:0.25"):
        assert str(SttSpec.parse(text)) == text and SttSpec.parse(str(SttSpec.parse(text))) == SttSpec.parse(text)
    assert SttSpec.parse("stream-delay:0.2").served_at("http://h:1/v1") == SttSpec("stream", url="http://h:1/v1")
    assert SttSpec.parse("service").served_at("http://h:1/v1") == SttSpec("service", url="http://h:1/v1")
    for bad in ("service:", "service:ftp://x", "service:127.0.0.1:8000", "services", "delay:nan", "delay:-1", "delay:", ""):
        with pytest.raises(KitError):
            SttSpec.parse(bad)
    with pytest.raises(KitError, match="service:URL"):
        make_stt(RunConfig(stt="service"), participant="a", log=None)


def test_the_inference_spec_names_a_model_and_is_served_by_the_run():
    spec = SttSpec.parse("inference")
    assert spec == SttSpec("inference", url="", model="deepgram/nova-3") and spec.needs_service_start and spec.streaming
    assert spec.placement == "service" and not spec.calibration and spec.run_loads_model
    served = SttSpec.parse("inference:deepgram/nova-3:en").served_at("http://h:1/v1")
    assert served == SttSpec("inference", url="http://h:1/v1", model="deepgram/nova-3:en") and not served.needs_service_start
    for text in ("inference:deepgram/nova-3", "inference:openai/gpt-4o-transcribe@http://h:1/v1", "inference:x:en@http://h:1/v1"):
        assert str(SttSpec.parse(text)) == text
    for bad in ("inference:", "inference:a b", "inference:x@ftp://h", "inferences"):
        with pytest.raises(KitError):
            SttSpec.parse(bad)


def test_a_string_stt_is_parsed_once_as_the_config_is_made():
    assert RunConfig(stt="delay:0.3").stt == SttSpec("delay", delay=0.3)
    with pytest.raises(KitError, match="unknown STT"):
        RunConfig(stt="whispr")


@pytest.mark.parametrize("kwargs, message", [
    ({"window_s": 0}, "--window"), ({"window_s": 31}, "--window"), ({"max_batch": 0}, "--max-batch"),
    ({"cpus": 0}, "--cpus"), ({"cpu_threads": -1}, "--cpu-threads"), ({"num_workers": 1.5}, "--num-workers"),
    ({"vad": {"min_silence_duration": 0}}, "--min-silence"), ({"vad": {"activation_threshold": 1.0}}, "--activation-threshold"),
    ({"vad": {"prefix_padding_duration": -0.1}}, "--prefix-padding"),
])  # fmt: skip
def test_bad_settings_are_refused_where_the_config_is_made(kwargs, message):
    with pytest.raises(KitError, match=message):
        RunConfig(**{k: VADSettings(**v) if k == "vad" else v for k, v in kwargs.items()})


FULL = RunConfig(scenario="pair-2", archs=("participant_entrypoint",), stt="stream-delay:0.25", model="/m/tiny",
                 compute_type="float32", cpu_threads=1, num_workers=2, max_batch=4, window_s=10.0, cpus=1,
                 vad=VADSettings(gate_dbfs=-55.0, gate_margin_db=None, min_silence_duration=0.3, activation_threshold=0.6,
                                 prefix_padding_duration=0.25), stt_price="stt_x_minute")  # fmt: skip


def test_json_round_trip():
    assert RunConfig.from_dict(FULL.to_dict()) == FULL
    d = FULL.to_dict()
    assert d["stt"] == "stream-delay:0.25" and d["archs"] == ["participant_entrypoint"], "run.json keeps its plain form"
    assert RunConfig.from_dict({**d, "from_a_newer_kit": 1}) == FULL


def test_flags_round_trip_every_inference_setting():
    """What a run hands its agent worker (`kit agent`) and STT service comes back whole."""
    parser = argparse.ArgumentParser()
    config_mod.add_arguments(parser)
    back = RunConfig.from_args(parser.parse_args(FULL.to_args()), scenario=FULL.scenario, archs=FULL.archs)
    assert back == FULL
    assert RunConfig.from_args(parser.parse_args([])) == RunConfig()
    service = argparse.ArgumentParser()  # the STT service: the model, and the VAD of its streaming endpoint
    stt_service.add_arguments(service)
    assert stt_service.service_config(service.parse_args(FULL.to_model_args() + FULL.to_vad_args())).vad == dataclasses.replace(
        VADSettings(), min_silence_duration=0.3, activation_threshold=0.6, prefix_padding_duration=0.25)  # fmt: skip


def test_the_adaptive_vad_gate_round_trips_and_a_bad_level_is_refused(capsys):
    parser = argparse.ArgumentParser()
    config_mod.add_arguments(parser)
    auto = dataclasses.replace(FULL, vad=VADSettings(gate_margin_db=config_mod.ADAPTIVE_GATE_MARGIN_DB))
    assert "auto" in auto.to_args() and RunConfig.from_dict(auto.to_dict()) == auto
    assert RunConfig.from_args(parser.parse_args(auto.to_args()), scenario=auto.scenario, archs=auto.archs) == auto
    assert RunConfig.from_args(parser.parse_args(["--vad-gate"])).vad.gate_dbfs == -60.0
    assert RunConfig.from_args(parser.parse_args([])).vad == VADSettings() == auto.vad, "the adaptive gate is the default"
    assert (VADSettings().gate, VADSettings(gate_margin_db=None).gate, FULL.vad.gate) == ("auto", "off", "-55")
    off = dataclasses.replace(FULL, vad=VADSettings(gate_margin_db=None))
    assert "off" in off.to_args() and RunConfig.from_args(parser.parse_args(off.to_args()), scenario=off.scenario, archs=off.archs) == off
    # a run.json from before the gate was the default recorded no gate: it reads back as none, not as the default
    old = {k: v for k, v in off.to_dict().items()}
    old["vad"] = {k: v for k, v in old["vad"].items() if not k.startswith("gate")}
    assert RunConfig.from_dict(old) == off and RunConfig.from_dict(off.to_dict()) == off
    for bad in ("loud", "20", "nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--vad-gate", bad])
    assert "'auto', 'off' or a level in dBFS" in capsys.readouterr().err


def test_the_stt_service_takes_the_model_flags_of_the_same_config():
    """`python -m kit stt-service`, started by a run with `to_model_args`, loads the run's model settings."""
    from kit.stt import service as stt_service

    parser = argparse.ArgumentParser()
    stt_service.add_arguments(parser)
    served = stt_service.service_config(parser.parse_args(FULL.to_model_args()))
    fields = ("model", "compute_type", "cpu_threads", "num_workers", "max_batch", "window_s")
    assert [getattr(served, f) for f in fields] == [getattr(FULL, f) for f in fields]
    with pytest.raises(KitError, match="--window"):
        stt_service.service_config(parser.parse_args(["--window", "0"]))


def test_threads_pinned_moves_every_thread_and_puts_them_back():
    """A thread that already runs (as livekit's runtime does when a room plays) is pinned too, and
    afterwards every thread may use every core again."""
    allowed = sorted(os.sched_getaffinity(0))
    assert len(allowed) >= 2, "this test needs two cores (the kit's machine has two)"
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        with config_mod.threads_pinned(allowed[1:]):
            assert config_mod.thread_cores(os.getpid()) == allowed[1:]
            assert sorted(os.sched_getaffinity(worker.native_id)) == allowed[1:]
        assert config_mod.thread_cores(os.getpid()) == allowed
        assert sorted(os.sched_getaffinity(worker.native_id)) == allowed
    finally:
        stop.set()
        worker.join()
