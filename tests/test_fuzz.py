"""Mutated wire input (scripts/bench/fuzz.py: SIP seeded from RFC 4475 and well-formed requests, RTP, RTCP and
RFC 4733 packets): the sans-I/O stack and the media parsers take tens of thousands of cases without an
exception, and a running B2BUA with a call up takes thousands, keeps its memory, logs no unhandled
exception and completes a new call afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import bench_module
from sipmsg import request

from b2bua.sip.events import Peer, RequestReceived
from b2bua.sip.gate import Gate
from b2bua.sip.stack import SipStack, make_response
from media import rtp

fuzz = bench_module("fuzz")  # the fuzzer the benchmark runs at scale

CASES = 20_000


def test_the_cases_are_repeatable_and_really_mutated() -> None:
    first, again = list(fuzz.cases(200, 7, True)), list(fuzz.cases(200, 7, True))
    assert first == again and list(fuzz.cases(200, 8, True)) != first
    seeds = set(fuzz.sip_seeds())
    assert sum(c not in seeds for c in first) > 190 and len(set(first)) > 190


def test_the_stack_survives_mutated_sip_and_still_serves() -> None:
    stack = SipStack()
    stack.gate = Gate()
    peer = Peer("udp", "198.51.100.7", 5060)
    for i, data in enumerate(fuzz.cases(CASES, 1, True)):
        stack.receive(data, peer, i * 0.001)  # raises nothing: every problem is a 400, a drop or a transaction
        while (event := stack.next_event()) is not None:
            if isinstance(event, RequestReceived) and event.transaction is not None:  # the TU answers
                stack.respond(event.transaction, make_response(event.request, 500), i * 0.001)
        stack.datagrams_to_send()
        stack.handle_timer(i * 0.001)
    assert stack.stats["parse_errors"] > CASES // 10  # the cases did reach the parser's error paths
    stack.handle_timer(CASES * 0.001 + 64)  # every transaction the cases opened times out ...
    assert stack.transaction_count == 0  # ... and is gone
    while stack.next_event() is not None:  # (their Timer H reports)
        pass
    stack.receive(request("OPTIONS", branch="z9hG4bKafter", call_id="after"), Peer("udp", "192.0.2.1", 5060), 100)
    event = stack.next_event()
    assert isinstance(event, RequestReceived) and event.request.method == "OPTIONS"


def test_the_media_parsers_survive_mutated_rtp_rtcp_and_events() -> None:
    rejected = 0
    for data in fuzz.cases(CASES, 2, False):
        try:
            rtp.check(data)
            rtp.payload_offset(data)
        except rtp.RtpError:
            rejected += 1
        rtp.rewrite_rtcp(data, 0x1111, {0x1234: 0x2222})  # None for what it cannot rewrite, never an exception
    assert 0 < rejected < CASES


@pytest.mark.slow
@pytest.mark.usefixtures("sipp_installed")
def test_a_running_b2bua_takes_thousands_of_mutated_packets_and_completes_a_call(tmp_path: Path) -> None:
    result = fuzz.fuzz_live(tmp_path, 3000, 3)
    assert result["alive"] and result["call_after"], result
    assert result["unhandled"] == [], result["unhandled"]
    assert result["sip"] == 3000 and result["media"] >= 2900
    assert int(result["rss1"]) < int(result["rss0"]) * 1.25 + 8192, result  # type: ignore[call-overload]
