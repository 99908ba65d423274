"""A lossy network on the live path: the impairment (`--net loss=5%,jitter=30ms`), its loss model
and the user-space UDP relay that applies it between the participants and the kit's own server.

This kernel has no netem, so the impairment lives in a relay process. The run's server advertises
the relay's loopback address as its only ICE candidate (`rtc.node_ip`, which rewrites its host
candidates) and runs ICE-lite, so it never probes a client directly: every client's packets reach
it through the relay, one upstream socket per client socket (measured: with full ICE the server's
own checks found the clients on 127.0.0.1 and the media bypassed a relay). The relay impairs the
audio each client *sends* (RTP; RFC 7983/5761 tell it from STUN, DTLS and RTCP): the participants'
uplinks, as on their own networks. Everything else passes untouched, so the agents' data channels
and the kit's listener (the instrument that times every final) are not delayed. Run as
`python -m kit.live.net` by `NetRelay`, in its own process: its packets never wait for the
driver's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.config import KitError, NetImpairment

RELAY_IP = "127.0.0.2"  # loopback (Linux routes all of 127/8 to lo): the server's advertised candidate
READY_TIMEOUT_S = 10.0


class LossModel:
    """Independent losses, or Gilbert-Elliott bursts: a good state that loses nothing and a bad one
    that loses every packet, with transitions set so the long-run loss is `loss` and a bad spell
    lasts `burst` packets on average."""

    def __init__(self, net: NetImpairment, rng: random.Random) -> None:
        self.rng, self.loss, self.bad = rng, net.loss, False
        self.leave_bad = 1 / net.burst if net.burst else 1.0
        self.enter_bad = net.loss * self.leave_bad / (1 - net.loss)

    def lost(self) -> bool:
        if self.leave_bad == 1.0:  # no bursts: each packet on its own
            return self.rng.random() < self.loss
        self.bad = self.rng.random() >= self.leave_bad if self.bad else self.rng.random() < self.enter_bad
        return self.bad


def is_rtp(packet: bytes) -> bool:
    """An RTP packet (not STUN, DTLS or RTCP): RFC 7983's first-byte ranges, RFC 5761's RTCP types."""
    return len(packet) >= 12 and 128 <= packet[0] <= 191 and not 192 <= packet[1] <= 223


@dataclass
class RelayStats:
    """What the relay did, over its life (written to its stats file when it stops)."""

    net: str
    clients: int = 0  # client sockets seen (one per peer connection)
    rtp_packets: int = 0  # audio packets the clients sent
    rtp_dropped: int = 0
    other_packets: int = 0  # STUN, DTLS, RTCP: passed untouched
    to_clients: int = 0  # packets from the server, passed untouched
    per_client: dict[str, list[int]] = field(default_factory=dict)  # "ip:port": [rtp sent, dropped]


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the server: what the server answers goes back to that client."""

    def __init__(self, relay: Relay, client: tuple) -> None:
        self.relay, self.client = relay, client
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: list[bytes] = []  # packets that came before this socket was open
        self.loss = LossModel(relay.net, relay.rng)
        self.delayed: deque[tuple[float, bytes]] = deque()  # (due, packet), dues never decreasing

    def send_later(self, due: float, packet: bytes) -> None:
        """Send at `due`, never before a packet queued earlier (equal timers may fire in any order)."""
        due = max(due, self.delayed[-1][0]) if self.delayed else due
        self.delayed.append((due, packet))
        asyncio.get_running_loop().call_at(due, self._send_due)

    def _send_due(self) -> None:
        now = asyncio.get_running_loop().time()
        while self.delayed and self.delayed[0][0] <= now:
            self.send(self.delayed.popleft()[1])

    def connection_made(self, transport) -> None:
        self.transport = transport
        for packet in self.waiting:
            transport.sendto(packet)
        self.waiting.clear()

    def datagram_received(self, data: bytes, addr) -> None:
        self.relay.stats.to_clients += 1
        self.relay.transport.sendto(data, self.client)

    def send(self, packet: bytes) -> None:
        if self.transport is None:
            self.waiting.append(packet)
        else:
            self.transport.sendto(packet)


class Relay(asyncio.DatagramProtocol):
    """Listens where the server says it is; forwards both ways, impairing the clients' RTP."""

    def __init__(self, net: NetImpairment, server: tuple[str, int], seed: int | None = None) -> None:
        self.net, self.server, self.rng = net, server, random.Random(seed)
        self.stats = RelayStats(net=str(net))
        self.clients: dict[tuple, _Upstream] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        up = self.clients.get(addr)
        if up is None:
            up = self.clients[addr] = _Upstream(self, addr)
            self.stats.clients += 1
            loop = asyncio.get_running_loop()
            loop.create_task(loop.create_datagram_endpoint(lambda: up, local_addr=("127.0.0.1", 0), remote_addr=self.server))
        if not is_rtp(data):
            self.stats.other_packets += 1
            up.send(data)
            return
        self.stats.rtp_packets += 1
        counts = self.stats.per_client.setdefault(f"{addr[0]}:{addr[1]}", [0, 0])
        counts[0] += 1
        if up.loss.lost():
            self.stats.rtp_dropped += 1
            counts[1] += 1
            return
        if not (self.net.delay_ms or self.net.jitter_ms):
            up.send(data)
            return
        delay = max(0.0, self.net.delay_ms + self.rng.uniform(-self.net.jitter_ms, self.net.jitter_ms)) / 1000
        up.send_later(asyncio.get_running_loop().time() + delay, data)


async def serve_relay(net: NetImpairment, listen: tuple[str, int], server: tuple[str, int], stats_path: Path,
                      seed: int | None = None) -> None:  # fmt: skip
    """Relay until SIGTERM/SIGINT, then write the stats file."""
    loop = asyncio.get_running_loop()
    relay = Relay(net, server, seed)
    transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=listen)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    print("ready", flush=True)
    while not stop.is_set() and os.getppid() == parent:  # a relay whose kit died goes too
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    transport.close()
    stats_path.write_text(json.dumps(asdict(relay.stats), indent=1) + "\n", encoding="utf-8")


class NetRelay:
    """The relay process for one server: `with NetRelay(net, udp_port, stats_path) as relay:`;
    `relay.stats` (a RelayStats) once it has stopped."""

    def __init__(self, net: NetImpairment, udp_port: int, stats_path: Path) -> None:
        self.net, self.udp_port, self.stats_path = net, udp_port, stats_path
        self.log_path = stats_path.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.stats: RelayStats | None = None

    def __enter__(self) -> NetRelay:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kit.live.net", "--net", str(self.net), "--listen", f"{RELAY_IP}:{self.udp_port}",
             "--server", f"127.0.0.1:{self.udp_port}", "--stats", str(self.stats_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(self.log_path, "w"), text=True,
            start_new_session=True,  # Ctrl-C reaches the kit, which stops it
        )  # fmt: skip
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        if not ready or self.proc.stdout.readline().strip() != "ready":  # nothing yet, or it died
            self.__exit__()
            problem = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise KitError(f"the network relay did not start on {RELAY_IP}:{self.udp_port}: {problem[0][:300]}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc.kill()  # if it is still there (nothing once it has exited)
            self.proc.wait()
        with contextlib.suppress(OSError, ValueError, TypeError):
            self.stats = RelayStats(**json.loads(self.stats_path.read_text(encoding="utf-8")))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m kit.live.net", description="the kit's UDP impairment relay")
    p.add_argument("--net", required=True, type=NetImpairment.parse)
    p.add_argument("--listen", required=True, type=_address)
    p.add_argument("--server", required=True, type=_address)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    asyncio.run(serve_relay(args.net, args.listen, args.server, args.stats, args.seed))


if __name__ == "__main__":
    main()
