"""Bounds on the state an outsider can make the B2BUA hold (issue #15): stream connections (in total, per
address, idle, slow senders, unread output), SIP transactions and DNS lookups. The bookkeeping on a fake
clock; then each bound against the real process or the real asyncio driver, with the metric that counts it."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from pathlib import Path

import yaml
from harness import B2BUAProcess, free_port, write_config
from sipmsg import request, status_of

from b2bua.sip.events import Peer, RequestReceived
from b2bua.sip.stack import SipStack, StackConfig, make_response
from b2bua.transport.limits import ConnectionTable, StreamLimits
from b2bua.transport.server import SipServer


# -- the bookkeeping, on a fake clock -------------------------------------------------------------------------
def test_connections_are_bounded_in_total_and_per_address() -> None:
    table = ConnectionTable(StreamLimits(max_total=3, max_per_source=2))
    assert table.admit(1, "192.0.2.1", 0.0) is None
    assert table.admit(2, "192.0.2.1", 0.0) is None
    assert table.admit(3, "192.0.2.1", 0.0) == "connections_per_source"
    assert table.admit(4, "192.0.2.2", 0.0) is None
    assert table.admit(5, "192.0.2.3", 0.0) == "connections_total"
    table.opened(6, "203.0.113.10", 0.0)  # our own connection to a carrier is not an outsider's
    assert table.inbound == 3 and len(table) == 4
    table.closed(1)
    assert table.admit(7, "192.0.2.1", 0.0) is None  # room again for that address
    assert table.hits == {"connections_per_source": 1, "connections_total": 1}


def test_slow_senders_and_idle_connections_expire_once() -> None:
    table = ConnectionTable(StreamLimits(idle_s=100, message_s=10))
    table.admit(1, "192.0.2.1", 0.0)  # says nothing at all
    table.admit(2, "192.0.2.2", 0.0)
    table.heard(2, 1.0, unfinished=False)  # a whole message ...
    table.heard(2, 2.0, unfinished=True)  # ... then half of one, never finished
    table.admit(3, "192.0.2.3", 0.0)
    table.heard(3, 1.0, unfinished=False)  # a whole message: then quiet
    table.opened(4, "203.0.113.10", 0.0)  # ours: never waiting for a first message
    assert table.expired(9.0) == []
    assert table.expired(10.0) == [(1, "slow_sender")]
    assert table.expired(12.0) == [(2, "slow_sender")]
    table.heard(3, 50.0, unfinished=False)  # traffic keeps a connection alive
    assert table.expired(100.0) == [(4, "idle")]
    assert table.expired(149.0) == []
    assert table.expired(150.0) == [(3, "idle")]
    assert table.expired(500.0) == []  # named once, however long the close takes
    assert table.hits == {"slow_sender": 2, "idle": 2}


def test_a_peer_that_stops_reading_is_dropped() -> None:
    table = ConnectionTable(StreamLimits(max_write_buffer=1000))
    table.admit(1, "192.0.2.1", 0.0)
    assert table.sent(1, 1.0, queued=1000)
    assert not table.sent(1, 2.0, queued=1001)
    assert table.hits == {"write_buffer": 1}


# -- SIP transactions ------------------------------------------------------------------------------------------
def test_a_request_beyond_the_transaction_bound_gets_a_stateless_503() -> None:
    stack = SipStack(StackConfig(max_transactions=100))
    peer = Peer("udp", "192.0.2.10", 5060)
    sent = []
    for i in range(101):
        stack.receive(request("OPTIONS", branch=f"z9hG4bKt{i}", call_id=f"t{i}"), peer, 1.0)
        sent += [data for data, _ in stack.datagrams_to_send()]
    (refusal,) = sent  # the 100 let in wait for call control; the 101st is refused at once
    assert status_of(refusal) == 503 and b"\r\nRetry-After: 5\r\n" in refusal
    assert stack.transaction_count == 100 and stack.stats["limit:transactions"] == 1
    while (event := stack.next_event()) is not None:  # call control answers what was let in
        assert isinstance(event, RequestReceived) and event.transaction is not None
        stack.respond(event.transaction, make_response(event.request, 200, to_tag="t"), 1.0)
    assert len(stack.datagrams_to_send()) == 100
    stack.handle_timer(100.0)  # Timer J (64*T1) has passed: the completed transactions are gone
    assert stack.transaction_count == 0
    stack.receive(request("OPTIONS", branch="z9hG4bKafter", call_id="after"), peer, 100.0)
    assert stack.transaction_count == 1 and not stack.datagrams_to_send()


# -- against the real process ----------------------------------------------------------------------------------
def _limited(tmp_path: Path) -> tuple[B2BUAProcess, int, int]:
    """The B2BUA with small bounds, listening on UDP and TCP; (process, SIP port, metrics port)."""
    cfg = write_config(tmp_path / "config", sip={
        "max_transactions": 100,
        "connections": {"max_per_source": 3, "idle_s": 2, "message_s": 1, "max_write_buffer_kib": 16}})
    data = yaml.safe_load(cfg.read_text())
    metrics = free_port()
    data["metrics"] = {"address": f"127.0.0.1:{metrics}"}
    # loopback is the lab trunk (trusted): rates high enough that only the bound under test is hit
    data["security"] = {"trusted_rates": {"INVITE": 10_000, "REGISTER": 10_000, "OPTIONS": 10_000, "other": 10_000},
                        "max_new_calls_per_s": None}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    port = free_port()
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
    return proc, port, metrics


def _hits(metrics: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("b2bua_limit_hits_total{"):
            name = line.split('"')[1]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def _options(sock: socket.socket, n: int, transport: str = "TCP") -> bytes:
    host, port = sock.getsockname()[:2]
    return request("OPTIONS", branch=f"z9hG4bKlim{n}", call_id=f"lim{n}@test", transport=transport,
                   via_value=f"SIP/2.0/{transport} {host}:{port};branch=z9hG4bKlim{n}")


def _answered(sock: socket.socket, n: int) -> bool:
    """An OPTIONS on a stream connection: True when it is answered 200."""
    sock.sendall(_options(sock, n))
    sock.settimeout(5)
    try:
        data = sock.recv(65535)
    except (ConnectionError, TimeoutError):
        return False
    return status_of(data) == 200


def _closed_by_peer(sock: socket.socket, within: float) -> float | None:
    """Seconds until the B2BUA closed (or reset) the connection, None if it stayed open ``within``."""
    start = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(65535):
            pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - start


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_connections_per_address_slow_senders_and_idle_ones(tmp_path: Path) -> None:
    proc, port, metrics = _limited(tmp_path)
    try:
        held = [_connect(port) for _ in range(3)]
        assert all(_answered(s, i) for i, s in enumerate(held))
        fourth = _connect(port)  # the kernel accepts it; the B2BUA drops it at once
        assert _closed_by_peer(fourth, 5) is not None
        other = _connect(port, "127.0.0.2")  # another address still gets in
        assert _answered(other, 10)
        # a connection that never says anything, and one that starts a message and never ends it
        silent = _connect(port, "127.0.0.3")
        slow = _connect(port, "127.0.0.4")
        slow.sendall(_options(slow, 11)[:60])
        assert _closed_by_peer(silent, 10) is not None and _closed_by_peer(slow, 10) is not None
        # a quiet one is closed after idle_s; traffic keeps another open past it
        kept = held[0]
        for i in range(8):
            time.sleep(0.5)
            assert _answered(kept, 20 + i)
        assert _closed_by_peer(held[1], 10) is not None
        assert _answered(kept, 30)
        hits = _hits(metrics)
        assert hits["connections_per_source"] == 1 and hits["slow_sender"] == 2
        assert hits["idle"] >= 2  # held[1] and held[2] (and the first address's others when quiet)
        assert proc.log().count("refusing a tcp connection from 127.0.0.1: connections_per_source") == 1
        for s in (*held, fourth, other, silent, slow):
            s.close()
    finally:
        proc.stop()


def test_a_peer_that_does_not_read_its_answers_is_dropped(tmp_path: Path) -> None:
    proc, port, metrics = _limited(tmp_path)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: answers queue up with us
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        try:
            for n in range(20_000):  # about 7 MB of answers, none read
                sock.sendall(_options(sock, n))
        except (ConnectionError, TimeoutError):
            pass  # dropped while still sending
        deadline = time.monotonic() + 60
        while _hits(metrics)["write_buffer"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _hits(metrics)["write_buffer"] == 1
        assert _closed_by_peer(sock, 60) is not None
        sock.close()
        assert "connect to" not in proc.log()  # what was still meant for it was not sent on a new connection
        with _connect(port) as again:  # the process serves on
            assert _answered(again, 99_999)
    finally:
        proc.stop()


def test_requests_beyond_the_transaction_bound_get_503_and_are_counted(tmp_path: Path) -> None:
    proc, port, metrics = _limited(tmp_path)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        statuses = []
        for n in range(110):  # OPTIONS transactions live for Timer J (32 s) after their 200: they pile up
            sock.sendto(_options(sock, n, "UDP"), ("127.0.0.1", port))
            statuses.append(status_of(sock.recvfrom(65535)[0]))
        assert statuses == [200] * 100 + [503] * 10
        assert _hits(metrics)["transactions"] == 10
        sock.close()
    finally:
        proc.stop()


def test_dns_lookups_are_shared_per_name_and_bounded() -> None:
    """The real asyncio driver: two messages for one name share one lookup; a second name while the first
    is being looked up is over the bound (1 here), and that send fails at once."""
    async def run() -> tuple[list[bytes], dict[str, int], int]:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        from b2bua.clock import Clock
        from b2bua.transport.listener import Listener

        stack = SipStack()
        server = SipServer(stack, lambda: None, clock=Clock(), limits=StreamLimits(max_pending_dns=1))
        await server.start([Listener("udp", "127.0.0.1", free_port())])
        try:
            dest = receiver.getsockname()[1]
            server.send(b"first", Peer("udp", "localhost", dest))
            server.send(b"second", Peer("udp", "localhost", dest))
            server.send(b"elsewhere", Peer("udp", "elsewhere.invalid", dest))
            pending = server.pending_dns
            got: list[bytes] = []
            loop = asyncio.get_running_loop()
            while len(got) < 2:
                got.append(await asyncio.wait_for(loop.sock_recv(receiver, 100), 10))
            return got, dict(server.connections.hits), pending
        finally:
            await server.close()
            receiver.close()

    got, hits, pending = asyncio.run(run())
    assert got == [b"first", b"second"] and hits == {"dns_pending": 1} and pending == 1
