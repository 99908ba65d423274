"""Streaming STT over the kit's Whisper: the STT service's WebSocket endpoint and its protocol.

The shape of the common cloud streaming APIs (Deepgram's live API most of all). The client opens

    GET /v1/audio/stream?sample_rate=16000&interim_results=true   (a WebSocket; X-Kit-Participant header)

sends the participant's audio continuously, connected time and silence included, as binary
messages (16-bit little-endian mono PCM at sample_rate), and `{"type": "CloseStream"}` when it has
no more. The service finds the turns itself (server-side endpointing: silero with the kit's VAD
settings, the same 0.55 s end of turn as the VAD-gated designs) and answers with JSON text messages:

    {"type": "SpeechStarted", "start_sample"}
    {"type": "Results", "is_final": false, "text", "start_sample", "end_sample"}   interims, as a turn grows
    {"type": "UtteranceEnd", "start_sample", "endpoint_sample"}                    at the endpoint
    {"type": "Results", "is_final": true, "text", "start_sample", "end_sample",    the turn's final
     "endpoint_sample", "audio_s", "queue_s", "infer_s", "cpu_s"}
    {"type": "Metadata", "audio_s"}                                                 the audio received, last
    {"type": "Error", "message"}                                                    then the service closes

Sample positions count the stream's own samples, so the client maps each one to the moment it sent
that sample. An interim is the turn so far, transcribed every INTERIM_EVERY_S of new speech, and
started only when the model has nothing else waiting (a final that comes while it runs still waits
for it: on one core, up to one inference). A final's
`cpu_s` is the inference CPU of the whole turn, its interims included.

Calibration (`python -m kit stt-service --calibration-delay S`, what `--stt stream-delay:S` starts):
no model; each final is sent exactly S after its endpoint, with a fixed text; interims at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time

import numpy as np

from kit.room.audio import resample, to_float32
from kit.stt import WHISPER_RATE, calibration_text

STREAM_RATES = (8_000, 48_000)  # accepted range of a stream's sample rate
INTERIM_EVERY_S = 1.0  # of new speech between two interims of a turn
MAX_MESSAGE_BYTES = 2**20  # one binary message: ~33 s of 16 kHz audio, far more than any client sends at once


class StreamError(Exception):
    """A stream the service refuses (before or after the WebSocket upgrade)."""


def stream_options(query) -> tuple[int, bool]:
    """(sample_rate, interim_results) from the request's query string; StreamError if bad."""
    try:
        rate = int(query.get("sample_rate", "16000"))
    except ValueError:
        raise StreamError(f"sample_rate must be an integer, got {query.get('sample_rate')!r}") from None
    if not STREAM_RATES[0] <= rate <= STREAM_RATES[1]:
        raise StreamError(f"sample_rate must be between {STREAM_RATES[0]} and {STREAM_RATES[1]}, got {rate}")
    interim = query.get("interim_results", "true").lower()
    if interim not in ("true", "false"):
        raise StreamError(f"interim_results must be true or false, got {interim!r}")
    return rate, interim == "true"


class StreamTurns:
    """One stream: its audio through the VAD into turns, each turn through the model, messages out.

    `send(message)` delivers a message to the client; `log(row)` records one inference (the
    service's per-request log). `whisper` None with `delay` set: the calibration stream."""

    def __init__(self, vad, whisper, *, delay: float | None, sample_rate: int, interim: bool, send, log,
                 participant: str | None, model: str | None = None, api: str = "kit-stream",
                 job: str | None = None) -> None:  # fmt: skip
        from livekit.agents import vad as agents_vad

        self.kinds = agents_vad.VADEventType
        self.vad_stream = vad.stream()
        self.whisper, self.delay = whisper, delay
        self.rate, self.interim = sample_rate, interim
        self.send, self.log, self.participant = send, log, participant
        self.model, self.api, self.job = model or "whisper-1", api, job  # as the client named them (logged)
        self.stream_id = "stream_" + secrets.token_hex(6)
        self.received = 0  # samples
        self.first_audio: float | None = None  # time.monotonic() when the first sample arrived (sample n: + n / rate)
        self.turn: list[np.ndarray] = []  # the current turn's audio so far (float32 at the stream's rate)
        self.turn_no = 0
        self.turn_start = 0
        self.turn_cpu: dict[int, float] = {}
        self.interim_at = 0.0  # seconds of the turn transcribed by its last interim
        self.interim_task: asyncio.Task | None = None
        self.finals: list[asyncio.Task] = []  # in the order of their turns

    def push(self, pcm: bytes) -> None:
        from livekit import rtc

        samples = len(pcm) // 2
        if self.first_audio is None:
            self.first_audio = time.monotonic()
        self.vad_stream.push_frame(rtc.AudioFrame(pcm, self.rate, 1, samples))
        self.received += samples

    async def run(self) -> None:
        """Endpoint the audio until the input ends; then finish the turn under way, if any."""
        async for ev in self.vad_stream:
            if ev.type == self.kinds.START_OF_SPEECH:
                self.turn = [_pcm(f) for f in ev.frames]
                self.turn_no += 1
                self.turn_start = max(0, ev.samples_index - sum(len(a) for a in self.turn))
                self.interim_at = 0.0
                await self.send({"type": "SpeechStarted", "start_sample": self.turn_start})
            elif ev.type == self.kinds.INFERENCE_DONE and ev.speaking and self.turn:
                self.turn.extend(_pcm(f) for f in ev.frames)
                self._maybe_interim(ev.samples_index)
            elif ev.type == self.kinds.END_OF_SPEECH and self.turn:  # (a turn flushed early has ended already)
                self._end_turn(np.concatenate([_pcm(f) for f in ev.frames]), ev.samples_index)
        if self.turn:  # the input ended inside a turn: it is final now
            self._end_turn(np.concatenate(self.turn), self.received)

    def end_input(self) -> None:
        self.vad_stream.end_input()

    async def flush(self) -> None:
        """The client says the turn under way is over (LiveKit Inference's `session.finalize`): it is
        final now, without waiting for the silence that would end it; returns once every final is out."""
        if self.turn:
            self._end_turn(np.concatenate(self.turn), self.received)
        await asyncio.gather(*self.finals, return_exceptions=True)

    async def finish(self) -> None:
        """Wait for every final still being transcribed, then say how much audio was received."""
        if self.interim_task is not None:
            self.interim_task.cancel()
        await asyncio.gather(*self.finals, return_exceptions=True)
        await self.send({"type": "Metadata", "audio_s": self.received / self.rate})

    async def aclose(self) -> None:
        await self.vad_stream.aclose()

    def _end_turn(self, audio: np.ndarray, endpoint_sample: int) -> None:
        turn_no, start = self.turn_no, self.turn_start
        self.turn = []
        endpoint = time.monotonic()
        message = {"type": "UtteranceEnd", "start_sample": start, "endpoint_sample": endpoint_sample}
        before = self.finals[-1] if self.finals else None
        self.finals.append(asyncio.create_task(self._final(turn_no, start, endpoint_sample, endpoint, audio, message, before)))

    async def _final(self, turn_no: int, start: int, endpoint_sample: int, endpoint: float, audio: np.ndarray,
                     utterance_end: dict, before: asyncio.Task | None) -> None:  # fmt: skip
        await self.send(utterance_end)
        text, result = await self._transcribe(audio, endpoint)
        if before is not None:  # finals go out in the order of their turns
            await asyncio.wait([before])
        cpu_s = self.turn_cpu.pop(turn_no, 0.0) + (result.cpu_s if result else 0.0)
        await self.send({
            "type": "Results", "is_final": True, "text": text, "start_sample": start,
            "end_sample": start + len(audio), "endpoint_sample": endpoint_sample, "audio_s": len(audio) / self.rate,
            "queue_s": result.queue_s if result else 0.0, "infer_s": result.infer_s if result else 0.0, "cpu_s": cpu_s,
        })  # fmt: skip
        self._log("final", audio, result, start)

    def _maybe_interim(self, now_sample: int) -> None:
        if not self.interim or (self.interim_task is not None and not self.interim_task.done()):
            return
        so_far = sum(len(a) for a in self.turn) / self.rate
        if so_far - self.interim_at < INTERIM_EVERY_S or (self.whisper is not None and not self.whisper.idle()):
            return
        self.interim_at = so_far
        audio = np.concatenate(self.turn)
        self.interim_task = asyncio.create_task(self._interim(self.turn_no, self.turn_start, audio))

    async def _interim(self, turn_no: int, start: int, audio: np.ndarray) -> None:
        text, result = await self._transcribe(audio, None)
        if result is not None:
            self.turn_cpu[turn_no] = self.turn_cpu.get(turn_no, 0.0) + result.cpu_s
            self._log("interim", audio, result, start)
        if turn_no == self.turn_no and self.turn:  # still the turn under way: a late interim is dropped
            await self.send({"type": "Results", "is_final": False, "text": text, "start_sample": start,
                             "end_sample": start + len(audio)})  # fmt: skip

    async def _transcribe(self, audio: np.ndarray, endpoint: float | None):
        """(text, kit.stt.Transcript) of a turn; calibration: a fixed text, exactly `delay` after the endpoint."""
        if self.whisper is None:
            if endpoint is not None:
                await asyncio.sleep(max(0.0, endpoint + self.delay - time.monotonic()))
            return calibration_text(len(audio) / self.rate), None
        result = await self.whisper.transcribe_async(resample(audio, self.rate, WHISPER_RATE))
        return result.text, result

    def log_stream_end(self) -> None:
        """One row for the whole stream: every second of audio the client sent (what a streaming STT bills)."""
        self.log({"mono": time.monotonic(), "wall": time.time(), "request_id": self.stream_id, "participant": self.participant,
                  "status": 200, "error": None, "response_format": "stream-end", "model": self.model, "api": self.api,
                  "job": self.job, "bytes": 2 * self.received, "sample_rate": self.rate,
                  "audio_s": self.received / self.rate, **self._span(0, self.received)})  # fmt: skip

    def _span(self, start: int, end: int) -> dict:
        """audio_from/audio_to: when the stream received samples start and end (monotonic; NaN before any audio)."""
        if self.first_audio is None:
            return {"audio_from": None, "audio_to": None}
        return {"audio_from": self.first_audio + start / self.rate, "audio_to": self.first_audio + end / self.rate}

    def _log(self, kind: str, audio: np.ndarray, result, start: int) -> None:
        self.log({
            "mono": time.monotonic(), "wall": time.time(), "request_id": self.stream_id, "participant": self.participant,
            "status": 200, "error": None, "response_format": f"stream-{kind}", "model": self.model, "api": self.api, "job": self.job,
            "bytes": 2 * len(audio),
            "sample_rate": self.rate, "audio_s": len(audio) / self.rate,
            "queue_s": result.queue_s if result else None, "infer_s": result.infer_s if result else None,
            "cpu_s": result.cpu_s if result else None, "batch": result.batch if result else None, "handle_s": None,
            **self._span(start, start + len(audio)),
        })  # fmt: skip


def _pcm(frame) -> np.ndarray:
    return to_float32(np.frombuffer(frame.data, dtype=np.int16))


def stream_handler(vad, whisper, delay: float | None, log, participant_header: str):
    """The aiohttp handler of the streaming endpoint (kit.stt.STREAM_PATH): one StreamTurns per WebSocket."""
    from aiohttp import WSMsgType, web

    async def handle(request):
        try:
            rate, interim = stream_options(request.query)
        except StreamError as e:
            return web.json_response({"error": {"message": str(e), "type": "invalid_request_error",
                                                 "param": None, "code": "invalid_stream"}}, status=400)  # fmt: skip
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)

        async def send(message: dict) -> None:
            await send_json(ws, message)

        turns = StreamTurns(vad, whisper, delay=delay, sample_rate=rate, interim=interim, send=send, log=log.write,
                            participant=request.headers.get(participant_header))  # fmt: skip
        endpointing = asyncio.create_task(turns.run())
        problem = None
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    if len(msg.data) % 2:
                        problem = "a binary message must hold whole 16-bit samples (an even number of bytes)"
                        break
                    turns.push(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    kind = message_type(msg.data)
                    if kind == "CloseStream":
                        break
                    if kind != "KeepAlive":
                        problem = f"unknown message {msg.data[:80]!r}: send audio, KeepAlive or CloseStream"
                        break
                else:
                    break
            turns.end_input()
            await endpointing
            await turns.finish()
            if problem:
                await send({"type": "Error", "message": problem})
        finally:
            endpointing.cancel()
            await turns.aclose()
            await ws.close(code=1008 if problem else 1000)
        return ws

    return handle


async def send_json(ws, message: dict) -> None:
    """One JSON text message to a stream's client, unless it has gone (every streaming endpoint): a client
    that drops the connection without a goodbye (a session closed as its participant left) is not an error."""
    if not ws.closed:
        with contextlib.suppress(ConnectionResetError):  # aiohttp's ClientConnectionResetError is one
            await ws.send_str(json.dumps(message))


def message_type(text: str) -> str | None:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return None
    return message.get("type") if isinstance(message, dict) else None
