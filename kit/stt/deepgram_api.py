"""Deepgram's live transcription WebSocket, served over the kit's Whisper: the stand-in an agent's
`deepgram.STT(base_url=<KIT_STT_URL>/listen)` reaches (livekit-plugins-deepgram reads no base-URL
variable, so this one line of the agent names the kit).

The protocol is the client's (livekit-plugins-deepgram 1.8.9 `stt.py`, `SpeechStream`):

    GET {base}/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1&interim_results=true
        &language=en-US&...                      a WebSocket; `Authorization: Token <key>` (not checked)
    client -> binary messages of 16-bit PCM (50 ms each), {"type": "KeepAlive"} every 5 s,
              {"type": "Finalize"} (the turn under way is over), {"type": "CloseStream"} (the end)
    server -> {"type": "SpeechStarted", "channel": [0], "timestamp"}
              {"type": "Results", "is_final", "speech_final", "from_finalize", "start", "duration",
               "channel": {"alternatives": [{"transcript", "confidence", "words": []}]},
               "metadata": {"request_id", "model_info"}}    interims, then one final per turn
              {"type": "Metadata", "request_id", "duration", "channels"} and the close, after CloseStream

The client ends the user's turn at a result with `speech_final` (a final of a turn the service's
endpointing closed, or of one a Finalize closed); its times come from `words`, which the stand-in
leaves empty: it gives no word timings. Turns are found by the service's one endpointing engine
(`kit.stt.stream.StreamTurns`), as for its other streaming endpoints.
"""

from __future__ import annotations

import asyncio
import secrets

from kit.stt.stream import MAX_MESSAGE_BYTES, STREAM_RATES, StreamTurns, message_type, send_json

DEEPGRAM_PATHS = ("/v1/listen", "/listen")  # base_url = KIT_STT_URL + "/listen" (or the service's root + /v1/listen)


class DeepgramError(Exception):
    """A stream the stand-in refuses before the upgrade (HTTP 400, as Deepgram answers a bad query)."""


def listen_options(query) -> tuple[int, bool]:
    """(sample_rate, interim_results) from the query string; DeepgramError if the audio is not what
    the stand-in decodes (linear16, one channel)."""
    if query.get("encoding", "linear16") != "linear16":
        raise DeepgramError(f"encoding must be linear16, got {query.get('encoding')!r}")
    if query.get("channels", "1") != "1":
        raise DeepgramError(f"channels must be 1, got {query.get('channels')!r}")
    try:
        rate = int(query.get("sample_rate", "16000"))
    except ValueError:
        raise DeepgramError(f"sample_rate must be an integer, got {query.get('sample_rate')!r}") from None
    if not STREAM_RATES[0] <= rate <= STREAM_RATES[1]:
        raise DeepgramError(f"sample_rate must be between {STREAM_RATES[0]} and {STREAM_RATES[1]}, got {rate}")
    return rate, query.get("interim_results", "false").lower() == "true"


class DeepgramWire:
    """The engine's messages (kit/stt/stream.py) as Deepgram live messages, out on one WebSocket."""

    def __init__(self, ws, rate: int, model: str) -> None:
        self.ws, self.rate, self.model = ws, rate, model
        self.request_id = secrets.token_hex(16)
        self.finalizing = False  # a Finalize is being answered: its final says so (from_finalize)

    async def send(self, message: dict) -> None:
        await send_json(self.ws, message)

    async def engine(self, message: dict) -> None:
        """One message of the engine (SpeechStarted, Results, UtteranceEnd, Metadata)."""
        kind = message["type"]
        if kind == "SpeechStarted":
            await self.send({"type": "SpeechStarted", "channel": [0], "timestamp": message["start_sample"] / self.rate})
        elif kind == "Results":
            final = bool(message["is_final"])
            start = message["start_sample"] / self.rate
            await self.send({
                "type": "Results", "channel_index": [0, 1], "is_final": final, "speech_final": final,
                "from_finalize": final and self.finalizing, "start": start,
                "duration": (message["end_sample"] - message["start_sample"]) / self.rate,
                "channel": {"alternatives": [{"transcript": message["text"], "confidence": 1.0, "words": []}]},
                "metadata": {"request_id": self.request_id, "model_info": {"name": self.model}},
            })  # fmt: skip
        elif kind == "Metadata":
            await self.send({"type": "Metadata", "request_id": self.request_id, "duration": message["audio_s"],
                             "channels": 1, "model_info": {"name": self.model}})  # fmt: skip


def deepgram_handler(vad, whisper, delay: float | None, log):
    """The aiohttp handler of DEEPGRAM_PATHS: one StreamTurns per WebSocket."""
    from aiohttp import WSMsgType, web

    async def handle(request):
        try:
            rate, interim = listen_options(request.query)
        except DeepgramError as e:
            return web.json_response({"err_code": "Bad Request", "err_msg": str(e)}, status=400)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=True)
        await ws.prepare(request)
        model = request.query.get("model", "nova-3")
        wire = DeepgramWire(ws, rate, model)
        turns = StreamTurns(vad, whisper, delay=delay, sample_rate=rate, interim=interim, send=wire.engine,
                            log=log.write, participant=request.headers.get("X-Kit-Participant"), model=model,
                            api="deepgram")  # fmt: skip
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
                    if kind == "Finalize":
                        wire.finalizing = True
                        await turns.flush()
                        wire.finalizing = False
                    elif kind != "KeepAlive":
                        problem = f"unknown message {msg.data[:80]!r}: send audio, KeepAlive, Finalize or CloseStream"
                        break
                else:
                    break
            turns.end_input()
            await endpointing
            await turns.finish()
        finally:  # a client gone without a goodbye still had its audio counted
            turns.log_stream_end()
            endpointing.cancel()
            await turns.aclose()
            await ws.close(code=1008 if problem else 1000, message=(problem or "").encode()[:120])
        return ws

    return handle

