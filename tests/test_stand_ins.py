"""The STT service's stand-ins for the STT APIs agents call, each driven by its real client class, as an
unmodified agent builds it: LiveKit Inference (kit/stt/inference_api.py) through livekit-agents'
`inference.STT`, Deepgram's live API (kit/stt/deepgram_api.py) through livekit-plugins-deepgram's
`deepgram.STT`. The turns of pair-2 come back as one final each, in order; a token signed with
another secret is a 401 the client does not retry; a bad session is an error."""

from __future__ import annotations

import asyncio
import dataclasses
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
from kit.stt.request_log import LOG_COLUMNS, read_log, refusals

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


def test_a_model_the_stand_in_does_not_serve_is_refused_at_once_and_named(service):
    """An agent that also asks LiveKit Inference for TTS (inference.TTS, the real client): a 404 the client
    does not retry, and a log row naming what it asked for, which becomes the agent's problem."""

    async def synthesize():
        async with aiohttp.ClientSession() as http:
            tts = inference.TTS("cartesia/sonic-3", base_url=service.url, api_key=KEY, api_secret=SECRET, http_session=http)
            async for _ in tts.synthesize("hello there"):
                pass

    started = time.monotonic()
    with pytest.raises(APIStatusError) as e:
        asyncio.run(synthesize())
    assert e.value.status_code == 404 and not e.value.retryable and time.monotonic() - started < 5
    log = read_log(service.log_path)
    row = log[log["model"] == "cartesia/sonic-3"].iloc[-1]
    assert row["api"] == "inference" and row["status"] == 404 and "text-to-speech" in row["error"]
    (problem,) = refusals(read_log(service.log_path), started, time.monotonic())
    assert "refused 1 inference request(s) (404)" in problem and "serves speech-to-text only" in problem


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
    assert all(record.archs[a].stt_api == "inference" and record.archs[a].stt_model == "deepgram/nova-3" for a in archs)
    # billed at the price of the model it asked for (data/pricing.csv's model column), with no --stt-price
    assert (tables.architectures["stt_price_item"] == "stt_livekit_inference_deepgram_nova3_minute").all()
    assert (tables.speakers["dollars_cloud_stt_per_speaker_hour"] > 0).all()


def test_an_unmodified_agents_streams_are_attributed_by_their_audio():
    """An unmodified agent's client names no participant: each stream goes to whoever's speech its turns
    overlap most, in the run's clock; a stream with no turn, to the one participant left without one."""
    import pandas as pd

    from kit.results.resources import attribute_streams

    sc = scenario.load("comings-and-goings")
    t0 = 1000.0
    speaking = [p for p in sc.identities if any(u.participant == p for u in sc.utterances)]
    rows = []
    for i, p in enumerate(speaking):
        for u in (u for u in sc.utterances if u.participant == p):  # the service's turns, 80 ms late (transport)
            rows.append({"request_id": f"s{i}", "participant": None, "response_format": "stream-final",
                         "audio_from": t0 + u.start_s + 0.08, "audio_to": t0 + u.end_s + 0.08})  # fmt: skip
        rows.append({"request_id": f"s{i}", "participant": None, "response_format": "stream-end", "audio_from": t0, "audio_to": t0 + 9})
    silent = [p for p in sc.identities if p not in speaking]
    assert len(silent) == 1
    rows.append({"request_id": "quiet", "participant": None, "response_format": "stream-end", "audio_from": t0, "audio_to": t0 + 9})
    log = pd.DataFrame(rows).reindex(columns=LOG_COLUMNS)  # as read_log reads a service log
    got = attribute_streams(log, sc, t0).groupby("request_id")["participant"].first().to_dict()
    assert got == {**{f"s{i}": p for i, p in enumerate(speaking)}, "quiet": silent[0]}
    # two streams without a turn and two participants without a stream: no guess
    extra = pd.DataFrame(rows + [{"request_id": "quiet2", "participant": None, "response_format": "stream-end"}]).reindex(columns=LOG_COLUMNS)
    sc2 = dataclasses.replace(sc, participants=(*sc.participants, dataclasses.replace(sc.participants[0], identity="zoe")))
    got = attribute_streams(extra, sc2, t0).groupby("request_id")["participant"].first()
    assert got[["quiet", "quiet2"]].isna().all()
