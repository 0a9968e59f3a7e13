"""Promises the README makes that an audit found unguarded (issue #13): each test fails when its promise
breaks. The 400's Warning, the Retry-After of a 503 for want of media ports, a trunk's call limit, weighted
gateway choice, JSON log lines, non-audio streams refused with port 0, the event-loop lag that turns on 503,
and the hold-direction rule."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flows import SDP_A, A, Harness, a_request
from harness import ROOT

from b2bua.call.media import answer_direction
from b2bua.clock import Clock
from b2bua.config import Gateway, load_config
from b2bua.routing.router import Router, _ordered
from b2bua.sip.events import Peer
from b2bua.sip.message import parse_message
from b2bua.sip.registrar import Registrar
from b2bua.sip.stack import SipStack, StackConfig
from b2bua.transport.server import SipServer
from media.api import PortsExhausted


def test_a_malformed_request_gets_400_with_a_warning_naming_the_problem() -> None:
    stack = SipStack(StackConfig(local={"udp": ("127.0.0.1", 5060)}))
    bad = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x\r\n"
           b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: w@x\r\n"
           b"CSeq: notanumber INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    stack.receive(bad, Peer("udp", "192.0.2.1", 5060), 0.0)
    ((data, _),) = stack.datagrams_to_send()
    resp = parse_message(data)
    assert resp.status == 400  # type: ignore[union-attr]
    warning = resp.get("warning")
    assert warning is not None and warning.startswith('399 b2bua "') and "CSeq" in warning, warning


class _NoPorts:
    def allocate(self, session: str, leg: str) -> tuple[str, int]:
        raise PortsExhausted("no free RTP port pair")

    def delete(self, session: str) -> dict:
        return {}


def test_no_media_ports_is_503_with_retry_after() -> None:
    h = Harness()
    h.b2bua.engine = _NoPorts()  # type: ignore[assignment]
    h.from_a(a_request(h, "INVITE", cseq=1, body=SDP_A))
    final = [s for s in h.take(A) if s.status and s.status >= 200]
    assert [s.status for s in final] == [503]
    assert final[0].msg.get("retry-after") == "5" and h.b2bua.calls == {}


def _carrier_invite(n: int) -> Any:
    return parse_message((f"INVITE sip:0221332200@192.0.2.1 SIP/2.0\r\n"
                          f"Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK{n}\r\n"
                          f"From: <sip:01012345678@203.0.113.10>;tag={n}\r\nTo: <sip:0221332200@192.0.2.1>\r\n"
                          f"Call-ID: limit-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())


def test_a_trunks_call_limit_refuses_the_call_over_it_until_one_ends() -> None:
    router = Router(load_config(ROOT / "config" / "b2bua.yaml"), Registrar())
    carrier = Peer("udp", "203.0.113.10", 5060)
    limit = router.trunks["carrier-a"].max_calls
    routes = [router(_carrier_invite(n), carrier, n * 10.0) for n in range(limit)]  # slow enough for max_cps
    assert all(not hasattr(r, "status") for r in routes)
    over = router(_carrier_invite(limit), carrier, limit * 10.0)
    assert getattr(over, "status", None) == 503 and over.get("retry-after") == "2"  # type: ignore[union-attr]
    router.release(routes[0])  # type: ignore[arg-type]
    assert not hasattr(router(_carrier_invite(limit + 1), carrier, limit * 10.0 + 10), "status")


def test_weighted_gateways_are_chosen_by_weight_and_weight_zero_only_last() -> None:
    a, b, spare = Gateway(uri="sip:a", weight=3), Gateway(uri="sip:b", weight=1), Gateway(uri="sip:spare", weight=0)
    firsts = Counter(_ordered([spare, a, b], "weighted")[0].uri for _ in range(4000))
    assert firsts["sip:spare"] == 0
    assert 0.70 < firsts["sip:a"] / 4000 < 0.80  # 3:1 (the bound is ten standard deviations wide)
    assert all(_ordered([spare, a, b], "weighted")[-1] is spare for _ in range(100))
    assert [g.uri for g in _ordered([a, b, spare], "ordered")] == ["sip:a", "sip:b", "sip:spare"]


def test_json_log_lines_carry_the_calls_ids(capsys: Any) -> None:
    from b2bua.call.model import CallLog
    from b2bua.cli import _setup_logging

    _setup_logging("info", "json")
    try:
        CallLog(logging.getLogger("b2bua.call"), {"call": "c123", "sip_call_id": "abc@host"}).info("start from=%s", "x")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.basicConfig(level="WARNING", force=True, stream=io.StringIO())
    record = json.loads(line)
    assert record["msg"] == "call c123 [abc@host] start from=x" and record["level"] == "info"
    assert record["logger"] == "b2bua.call"
    assert record["call"] == "c123" and record["sip_call_id"] == "abc@host" and record["ts"].endswith("Z")


def test_text_log_lines_are_loggings_own_format_with_the_time_formatted_once_a_second() -> None:
    from b2bua.cli import _TextFormatter

    ours, stock = _TextFormatter(), logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("b2bua.call", logging.INFO, "", 0, "start from=%s", ("x",), None)
    # within a second, across one, across a minute, and back (another thread's older record)
    for created in (1733300000.123, 1733300000.999, 1733300001.0, 1733300061.042, 1733300000.5):
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == stock.format(record)


def test_a_video_stream_is_answered_with_port_0_and_audio_flows() -> None:
    from test_protection import FakeEngine

    from b2bua.call.media import MediaSession

    session = MediaSession(FakeEngine(), "c1", {"a": True, "b": True})  # type: ignore[arg-type]
    session.allocate()
    offer = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
             b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
    b_offer = session.offer("a", offer).decode()
    assert "m=video" not in b_offer and "m=audio 0 " not in b_offer  # the callee is offered audio only
    answer = (b"v=0\r\no=- 2 2 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
              b"m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    a_answer = session.answer("b", answer).decode()
    # RFC 3264 §6: as many m-lines as the offer, the refused one with port 0, in the offer's order
    lines = [x for x in a_answer.split("\r\n") if x.startswith("m=")]
    assert len(lines) == 2 and lines[0].startswith("m=audio ") and not lines[0].startswith("m=audio 0 ")
    assert lines[1].startswith("m=video 0 ")


def test_hold_is_never_answered_sendrecv() -> None:
    assert answer_direction("sendonly", "sendrecv") == "recvonly"  # the far end said sendrecv: we cannot
    assert answer_direction("sendonly", "inactive") == "inactive"
    assert answer_direction("recvonly", "sendrecv") == "sendonly"
    assert answer_direction("inactive", "sendrecv") == "inactive"
    assert answer_direction("sendrecv", "sendonly") == "sendonly"


@pytest.mark.parametrize("excused", [False, True])
def test_event_loop_lag_turns_overload_on_and_off(excused: bool) -> None:
    """A loop held up past ``overload_lag`` tells call control (new INVITEs get 503), and clears it; unless
    the process held it on purpose (a full GC pass, excused: lateness, not overload)."""
    flags: list[bool] = []

    async def run() -> None:
        server = SipServer(SipStack(), lambda: None, clock=Clock(), overload_lag=0.2, on_overload=flags.append)
        await server.start([])
        try:
            await asyncio.sleep(0.3)
            time.sleep(0.8)  # the loop held up (a stand-in for a burst of work, or a full GC pass)
            if excused:
                server.excuse(0.8)
            for _ in range(20 if excused else 100):
                await asyncio.sleep(0.05)
                if flags == [True, False]:
                    break
        finally:
            await server.close()

    asyncio.run(run())
    assert flags == ([] if excused else [True, False])


def test_readme_names_no_test_that_does_not_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    import re

    named = set(re.findall(r"`(test_[a-z0-9_]+\.py)`", text))
    missing = [n for n in named if not (Path(__file__).parent / n).exists()]
    assert named and not missing, missing


def test_the_stacks_timers_share_the_loops_wake_ups_on_a_10_ms_grid() -> None:
    """Each call leaves five or six transaction timers behind (RFC 3261 §17, RFC 6026); armed exactly, each
    would wake the process on its own. The driver arms the loop on a 10 ms grid, rounded up: deadlines in
    one slot share a wake-up, and a deadline added inside the slot already armed does not re-arm."""
    from b2bua.transport.server import TIMER_GRID, on_grid

    picks = random.Random(7)
    spread = [picks.uniform(0, 1e7) for _ in range(20000)] + [k * TIMER_GRID for k in range(3701500, 3702500)]
    for when in (0.0, 0.001, 0.07, 0.3, 12345.678901, 1e6 + 0.00999, 37016.09, *spread):
        slot = on_grid(when)
        assert when <= slot < when + TIMER_GRID + 1e-9
        assert on_grid(slot) == slot, when  # a grid point stays put (a loop clock's value once failed this)
    ran: list[float] = []

    async def run() -> tuple[float | None, bool, float | None]:
        server = SipServer(SipStack(), lambda: None, clock=Clock())
        await server.start([])
        try:
            base = on_grid(server.tick()) + 1.0
            server.stack.timers.call_at(base + 0.004, ran.append, 1.0)
            server._run()
            armed, first = server._timer_when, server._timer
            server.stack.timers.call_at(base + 0.001, ran.append, 2.0)  # earlier, in the same slot
            server._run()
            return armed, server._timer is first, server._timer_when
        finally:
            await server.close()

    armed, kept, still = asyncio.run(run())
    assert armed is not None and armed == still and kept  # one loop timer for both deadlines
    assert armed == on_grid(armed) and armed > 0
    assert not ran  # nothing is due yet
