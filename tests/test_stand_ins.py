"""The STT service's stand-ins for the STT APIs agents call, each driven by its real client class, as an
unmodified agent builds it: LiveKit Inference (kit/stt/inference_api.py) through livekit-agents'
`inference.STT`, Deepgram's live API (kit/stt/deepgram_api.py) through livekit-plugins-deepgram's
`deepgram.STT`. The turns of pair-2 come back as one final each, in order; a token signed with
another secret is a 401 the client does not retry; a bad session is an error."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import jwt
import pytest
from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError, inference
from livekit.agents import stt as agents_stt
from livekit.plugins import deepgram

from kit.config import RunConfig
from kit.results import metrics
from kit.room import scenario
from kit.room.audio import resample, to_int16
from kit.run.record import RunRecord
from kit.run.runner import run
from kit.stt.process import ServiceProcess
from kit.stt.request_log import read_log

PAIR = scenario.load("pair-2")
KEY, SECRET = "kit-test-key", "kit-test-secret-0123456789abcdef0123"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One service with the Whisper model; tokens must be signed with KEY/SECRET."""
    log = tmp_path_factory.mktemp("inference") / "requests.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIVEKIT_API_KEY", KEY)
        mp.setenv("LIVEKIT_API_SECRET", SECRET)
        with ServiceProcess(RunConfig(), log_path=log) as svc:
            yield svc


def alice_frames() -> list[rtc.AudioFrame]:
    """alice's track of pair-2 up to 1 s after her last utterance, as 20 ms frames at 48 kHz (what a room gives)."""
    end = max(u.end_s for u in PAIR.utterances if u.participant == "alice") + 1.0
    track = PAIR.read_audio("alice")[: round(end * PAIR.sample_rate)]
    pcm = to_int16(resample(track, PAIR.sample_rate, 48_000))
    return [rtc.AudioFrame(pcm[i : i + 960].tobytes(), 48_000, 1, 960) for i in range(0, len(pcm) - 959, 960)]


def inference_client(url: str, http, secret: str = SECRET):
    return inference.STT("deepgram/nova-3", base_url=url, api_key=KEY, api_secret=secret, http_session=http)


def deepgram_client(url: str, http, secret: str = ""):
    return deepgram.STT(base_url=url + "/listen", api_key="any-key", http_session=http)  # its one line naming the kit


async def transcribe(url: str, frames, *, client=inference_client, secret: str = SECRET) -> list:
    """Every speech event of one STT stream of this client over these frames (pushed at 10x real time)."""
    async with aiohttp.ClientSession() as http:
        stt = client(url, http, secret)
        stream = stt.stream(conn_options=APIConnectOptions(max_retry=0, timeout=10))
        events = []

        async def push():
            for f in frames:
                stream.push_frame(f)
                await asyncio.sleep(0.002)
            stream.end_input()

        pusher = asyncio.create_task(push())
        async for ev in stream:
            events.append(ev)
        await pusher
        await stream.aclose()
        return events


@pytest.mark.whisper
@pytest.mark.parametrize("client, api, model", [(inference_client, "inference", "deepgram/nova-3"),
                                                (deepgram_client, "deepgram", "nova-3")])  # fmt: skip
def test_every_turn_comes_back_as_one_final_through_the_real_client(service, client, api, model):
    events = asyncio.run(transcribe(service.url, alice_frames(), client=client))
    kinds = [e.type for e in events if e.type != agents_stt.SpeechEventType.RECOGNITION_USAGE]
    finals = [e.alternatives[0].text for e in events if e.type == agents_stt.SpeechEventType.FINAL_TRANSCRIPT]
    alice = [u.text for u in PAIR.utterances if u.participant == "alice"]
    assert len(finals) == len(alice), finals
    assert kinds.count(agents_stt.SpeechEventType.START_OF_SPEECH) == kinds.count(agents_stt.SpeechEventType.END_OF_SPEECH) == len(alice)
    for text, ref in zip(finals, alice):
        assert set(ref.lower().split()[:3]) & set(text.lower().replace(",", "").replace(".", "").split()), (text, ref)
    starts = [e.alternatives[0].start_time for e in events if e.type == agents_stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert starts == sorted(starts) and starts[0] >= 0
    log = read_log(service.log_path)
    rows = log[log["api"] == api]
    assert (rows["model"] == model).all() and (rows["response_format"] == "stream-final").sum() >= len(alice)
    assert (rows.loc[rows["response_format"] == "stream-end", "audio_s"] > 5).all()


def test_a_token_signed_with_another_secret_is_a_401_not_retried(service):
    with pytest.raises(APIStatusError) as e:
        asyncio.run(transcribe(service.url, alice_frames()[:50], secret="not-the-run-secret-0123456789abcdef"))
    assert e.value.status_code == 401 and not e.value.retryable


def test_a_bad_session_is_an_error_message(service):
    async def send(first: dict) -> dict:
        ws_url = service.url.replace("http", "ws", 1) + "/stt?model=x"
        token = jwt.encode({"iss": KEY, "sub": "agent", "exp": time.time() + 60, "inference": {"perform": True}}, SECRET)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, headers=headers) as ws:
            await ws.send_str(json.dumps(first))
            msg = await ws.receive(timeout=10)
            return json.loads(msg.data)

    bad = asyncio.run(send({"type": "session.create", "settings": {"sample_rate": "16000", "encoding": "opus"}}))
    assert bad["type"] == "error" and "pcm_s16le" in bad["message"]
    bad = asyncio.run(send({"type": "input_audio", "audio": ""}))
    assert bad["type"] == "error" and "session.create" in bad["message"]



@pytest.mark.replay
@pytest.mark.whisper
def test_designs_on_the_production_client_match_every_utterance(tmp_path):
    """`--stt inference` on pair-2: the designs transcribe through livekit-agents' own inference.STT
    against the run's stand-in; every utterance matched, and the service log attributes each stream
    to its participant with the model the client asked for."""
    archs = ("multi_session", "participant_entrypoint")
    run_dir = run(RunConfig(scenario="pair-2", archs=archs, stt="inference", results_dir=tmp_path))
    tables = metrics.compute(run_dir)
    ref = tables.utterances[tables.utterances["kind"] == "reference"]
    assert set(ref["arch"]) == set(archs) and not ref["missed"].any(), ref[["arch", "participant", "hyp_text"]]
    assert metrics.wer(list(ref["ref_text"]), list(ref["hyp_text"])) <= 0.35
    record = RunRecord.load(run_dir)
    assert record.config["stt"] == "inference:deepgram/nova-3" and record.stt_service["started_by_kit"]
    log = read_log(run_dir / record.stt_service["log"])
    ends = log[log["response_format"] == "stream-end"]
    assert set(ends["participant"]) == {"alice", "bob"} and (ends["api"] == "inference").all()
    assert (ends["model"] == "deepgram/nova-3").all() and (ends["audio_s"] > 10).all()
    # the client reports no STT call: each speaker's STT CPU and streamed audio are the service's counts
    spk = tables.speakers
    assert (spk["stt_audio_s"] > 10).all() and (spk["stt_cpu_s"] > 0).all(), spk[["arch", "participant", "stt_audio_s"]]
    assert tables.architectures["stt_minutes_per_speaker_hour"].between(40, 70).all()  # streamed: about all the time
    assert (tables.architectures["stt_api"] == "inference").all() and (tables.architectures["stt_model"] == "deepgram/nova-3").all()
