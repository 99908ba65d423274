"""The lossy network of live runs (kit/live/net.py): `--net` read once, the loss model's long-run
numbers, and the relay process forwarding real UDP packets, impairing only RTP, each way.
(The relay between a real server and its clients: tests/test_live_server.py.)"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from kit.config import REPO_ROOT, KitError, NetImpairment, RunConfig
from kit.live.net import RELAY_IP, LossModel, NetRelay, is_rtp


def test_net_is_read_once_and_written_back_the_same():
    net = NetImpairment.parse("jitter=30ms, loss=5%")
    assert net == NetImpairment(loss=0.05, jitter_ms=30.0) and str(net) == "loss=5%,jitter=30ms"
    assert NetImpairment.parse(str(NetImpairment.parse("loss=2.5%,burst=3,delay=20ms"))).burst == 3
    config = RunConfig(net="loss=10%")
    assert config.net == NetImpairment(loss=0.1) and RunConfig.from_dict(config.to_dict()).net == config.net
    assert RunConfig.from_dict(RunConfig().to_dict()).net is None


@pytest.mark.parametrize("text, message", [
    ("loss=5", "cannot read 'loss=5'"), ("lose=5%", "cannot read"), ("loss=100%", "under 100%"),
    ("burst=0.5,loss=1%", "at least 1"), (" , ", "needs at least one"), ("jitter=-3ms", "cannot read"),
])  # fmt: skip
def test_a_bad_net_is_refused_with_the_form_it_takes(text, message):
    with pytest.raises(KitError, match=message):
        NetImpairment.parse(text)


def test_net_is_refused_where_there_is_no_network_to_impair():
    run = [sys.executable, "-m", "kit"]
    console = subprocess.run([*run, "compare", "--scenario", "pair-2", "--net", "loss=5%"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert console.returncode == 2 and "console mode has no agent workers and no network" in console.stderr
    env = {"LIVEKIT_URL": "ws://127.0.0.1:9", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s" * 40, "PATH": "/usr/bin:/bin"}
    live = subprocess.run([*run, "live", "--arch", "participant_entrypoint", "--net", "loss=5%"], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert live.returncode == 2 and "--net and --nodes need --local-server" in live.stderr


def loss_runs(model: LossModel, n: int) -> tuple[float, float]:
    """The share of n packets lost, and the mean length of a run of consecutive losses."""
    lost = [model.lost() for _ in range(n)]
    runs = [1]
    for prev, cur in zip(lost, lost[1:]):
        if cur and prev:
            runs[-1] += 1
        elif cur:
            runs.append(1)
    return sum(lost) / n, sum(runs) / len(runs)


def test_independent_and_bursty_losses_keep_the_asked_share():
    share, burst = loss_runs(LossModel(NetImpairment(loss=0.1), random.Random(1)), 50_000)
    assert 0.095 < share < 0.105 and burst < 1.2  # independent: consecutive losses are rare (1 / 0.9 on average)
    share, burst = loss_runs(LossModel(NetImpairment(loss=0.05, burst=4), random.Random(2)), 200_000)
    assert 0.045 < share < 0.055 and 3.6 < burst < 4.4


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 1234) + b"\0" * 40  # Opus, 20 ms


def test_packets_are_told_apart_as_rfc_7983_and_5761_do():
    stun, dtls, rtcp = b"\x00\x01" + b"\0" * 18, b"\x16\xfe\xfd" + b"\0" * 20, struct.pack("!BBH", 0x80, 200, 6) + b"\0" * 24
    assert is_rtp(rtp(1)) and not any(map(is_rtp, (stun, dtls, rtcp, b"\x80")))


def test_the_relay_loses_and_delays_rtp_only_and_answers_come_back(tmp_path):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.settimeout(2)  # the end of the stream (generous: the relay may wait for a busy core)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    n, stun = 2000, b"\x00\x01" + b"\0" * 18
    with NetRelay(NetImpairment(loss=0.1, delay_ms=40, jitter_ms=10), port, tmp_path / "net-relay.json") as relay:
        client.sendto(stun, (RELAY_IP, port))  # the first packet opens the client's upstream socket
        assert server.recvfrom(2048)[0] == stun
        got, sent_at, upstream = [], {}, []

        def receive():  # as it arrives: a socket buffer holds only a few hundred datagrams
            with contextlib.suppress(socket.timeout):
                while True:
                    data, addr = server.recvfrom(2048)
                    got.append((struct.unpack("!H", data[2:4])[0], time.monotonic()))
                    upstream[:] = [addr]

        receiver = threading.Thread(target=receive)
        receiver.start()
        for seq in range(n):  # 20 ms of audio per packet, sent 10x faster than real time
            sent_at[seq] = time.monotonic()
            client.sendto(rtp(seq), (RELAY_IP, port))
            time.sleep(0.002)
        receiver.join()
        server.sendto(b"answer", upstream[0])  # the server answers the relay's socket: the client gets it
        assert client.recvfrom(2048) == (b"answer", (RELAY_IP, port))
    seqs = [s for s, _ in got]
    assert seqs == sorted(seqs)  # jitter never reorders
    assert 0.085 < 1 - len(seqs) / n < 0.115  # 10 % +- 3.5 sigma
    delays = [t - sent_at[s] for s, t in got]
    assert min(delays) >= 0.029 and sorted(delays)[len(delays) // 2] < 0.5
    assert relay.stats.rtp_packets == n and relay.stats.rtp_dropped == n - len(seqs) and relay.stats.other_packets == 1
    assert relay.stats.to_clients == 1 and relay.proc.returncode == 0
