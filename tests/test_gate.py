"""The front gate (b2bua/sip/gate.py): scanners dropped, per-source rates, bans after failed logins, every table
bounded; on a fake clock, in the sans-I/O stack (a refused request costs no transaction), and against a
running B2BUA over UDP (scanners get no answer, a brute-forcing address is banned, listed and lifted with
`b2bua bans`)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import ROOT, B2BUAProcess, free_port, write_config
from sipmsg import request, status_of

from b2bua.sip.auth import answer_challenge
from b2bua.sip.events import Peer
from b2bua.sip.gate import Gate, GateConfig, Rate
from b2bua.sip.message import Request, Response, parse_message
from b2bua.sip.stack import SipStack

TRUNK = "192.0.2.0/24"
OUTSIDER, CARRIER = "203.0.113.9", "192.0.2.7"


def _req(method: str = "INVITE", agent: str | None = None, n: int = 1) -> Request:
    extra = (f"User-Agent: {agent}",) if agent else ()
    msg = parse_message(request(method, branch=f"z9hG4bKg{n}", call_id=f"g{n}@x", extra=extra))
    assert isinstance(msg, Request)
    return msg


def _gate(**kw: object) -> Gate:
    return Gate(GateConfig(trusted=(ipaddress.ip_network(TRUNK),), **kw))  # type: ignore[arg-type]


def test_scanners_from_outside_are_dropped_and_a_trunk_is_not_judged_by_its_user_agent() -> None:
    gate = _gate()
    for agent in ("friendly-scanner", "sipvicious-0.3", "SIPCLI/v1.8", "VaxSIPUserAgent/3.1"):
        refusal = gate.check(_req("OPTIONS", agent), OUTSIDER, 0.0)
        assert refusal is not None and (refusal.reason, refusal.status) == ("scanner", None)
    assert gate.check(_req("OPTIONS", "Zoiper rv2.10"), OUTSIDER, 0.0) is None
    assert gate.check(_req("OPTIONS", "friendly-scanner"), CARRIER, 0.0) is None
    assert gate.stats["refused:scanner"] == 4


def test_per_source_rates_drop_outsiders_and_tell_a_trunk_to_retry() -> None:
    gate = _gate(untrusted_rates={c: Rate(5, 10) for c in ("INVITE", "REGISTER", "OPTIONS", "other")},
                 trusted_rates={c: Rate(100, 200) for c in ("INVITE", "REGISTER", "OPTIONS", "other")})
    passed = sum(gate.check(_req(n=i), OUTSIDER, 0.0) is None for i in range(50))
    assert passed == 10  # the burst, then nothing at the same instant
    assert gate.check(_req("OPTIONS"), OUTSIDER, 0.0) is None  # each method class has its own bucket
    assert gate.check(_req("INVITE"), "203.0.113.10", 0.0) is None  # and each address
    assert sum(gate.check(_req(n=i), OUTSIDER, 1.0) is None for i in range(50)) == 5  # 5 a second after it
    assert gate.stats["refused:rate:INVITE"] == 40 + 45
    trunk = [gate.check(_req(n=i), CARRIER, 2.0) for i in range(250)]
    assert sum(r is None for r in trunk) == 200
    over = next(r for r in trunk if r is not None)
    assert (over.status, over.retry_after) == (503, 5)  # a carrier is told, not ignored


def test_new_calls_beyond_capacity_or_during_overload_get_a_stateless_503() -> None:
    gate = _gate(max_new_calls_per_s=100.0)
    verdicts = [gate.check(_req(n=i), CARRIER, 0.5) for i in range(300)]
    assert sum(v is None for v in verdicts) == 100  # a second's worth at once, then none
    refused = [v for v in verdicts if v is not None]
    assert {(v.reason, v.status, v.retry_after) for v in refused} == {("capacity", 503, 5)}
    assert sum(gate.check(_req(n=i), CARRIER, 1.5) is None for i in range(300)) == 100  # 100 a second after it
    assert gate.check(_req("OPTIONS"), CARRIER, 1.5) is None  # only new calls are counted
    gate.shedding = True  # the event loop runs late
    shed = gate.check(_req(n=999), CARRIER, 10.0)
    assert shed is not None and (shed.reason, shed.status) == ("overload", 503)
    assert gate.check(_req("REGISTER"), CARRIER, 10.0) is None
    gate.shedding = False
    assert gate.check(_req(n=1000), CARRIER, 10.0) is None
    assert gate.stats["refused:capacity"] == 400 and gate.stats["refused:overload"] == 1


def test_outsiders_flooding_invites_never_take_the_trunks_capacity() -> None:
    """Outsiders over their own rate count for nothing, and all of them together get a tenth of the capacity:
    the carrier's calls keep the rest (before, two flooders took it all and the trunk's calls got 503)."""
    gate = _gate(max_new_calls_per_s=100.0)
    for n in range(2000):  # 2,000 INVITEs at one instant from 200 addresses, 10 each (their burst)
        gate.check(_req(n=n), f"203.0.113.{n % 200}", 0.5)
    assert gate.stats["refused:capacity"] == 2000 - 10  # a tenth of 100 let in: nine tenths left
    trunk = [gate.check(_req(n=i), CARRIER, 0.5) for i in range(100)]
    assert sum(v is None for v in trunk) == 90
    one = _gate(max_new_calls_per_s=100.0)
    for n in range(5000):  # one address far over its rate: dropped, and it takes no capacity at all
        one.check(_req(n=n), OUTSIDER, 0.5)
    assert one.stats["refused:rate:INVITE"] == 5000 - 10 and one.stats["refused:capacity"] == 0
    assert sum(one.check(_req(n=i), CARRIER, 0.5) is None for i in range(100)) == 100 - 10


def test_failed_logins_ban_an_outsider_until_the_ban_ends_or_is_lifted() -> None:
    gate = _gate(ban_after=3, window_s=60.0, ban_s=600.0)
    assert not gate.auth_failed(OUTSIDER, 0.0) and not gate.auth_failed(OUTSIDER, 61.0)  # the first one expired
    assert not gate.auth_failed(OUTSIDER, 70.0)
    assert gate.auth_failed(OUTSIDER, 80.0)  # the third within a minute
    assert [(b.host, b.until) for b in gate.bans(81.0)] == [(OUTSIDER, 680.0)]
    refusal = gate.check(_req("REGISTER"), OUTSIDER, 100.0)
    assert refusal is not None and (refusal.reason, refusal.status) == ("banned", None)
    assert gate.check(_req("REGISTER"), OUTSIDER, 681.0) is None and gate.bans(681.0) == []  # served its time
    for t in (700.0, 701.0, 702.0):
        gate.auth_failed(OUTSIDER, t)
    assert gate.lift(OUTSIDER) and not gate.lift(OUTSIDER)
    assert gate.check(_req("REGISTER", n=9), OUTSIDER, 703.0) is None
    for t in range(10):
        assert not gate.auth_failed(CARRIER, float(t))  # a trunk is never banned: its calls would all fail
    assert gate.stats["bans"] == 2 and gate.stats["bans_lifted"] == 1 and gate.stats["bans_expired"] == 1


def test_what_outsiders_can_make_the_gate_remember_is_bounded() -> None:
    gate = _gate(max_sources=100, max_bans=10, ban_after=1)
    for i in range(1000):
        gate.check(_req(n=i), f"198.51.{i // 256}.{i % 256}", 0.0)
        gate.auth_failed(f"198.51.{i // 256}.{i % 256}", 0.0)
    assert gate.tracked == 100 and gate.stats["sources_evicted"] == 900
    assert len(gate.bans(1.0)) == 10 and gate.stats["bans_evicted"] == 990


def test_a_refused_request_costs_the_stack_no_transaction() -> None:
    stack = SipStack()
    stack.gate = _gate(untrusted_rates={c: Rate(1, 1) for c in ("INVITE", "REGISTER", "OPTIONS", "other")},
                       trusted_rates={c: Rate(1, 1) for c in ("INVITE", "REGISTER", "OPTIONS", "other")})
    outsider, carrier = Peer("udp", OUTSIDER, 5060), Peer("udp", CARRIER, 5060)
    stack.receive(request("INVITE", branch="z9hG4bKa1", call_id="a1"), outsider, 0.0)
    assert stack.transaction_count == 1 and stack.next_event() is not None  # within the rate
    stack.receive(request("INVITE", branch="z9hG4bKa2", call_id="a2"), outsider, 0.0)
    assert stack.transaction_count == 1 and stack.next_event() is None and stack.datagrams_to_send() == []
    stack.receive(request("INVITE", branch="z9hG4bKa1", call_id="a1"), outsider, 0.1)  # a retransmission
    assert stack.stats["retransmissions_received"] == 1  # matched its transaction: never rate-limited
    stack.receive(request("INVITE", branch="z9hG4bKc1", call_id="c1"), carrier, 0.0)
    stack.next_event()
    stack.receive(request("INVITE", branch="z9hG4bKc2", call_id="c2"), carrier, 0.0)
    (answer, _), = stack.datagrams_to_send()
    resp = parse_message(answer)
    assert isinstance(resp, Response) and resp.status == 503 and resp.get("retry-after") == "5"
    assert stack.transaction_count == 2  # the 503 was stateless
    stack.receive(request("BYE", branch="z9hG4bKb1", call_id="a1", to_tag="t1"), outsider, 0.0)
    assert stack.next_event() is not None  # in-dialog requests are the dialog's business, not the gate's


# -- against a running B2BUA -----------------------------------------------------------------------------
def _outsider_config(tmp_path: Path) -> Path:
    """The shipped config with the lab trunk narrowed to 127.0.0.1: 127.0.0.9 is an outsider; a staff device."""
    cfg = write_config(tmp_path / "config")
    routing = yaml.safe_load((cfg.parent / "routing.yaml").read_text())
    for trunk in routing["trunks"]:
        if trunk["name"] == "lab":
            trunk["addresses"] = ["127.0.0.1/32"]
    (cfg.parent / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    data = yaml.safe_load(cfg.read_text())
    data["security"] = {"ban_after_auth_failures": 5, "ban_s": 600}
    data["admin"] = {"socket": str(tmp_path / "ctl.sock")}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    return cfg


def _exchange(sock: socket.socket, data: bytes, port: int, wait: float = 1.0) -> bytes | None:
    sock.sendto(data, ("127.0.0.1", port))
    sock.settimeout(wait)
    try:
        while True:
            got, _ = sock.recvfrom(65535)
            if status_of(got) != 100:
                return got
    except TimeoutError:
        return None


def _register(sock: socket.socket, n: int, authorization: str | None = None) -> bytes:
    host, lport = sock.getsockname()
    extra = (f"Authorization: {authorization}",) if authorization else ()
    return request("REGISTER", uri="sip:127.0.0.1", branch=f"z9hG4bKreg{n}", call_id="reg@127.0.0.9", cseq=n,
                   via_value=f"SIP/2.0/UDP {host}:{lport};branch=z9hG4bKreg{n}", extra=(
                       "Contact: <sip:staff1001@127.0.0.9:5099>", "Expires: 60", *extra))


def test_a_running_b2bua_ignores_scanners_and_bans_a_password_guesser(tmp_path: Path) -> None:
    cfg = _outsider_config(tmp_path)
    port = free_port()
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
    ctl = [sys.executable, "-m", "b2bua", "bans", "--config", str(cfg)]
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.9", 0))
        via = f"SIP/2.0/UDP 127.0.0.9:{sock.getsockname()[1]};branch=z9hG4bKscan1"
        scan = request("OPTIONS", uri=f"sip:100@127.0.0.1:{port}", extra=("User-Agent: friendly-scanner",),
                       via_value=via)
        assert _exchange(sock, scan, port) is None  # not a word to a scanner
        plain = scan.replace(b"friendly-scanner", b"Linphone/5.2").replace(b"z9hG4bKscan1", b"z9hG4bKplain1")
        assert status_of(_exchange(sock, plain, port) or b"") == 200  # the same request from a softphone
        # a password guesser: challenged, then wrong answers until banned
        first = _exchange(sock, _register(sock, 1), port)
        assert first is not None and status_of(first) == 401
        challenge = parse_message(first)
        assert isinstance(challenge, Response)
        for n in range(2, 7):
            req = parse_message(_register(sock, n))
            assert isinstance(req, Request)
            _, auth = answer_challenge(req, challenge, "staff1001", "not-the-password")  # type: ignore[misc]
            got = _exchange(sock, _register(sock, n, auth), port)
            assert got is not None and status_of(got) == 401, n  # answered until the fifth failure ...
        assert _exchange(sock, _register(sock, 7), port) is None  # ... then nothing at all
        listed = subprocess.run(ctl, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert listed.returncode == 0 and "127.0.0.9" in listed.stdout and "failed authentications" in listed.stdout
        lifted = subprocess.run([*ctl, "--lift", "127.0.0.9"], capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert lifted.returncode == 0, lifted.stderr
        assert status_of(_exchange(sock, _register(sock, 8), port) or b"") == 401  # heard again
        assert subprocess.run([*ctl, "--lift", "127.0.0.9"], capture_output=True, text=True, cwd=ROOT,
                              timeout=30).returncode == 1  # no ban left to lift
        sock.close()
        assert "banned for 600 s" in proc.log()
    finally:
        proc.stop()


@pytest.mark.parametrize("agent", ["sipvicious", "friendly-scanner"])
def test_the_metrics_count_what_the_gate_refused(tmp_path: Path, agent: str) -> None:
    cfg = _outsider_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    metrics = free_port()
    data["metrics"] = {"address": f"127.0.0.1:{metrics}"}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    port = free_port()
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.9", 0))
        for i in range(3):
            sock.sendto(request("INVITE", uri=f"sip:100@127.0.0.1:{port}", branch=f"z9hG4bKs{i}", call_id=f"s{i}",
                                extra=(f"User-Agent: {agent}",)), ("127.0.0.1", port))
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline and 'b2bua_gate_total{what="refused:scanner"} 3.0' not in text:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
            time.sleep(0.1)
        assert 'b2bua_gate_total{what="refused:scanner"} 3.0' in text
        assert "b2bua_sip_transactions 0.0" in text  # nothing was kept of them
        sock.close()
    finally:
        proc.stop()
