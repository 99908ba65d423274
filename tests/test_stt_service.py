"""The shared STT service (kit/stt/service.py): the OpenAI transcription API on loopback, its errors,
its log, batching across clients, livekit-plugins-openai's STT against it, and a design end to end
with `--stt service` on pair-2."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import soundfile as sf

from kit.config import KitError, RunConfig
from kit.results import metrics
from kit.room import scenario
from kit.room.audio import resample, to_int16
from kit.run.events import EventLog, read_events
from kit.run.record import RunRecord
from kit.stt import SERVICE_HEADERS, ServiceSTT, make_stt
from kit.stt.process import ServiceProcess
from kit.stt.request_log import LOG_COLUMNS, read_log
from kit.stt.service import MAX_UPLOAD_BYTES, check_loopback, make_app

PAIR = scenario.load("pair-2")


def clip(i: int, rate: int = 16_000) -> np.ndarray:
    """Utterance i of pair-2 as the VAD would hand it over (0.3 s either side), float32 at `rate`."""
    u = PAIR.utterances[i]
    track = PAIR.read_audio(u.participant)
    r = PAIR.sample_rate
    return resample(track[max(0, round((u.start_s - 0.3) * r)) : round((u.end_s + 0.3) * r)], r, rate)


def wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, to_int16(samples), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def words(text: str) -> set[str]:
    return set(metrics.normalize(text).split())


def close_enough(hyp: str, ref: str) -> bool:
    """Loosely the same words (tiny.en on espeak voices: most, not all)."""
    return len(words(hyp) & words(ref)) >= 0.6 * len(words(ref))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One service for the module: one worker, batches of up to 4 waiting turns (so requests that
    arrive together are batched)."""
    log = tmp_path_factory.mktemp("service") / "requests.jsonl"
    svc = ServiceProcess(RunConfig(num_workers=1, max_batch=4), log_path=log)
    svc.start()
    yield svc
    svc.stop()


def post(service, *, file: bytes | None = None, headers: dict | None = None, **fields) -> httpx.Response:
    files = {"file": ("turn.wav", file, "audio/wav")} if file is not None else None
    data = {"model": "whisper-1", **fields}
    if files is None:  # still multipart/form-data
        files = {"other": ("x.txt", b"x", "text/plain")}
    return httpx.post(f"{service.url}/audio/transcriptions", files=files, data={k: v for k, v in data.items() if v is not None},
                      headers=headers, timeout=60)  # fmt: skip


@pytest.mark.replay
def test_json_verbose_json_and_text(service):
    audio = wav(clip(0))
    ref = PAIR.utterances[0].text
    r = post(service, file=audio)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert close_enough(r.json()["text"], ref), r.json()
    assert float(r.headers[SERVICE_HEADERS["infer_s"]]) > 0 and r.headers["x-request-id"].startswith("req_")
    v = post(service, file=audio, response_format="verbose_json", language="en")
    body = v.json()
    assert v.status_code == 200 and body["text"] == r.json()["text"]
    assert body["language"] == "english" and body["segments"] == [] and body["task"] == "transcribe"
    assert body["duration"] == pytest.approx(len(clip(0)) / 16_000, abs=0.01)
    t = post(service, file=audio, response_format="text", prompt="A stand-up about a login page.")
    assert t.status_code == 200 and t.headers["content-type"].startswith("text/plain")
    assert t.text == r.json()["text"] + "\n"  # the prompt is accepted and not used: the same words


def test_other_rates_and_formats_are_resampled(service):
    """A 48 kHz stereo FLAC (as a room's audio might be uploaded) gives the words of the 16 kHz WAV."""
    stereo = np.stack([clip(1, 48_000)] * 2, axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, 48_000, format="FLAC")
    r = post(service, file=buf.getvalue())
    assert r.status_code == 200 and close_enough(r.json()["text"], PAIR.utterances[1].text), r.text
    assert float(r.headers[SERVICE_HEADERS["audio_s"]]) == pytest.approx(len(clip(1)) / 16_000, abs=0.01)


def assert_openai_error(r: httpx.Response, status: int, param: str | None = "any") -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text and "File \"" not in r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error"
    if param != "any":
        assert err["param"] == param, err
    return err


def test_bad_requests_get_openai_shaped_errors(service):
    audio = wav(clip(3))
    url = f"{service.url}/audio/transcriptions"
    assert_openai_error(post(service), 400, "file")  # no file
    assert_openai_error(post(service, file=b"this is not audio at all"), 415, "file")
    assert_openai_error(post(service, file=wav(np.zeros(0, np.float32))), 400, "file")  # a WAV header, no samples
    assert_openai_error(post(service, file=audio, response_format="srt"), 400, "response_format")
    assert_openai_error(post(service, file=audio, model=None), 400, "model")
    assert_openai_error(post(service, file=audio, language="fr"), 400, "language")
    assert_openai_error(post(service, file=audio, temperature="hot"), 400, "temperature")
    assert_openai_error(post(service, file=audio, stream="true"), 400, "stream")
    assert_openai_error(httpx.post(url, json={"file": "x", "model": "whisper-1"}), 415)
    assert_openai_error(httpx.post(url, content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}), 400)
    assert assert_openai_error(httpx.get(url), 405)["code"] == "method_not_allowed"
    assert httpx.get(url).headers["allow"] == "POST"
    assert_openai_error(httpx.post(f"{service.url}/audio/translations"), 404)
    assert_openai_error(httpx.get(service.url.removesuffix("/v1") + "/"), 404)


def test_oversized_uploads_are_refused(service):
    big = b"\0" * (MAX_UPLOAD_BYTES + 1)
    assert_openai_error(post(service, file=big), 413, "file")  # refused on its Content-Length

    def chunked():  # no Content-Length: refused as the file goes over the limit
        yield b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(27):
            yield b"\0" * 2**20
        yield b"\r\n--b--\r\n"

    r = httpx.post(f"{service.url}/audio/transcriptions", content=chunked(),
                   headers={"content-type": "multipart/form-data; boundary=b"}, timeout=60)  # fmt: skip
    assert_openai_error(r, 413, "file")
    assert post(service, file=wav(clip(3))).status_code == 200  # and it serves on


def test_an_unexpected_failure_is_a_500_without_traceback(tmp_path):
    """Inside the service, anything unexpected answers 500 `server_error` (the traceback goes to its
    stderr, never to the client) and is logged."""
    from aiohttp import web

    class Broken:
        async def transcribe_async(self, audio):
            raise RuntimeError("secret internals")

    from kit.stt.request_log import RequestLog

    async def go() -> httpx.Response:
        log = RequestLog(tmp_path / "log.jsonl")
        runner = web.AppRunner(make_app(Broken(), log))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with httpx.AsyncClient() as client:
                return await client.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                                         files={"file": ("a.wav", wav(clip(3)), "audio/wav")}, data={"model": "m"})  # fmt: skip
        finally:
            await runner.cleanup()
            log.close()

    r = asyncio.run(go())
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    (row,) = read_log(tmp_path / "log.jsonl").to_dict("records")
    assert row["status"] == 500


def test_binds_loopback_only(service):
    listening = [c for c in psutil.Process(service.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    assert service.url == f"http://127.0.0.1:{listening[0].laddr.port}/v1"
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(KitError, match="loopback only"):
            check_loopback(host)
    assert check_loopback("127.0.0.1") and check_loopback("::1") and check_loopback("localhost")
    cmd = [sys.executable, "-m", "kit", "stt-service", "--host", "0.0.0.0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "loopback only" in done.stderr and "Traceback" not in done.stderr


def test_a_service_that_cannot_start_says_why(tmp_path):
    with pytest.raises(KitError, match="did not start: .*Whisper model not found"):
        ServiceProcess(RunConfig(model=str(tmp_path / "no-such-model"))).start()


@pytest.mark.replay
@pytest.mark.whisper
def test_concurrent_requests_are_all_answered_and_batched(service):
    """Turns from several clients that arrive together wait for the one worker and are decoded
    together (--max-batch 4): the log shows batches of more than one."""
    turns = [wav(clip(i)) for i in range(4)]

    def one(i: int) -> httpx.Response:
        return post(service, file=turns[i], headers={"X-Kit-Participant": f"client-{i}"})

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(one, range(4)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    for i, r in enumerate(replies):
        assert close_enough(r.json()["text"], PAIR.utterances[i].text), (i, r.json())
    batches = [int(r.headers[SERVICE_HEADERS["batch"]]) for r in replies]
    assert max(batches) > 1, batches
    log = read_log(service.log_path)
    ours = log[log["participant"].astype(str).str.startswith("client-")]
    assert sorted(ours["participant"]) == [f"client-{i}" for i in range(4)]
    assert ours["batch"].max() > 1 and (ours["status"] == 200).all()
    assert ours[["queue_s", "infer_s", "cpu_s", "audio_s"]].notna().all().all()


def test_the_log_has_a_row_per_request_with_its_columns(service):
    post(service, file=wav(clip(2)), headers={"X-Kit-Participant": "logged"})
    post(service, file=b"nope", headers={"X-Kit-Participant": "logged"})
    lines = [json.loads(x) for x in Path(service.log_path).read_text().splitlines()]
    assert all(set(LOG_COLUMNS) >= set(row) for row in lines)
    log = read_log(service.log_path)
    mine = log[log["participant"] == "logged"]
    assert list(mine["status"]) == [200, 415]
    ok, bad = mine.iloc[0], mine.iloc[1]
    assert ok["infer_s"] > 0 and ok["cpu_s"] > 0 and ok["queue_s"] >= 0 and ok["batch"] >= 1 and ok["handle_s"] >= ok["infer_s"]
    assert ok["audio_s"] == pytest.approx(len(clip(2)) / 16_000, abs=0.01) and ok["sample_rate"] == 16_000
    assert "not audio" in bad["error"] and pd.isna(bad["infer_s"])


def test_the_livekit_openai_plugin_transcribes_through_it(service, tmp_path):
    """livekit-plugins-openai's STT, as a user would configure it, and the kit's ServiceSTT (the same
    plugin, plus the participant header and the `recognized` event with the service's numbers), on a
    48 kHz turn as the room delivers it."""
    from livekit import rtc
    from livekit.plugins import openai as lk_openai

    samples = to_int16(clip(0, 48_000))
    frame = rtc.AudioFrame(samples.tobytes(), 48_000, 1, len(samples))
    ref = PAIR.utterances[0].text

    async def go():
        plain = lk_openai.STT(base_url=service.url, model="whisper-1", language="en", api_key="kit-local")
        ev1 = await plain.recognize(frame)
        log = EventLog(tmp_path / "events" / "x.jsonl", t0=0.0, arch="a", job="j")
        kit_stt = make_stt(RunConfig(stt=f"service:{service.url}"), participant="alice", log=log)
        assert isinstance(kit_stt, ServiceSTT)
        ev2 = await kit_stt.recognize(frame)
        await kit_stt.aclose()
        await plain.aclose()
        log.close()
        return ev1, ev2

    ev1, ev2 = asyncio.run(go())
    assert close_enough(ev1.alternatives[0].text, ref) and ev1.alternatives[0].text == ev2.alternatives[0].text
    assert ev2.alternatives[0].language == "en"
    (rec,) = read_events(tmp_path).query("kind == 'recognized'").to_dict("records")
    assert rec["participant"] == "alice" and rec["text"] == ev2.alternatives[0].text
    assert rec["stt_cpu_s"] > 0 and rec["infer_s"] > 0 and rec["batch"] >= 1 and rec["queue_s"] >= 0
    assert rec["audio_s"] == pytest.approx(len(samples) / 48_000)
    log = read_log(service.log_path)
    assert "alice" in set(log["participant"]) and (log.loc[log["participant"] == "alice", "sample_rate"] == 48_000).all()


@pytest.mark.replay
@pytest.mark.whisper
def test_a_design_runs_end_to_end_with_the_service(tmp_path):
    """`--stt service` on pair-2: the run starts one service (a child of the run, in the sampled
    tree), every job reaches it through livekit-plugins-openai, every utterance is matched, and the
    service's CPU is the design's cost."""
    from kit.run.runner import run

    config = RunConfig(scenario="pair-2", archs=("participant_entrypoint",), stt="service", results_dir=tmp_path)
    run_dir = run(config)
    record = RunRecord.load(run_dir)
    assert record.complete and record.config["stt"] == "service" and record.model["source"] == "bundled"
    svc = record.stt_service
    assert svc["started_by_kit"] and svc["url"].startswith("http://127.0.0.1:") and svc["log"] == "stt-service.jsonl"
    assert not psutil.pid_exists(svc["pid"]) or psutil.Process(svc["pid"]).status() == psutil.STATUS_ZOMBIE
    tables = metrics.compute(run_dir)
    ref = tables.utterances[tables.utterances["kind"] == "reference"]
    assert len(ref) == 4 and not ref["missed"].any(), ref[["participant", "hyp_text"]]
    assert metrics.wer(list(ref["ref_text"]), list(ref["hyp_text"])) <= 0.35
    spk = tables.speakers.set_index("participant")
    assert (spk["matched"] == 2).all() and (spk["stt_cpu_s"] > 0).all()
    # the service's requests are the jobs' turns, each with its participant
    log = read_log(run_dir / svc["log"])
    assert len(log) == 4 and (log["status"] == 200).all() and sorted(log["participant"]) == ["alice", "alice", "bob", "bob"]
    events = read_events(run_dir)
    rec = events[events["kind"] == "recognized"]
    assert sorted(rec["stt_cpu_s"].round(4)) == sorted(log["cpu_s"].round(4))
    # CPU: the service process is in the tree, its inference is the speakers' STT CPU
    arch = tables.architectures.iloc[0]
    # the window ends on a sample (sampler.sample_now), so the service's last turns are in its CPU
    assert arch["stt_service_cpu_s"] >= 0.9 * spk["stt_cpu_s"].sum()
    assert arch["cpu_s"] >= arch["stt_service_cpu_s"] and spk["cpu_s"].sum() == pytest.approx(arch["cpu_s"])
    jobs = events.loc[events["kind"] == "job_start", "pid"]
    assert svc["pid"] not in set(jobs)
