"""RFC 3261 §17 (updated by RFC 6026) transaction timers and behaviour on a fake clock.

Nothing here sleeps or opens a socket: the harness feeds bytes into the sans-I/O
``SipStack`` with an explicit ``now`` and fires every timer exactly at the
deadline ``get_timer()`` reports, recording what the stack sends and emits and
when. Times in test names and comments are milliseconds; T1/T2/T4 come from
``StackConfig(timers=TimerConfig(...))`` and the timer tests run with the RFC
defaults (T1=500 ms, T2=4000 ms, T4=5000 ms) and with non-default values.

Every test ends with ``assert_no_leaks``: after running the clock far past the
last timer, no transaction, pending 2xx, merge entry or live timer is left.

Tests marked ``xfail(strict=True, reason="BUG: ...")`` show the RFC behaviour
the stack gets wrong today; they start passing (and so fail as XPASS) once the
stack is fixed, at which point the marker must be removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sipmsg as m

from b2bua.sip.events import (
    AckTimeout,
    CancelReceived,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
    TransportError,
)
from b2bua.sip.message import Request, parse_message
from b2bua.sip.stack import SipStack, StackConfig, make_response
from b2bua.sip.timers import TimerConfig
from b2bua.sip.transaction import ClientTransaction, ServerTransaction, State

#: The remote UAC that sends us requests (server transaction tests).
UAC_UDP = Peer("udp", m.UAC_HOST, m.UAC_PORT)
UAC_TCP = Peer("tcp", m.UAC_HOST, m.UAC_PORT, 7)
#: The remote UAS our client transactions talk to.
UAS_UDP = Peer("udp", "198.51.100.20", 5060)
UAS_TCP = Peer("tcp", "198.51.100.20", 5060, 9)

#: (T1, T2, T4) in ms: RFC 3261 defaults and non-default values.
DEFAULT = (500, 4000, 5000)
TIMERS = [
    pytest.param((500, 4000, 5000), id="T1=500ms-T2=4000ms-T4=5000ms"),
    pytest.param((100, 400, 1000), id="T1=100ms-T2=400ms-T4=1000ms"),
    pytest.param((250, 8000, 2500), id="T1=250ms-T2=8000ms-T4=2500ms"),
]


# -- harness -------------------------------------------------------------------------------------
@dataclass
class Sent:
    at: float
    data: bytes
    peer: Peer

    @property
    def ms(self) -> int:
        return round(self.at * 1000)


class Harness:
    """A SipStack on a fake clock; timers fire exactly at their deadlines."""

    def __init__(self, timers_ms: tuple[int, int, int] = DEFAULT):
        t1, t2, t4 = (v / 1000 for v in timers_ms)
        self.t1_ms, self.t2_ms, self.t4_ms = timers_ms
        self.stack = SipStack(StackConfig(
            timers=TimerConfig(t1=t1, t2=t2, t4=t4),
            local={"udp": ("127.0.0.1", 5060), "tcp": ("127.0.0.1", 5060)},
        ))
        self.now = 0.0
        self.sent: list[Sent] = []
        self.events: list[tuple[float, object]] = []

    @property
    def b_ms(self) -> int:
        """Timers B, F, H, J, L, M: 64*T1."""
        return 64 * self.t1_ms

    # driving
    def _collect(self) -> None:
        for data, peer in self.stack.datagrams_to_send():
            self.sent.append(Sent(self.now, data, peer))
        while (ev := self.stack.next_event()) is not None:
            self.events.append((self.now, ev))

    def advance(self, ms: float) -> None:
        """Run the clock to ``ms`` (absolute), firing each timer at its own deadline."""
        t = ms / 1000
        assert t >= self.now - 1e-9, "the fake clock never goes back"
        while (deadline := self.stack.get_timer()) is not None and deadline <= t:
            self.now = max(self.now, deadline)
            self.stack.handle_timer(self.now)
            self._collect()
        self.now = max(self.now, t)
        self._collect()

    def _at(self, at_ms: float | None) -> None:
        if at_ms is not None:
            self.advance(at_ms)

    def receive(self, data: bytes, peer: Peer, at: float | None = None) -> None:
        self._at(at)
        self.stack.receive(data, peer, self.now)
        self._collect()

    def send_request(self, req: Request, peer: Peer, at: float | None = None) -> ClientTransaction:
        self._at(at)
        txn = self.stack.send_request(req, peer, self.now)
        self._collect()
        return txn

    def respond(self, txn: ServerTransaction, status: int, at: float | None = None,
                to_tag: str | None = "uas-tag") -> bytes:
        self._at(at)
        self.stack.respond(txn, make_response(txn.request, status, to_tag=to_tag), self.now)
        before = len(self.sent)
        self._collect()
        out = self.sent[before:]
        return out[-1].data if out else b""

    def cancel(self, txn: ClientTransaction, at: float | None = None) -> None:
        self._at(at)
        self.stack.cancel(txn, self.now)
        self._collect()

    def transport_error(self, peer: Peer, at: float | None = None) -> None:
        self._at(at)
        self.stack.transport_error(peer, self.now)
        self._collect()

    def run_until_empty(self, limit_ms: float) -> int:
        """Step timer by timer until no transaction is left; return that time in ms."""
        self._collect()
        while self.stack.transaction_count:
            deadline = self.stack.get_timer()
            assert deadline is not None and deadline * 1000 <= limit_ms + 1e-6, (
                f"{self.stack.transaction_count} transaction(s) still alive at {self.now * 1000:.0f} ms"
            )
            self.advance(deadline * 1000)
        return round(self.now * 1000)

    # inspecting
    def sent_where(self, pred, since_ms: float = -1) -> list[Sent]:
        return [s for s in self.sent if s.at * 1000 > since_ms and pred(s.data)]

    def requests(self, method: str, since_ms: float = -1) -> list[Sent]:
        return self.sent_where(lambda d: m.method_of(d) == method, since_ms)

    def responses(self, status: int, since_ms: float = -1) -> list[Sent]:
        return self.sent_where(lambda d: m.status_of(d) == status, since_ms)

    def of(self, kind: type) -> list:
        return [ev for _, ev in self.events if isinstance(ev, kind)]

    def times_of(self, kind: type) -> list[int]:
        return [round(t * 1000) for t, ev in self.events if isinstance(ev, kind)]

    def take_events(self) -> list:
        out = [ev for _, ev in self.events]
        self.events.clear()
        return out

    def assert_no_leaks(self) -> None:
        """Run the clock 10 minutes on and check that nothing is left behind."""
        self.advance(self.now * 1000 + 600_000)
        stack = self.stack
        assert stack.transaction_count == 0, (stack._client, stack._server)
        assert stack._pending_2xx == {}
        assert stack._merge == {}
        assert stack.get_timer() is None, "a live timer outlived every transaction"


def backoff_ms(t1: int, t2: int | None, end: int, first: int | None = None, start: int = 0) -> list[int]:
    """Fire times (ms) of a timer that starts at T1 and doubles (capped at T2 if given), before ``end``."""
    out: list[int] = []
    interval = t1
    t = start + (first if first is not None else t1)
    while t < end:
        out.append(t)
        interval = interval * 2 if t2 is None else min(interval * 2, t2)
        t += interval
    return out


def new_request(method: str, **kw) -> Request:
    """A request as the TU hands it to ``send_request`` (the stack adds the Via)."""
    req = parse_message(m.request(method, with_via=False, **kw))
    assert isinstance(req, Request)
    return req


def server_txn(h: Harness, data: bytes, peer: Peer = UAC_UDP, at: float | None = None) -> ServerTransaction:
    """Deliver a new request and return the server transaction the TU got with it."""
    h.receive(data, peer, at)
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], RequestReceived), evs
    assert evs[0].transaction is not None
    return evs[0].transaction


# =================================================================================================
# INVITE client transaction (§17.1.1, RFC 6026 §8.4)
# =================================================================================================
def test_timer_a_invite_udp_retransmits_at_500_1500_3500_7500_15500_31500ms_timer_b_at_32000ms():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    assert txn.state is State.CALLING
    h.advance(31_999)
    assert h.of(TransactionTimeout) == []
    h.advance(32_000)
    invites = h.requests("INVITE")
    # Original at 0 ms, then Timer A: T1, +2T1, +4T1, ... (no T2 cap for INVITE)
    assert [s.ms for s in invites] == [0, 500, 1500, 3500, 7500, 15500, 31500]
    assert all(s.data == invites[0].data and s.peer == UAS_UDP for s in invites)
    # Timer B = 64*T1 = 32000 ms while Calling
    assert h.times_of(TransactionTimeout) == [32_000]
    assert h.of(TransactionTimeout)[0].transaction is txn
    assert txn.state is State.TERMINATED
    assert h.stack.transaction_count == 0
    h.assert_no_leaks()
    assert len(h.requests("INVITE")) == 7


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_a_doubles_from_configured_t1_and_timer_b_is_64_t1(timers):
    h = Harness(timers)
    h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    h.advance(h.b_ms - 1)
    assert h.of(TransactionTimeout) == []
    assert h.stack.transaction_count == 1
    h.advance(h.b_ms)
    assert [s.ms for s in h.requests("INVITE")] == [0] + backoff_ms(h.t1_ms, None, h.b_ms)
    assert h.times_of(TransactionTimeout) == [h.b_ms]
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_a_not_used_over_tcp_but_timer_b_fires_at_64_t1(timers):
    h = Harness(timers)
    txn = h.send_request(new_request("INVITE", transport="TCP"), UAS_TCP, at=0)
    h.advance(h.b_ms - 1)
    assert [s.ms for s in h.requests("INVITE")] == [0]  # no retransmission over a reliable transport
    assert h.stack.transaction_count == 1
    h.advance(h.b_ms)
    assert h.times_of(TransactionTimeout) == [h.b_ms]
    assert h.of(TransactionTimeout)[0].transaction is txn
    h.assert_no_leaks()


def test_timer_b_does_not_fire_after_a_1xx():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.receive(m.response(invite, 180, to_tag="uas-1"), UAS_UDP, at=200)
    assert txn.state is State.PROCEEDING
    assert [type(e) for e in h.take_events()] == [ResponseReceived]
    # Ringing for 200 s: no Timer B timeout, no Timer A retransmission (500 ms would have been the first).
    h.advance(200_000)
    assert h.of(TransactionTimeout) == []
    assert [s.ms for s in h.requests("INVITE")] == [0]
    assert txn.state is State.PROCEEDING
    # The final response still completes it normally.
    h.receive(m.response(invite, 486, to_tag="uas-1"), UAS_UDP)
    assert txn.state is State.COMPLETED
    assert len(h.requests("ACK")) == 1
    assert h.run_until_empty(300_000) == 200_000 + 32_000  # Timer D
    h.assert_no_leaks()


def test_1xx_after_two_retransmissions_stops_timer_a():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.advance(2_000)  # retransmissions at 500 and 1500 ms
    h.receive(m.response(invite, 100), UAS_UDP, at=2_000)
    h.advance(40_000)  # 3500 ms would have been next; 32000 ms would have been Timer B
    assert [s.ms for s in h.requests("INVITE")] == [0, 500, 1500]
    assert h.of(TransactionTimeout) == []
    h.receive(m.response(invite, 200, to_tag="uas-1"), UAS_UDP, at=40_000)
    assert txn.state is State.ACCEPTED
    h.assert_no_leaks()


@pytest.mark.parametrize("status", [302, 404, 486, 503, 603])
def test_timer_d_udp_completed_lasts_32000ms_and_each_retransmitted_final_gets_the_ack_again(status):
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    final = m.response(invite, status, to_tag="uas-1")
    h.receive(final, UAS_UDP, at=100)
    assert txn.state is State.COMPLETED
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], ResponseReceived) and evs[0].response.status == status
    acks = h.requests("ACK")
    assert [(s.ms, s.peer) for s in acks] == [(100, UAS_UDP)]
    # Retransmissions of the final response (the UAS's Timer G) are each answered
    # with the same ACK, and never reach the TU again.
    for at in (600, 1_600, 3_600, 30_000):
        h.receive(final, UAS_UDP, at=at)
    acks = h.requests("ACK")
    assert [s.ms for s in acks] == [100, 600, 1_600, 3_600, 30_000]
    assert all(s.data == acks[0].data for s in acks)
    assert h.take_events() == []
    assert [s.ms for s in h.requests("INVITE")] == [0]  # Timer A stopped at the final response
    # Timer D: Completed lasts 32000 ms over UDP (100 + 32000 = 32100 ms).
    h.advance(32_099)
    assert h.stack.transaction_count == 1
    h.advance(32_100)
    assert h.stack.transaction_count == 0
    assert txn.state is State.TERMINATED
    # A final response arriving after Timer D is a stray: no ACK, no event.
    h.receive(final, UAS_UDP, at=33_000)
    assert len(h.requests("ACK")) == 5 and h.events == []
    assert h.of(TransactionTimeout) == []
    h.assert_no_leaks()


def test_timer_d_is_32000ms_even_with_t1_100ms():
    # RFC 3261 Table 4: Timer D is "> 32 s for UDP", not a multiple of T1.
    h = Harness((100, 400, 1000))
    h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    h.receive(m.response(h.sent[0].data, 486, to_tag="uas-1"), UAS_UDP, at=50)
    assert h.run_until_empty(100_000) == 32_050
    h.assert_no_leaks()


def test_timer_d_is_zero_over_tcp():
    h = Harness()
    txn = h.send_request(new_request("INVITE", transport="TCP"), UAS_TCP, at=0)
    h.receive(m.response(h.sent[0].data, 486, to_tag="uas-1"), UAS_TCP, at=100)
    assert len(h.requests("ACK")) == 1
    assert h.requests("ACK")[0].peer == UAS_TCP
    assert h.run_until_empty(100) == 100  # Terminated at once (the 0 ms Timer D)
    assert txn.state is State.TERMINATED
    h.assert_no_leaks()


def test_ack_for_non_2xx_is_built_per_17_1_1_3():
    h = Harness()
    routes = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    h.send_request(new_request("INVITE", cseq=314, routes=routes, body=b"v=0\r\n",
                               extra=("Content-Type: application/sdp", "Contact: <sip:alice@192.0.2.10>")),
                   UAS_UDP, at=0)
    invite = h.sent[0].data
    final = m.response(invite, 486, to_tag="callee-tag-9")
    h.receive(final, UAS_UDP, at=100)
    ack = h.requests("ACK")[0].data
    # Request-URI, Call-ID and From equal those of the INVITE.
    assert m.request_uri(ack) == m.request_uri(invite)
    assert m.header(ack, "call-id") == m.header(invite, "call-id")
    assert m.header(ack, "from") == m.header(invite, "from")
    # One single Via, equal to the INVITE's top Via (so the same branch).
    assert m.headers(ack, "via") == [m.top_via(invite)]
    assert m.branch_of(ack) == m.branch_of(invite)
    assert m.branch_of(ack).startswith("z9hG4bK")
    # To equals the To of the response being acknowledged (with its tag).
    assert m.header(ack, "to") == m.header(final, "to")
    assert m.to_tag(ack) == "callee-tag-9"
    # CSeq: same number, method ACK.
    assert m.header(ack, "cseq").split() == ["314", "ACK"]
    # The INVITE's Route header fields are carried over.
    assert m.headers(ack, "route") == list(routes)
    assert m.header(ack, "content-length") == "0"
    h.assert_no_leaks()


@pytest.mark.parametrize("transport,peer", [("UDP", UAS_UDP), ("TCP", UAS_TCP)])
@pytest.mark.parametrize("timers", TIMERS)
def test_timer_m_2xx_retransmissions_reach_tu_in_accepted_then_purged_at_64_t1(timers, transport, peer):
    h = Harness(timers)
    txn = h.send_request(new_request("INVITE", transport=transport), peer, at=0)
    invite = h.sent[0].data
    h.receive(m.response(invite, 180, to_tag="uas-1"), peer, at=10)
    ok = m.response(invite, 200, to_tag="uas-1")
    h.receive(ok, peer, at=20)
    assert txn.state is State.ACCEPTED  # RFC 6026 §8.4
    # The UAS core retransmits its 2xx; each one goes to the TU (it re-sends its ACK),
    # and a 2xx from another fork (other To tag) too.
    h.receive(ok, peer, at=20 + h.t1_ms)
    h.receive(m.response(invite, 200, to_tag="uas-2"), peer, at=20 + 2 * h.t1_ms)
    h.receive(ok, peer, at=20 + 3 * h.t1_ms)
    got = [ev for ev in h.take_events() if isinstance(ev, ResponseReceived)]
    assert [(ev.response.status, ev.response.to_tag) for ev in got] == [
        (180, "uas-1"), (200, "uas-1"), (200, "uas-1"), (200, "uas-2"), (200, "uas-1")]
    assert all(ev.transaction is txn for ev in got)
    assert txn.state is State.ACCEPTED
    # The transaction never ACKs a 2xx itself (the TU does, out of transaction).
    assert h.requests("ACK") == []
    assert [s.ms for s in h.requests("INVITE")] == [0]
    # Timer M: purged 64*T1 after the first 2xx, with no event.
    assert h.run_until_empty(10 * h.b_ms) == 20 + h.b_ms
    assert txn.state is State.TERMINATED
    assert h.events == []
    # A 2xx retransmission after Timer M is a stray for the stack.
    h.receive(ok, peer)
    assert h.events == []
    h.assert_no_leaks()


# =================================================================================================
# Non-INVITE client transaction (§17.1.2)
# =================================================================================================
def test_timer_e_udp_retransmits_500_1500_3500_then_every_4000ms_and_timer_f_at_32000ms():
    h = Harness()
    txn = h.send_request(new_request("OPTIONS"), UAS_UDP, at=0)
    assert txn.state is State.TRYING
    h.advance(31_999)
    assert h.of(TransactionTimeout) == []
    h.advance(32_000)
    opts = h.requests("OPTIONS")
    # Timer E: T1, then doubling, capped at T2 = 4000 ms.
    assert [s.ms for s in opts] == [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500,
                                    23_500, 27_500, 31_500]
    assert all(s.data == opts[0].data for s in opts)
    # Timer F = 64*T1 = 32000 ms.
    assert h.times_of(TransactionTimeout) == [32_000]
    assert h.of(TransactionTimeout)[0].transaction is txn
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_e_doubles_capped_at_configured_t2_and_timer_f_is_64_t1(timers):
    h = Harness(timers)
    h.send_request(new_request("MESSAGE"), UAS_UDP, at=0)
    h.advance(h.b_ms - 1)
    assert h.of(TransactionTimeout) == []
    h.advance(h.b_ms)
    assert [s.ms for s in h.requests("MESSAGE")] == [0] + backoff_ms(h.t1_ms, h.t2_ms, h.b_ms)
    assert h.times_of(TransactionTimeout) == [h.b_ms]
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_e_is_t2_in_proceeding_and_timer_f_still_fires(timers):
    h = Harness(timers)
    txn = h.send_request(new_request("OPTIONS"), UAS_UDP, at=0)
    # A 100 at T1/2 (default: 250 ms): the pending Timer E still fires at T1 (500 ms) and
    # is then reset to T2 each time (default: 4500, 8500, ... 28500 ms).
    h.receive(m.response(h.sent[0].data, 100), UAS_UDP, at=h.t1_ms / 2)
    assert txn.state is State.PROCEEDING
    assert [type(e) for e in h.take_events()] == [ResponseReceived]
    h.advance(h.b_ms)
    expected = list(range(h.t1_ms, h.b_ms, h.t2_ms))
    assert [s.ms for s in h.requests("OPTIONS")] == [0] + expected
    assert h.times_of(TransactionTimeout) == [h.b_ms]  # Timer F covers Proceeding too
    h.assert_no_leaks()


def test_timer_e_in_proceeding_after_backoff_default_values():
    h = Harness()
    h.send_request(new_request("OPTIONS"), UAS_UDP, at=0)
    h.receive(m.response(h.sent[0].data, 100), UAS_UDP, at=2_000)  # after 500 and 1500 ms
    h.advance(32_000)
    # 3500 ms was already armed (Timer E = 2000 ms then); from then on T2 = 4000 ms.
    assert [s.ms for s in h.requests("OPTIONS")] == [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500,
                                                      19_500, 23_500, 27_500, 31_500]
    assert h.times_of(TransactionTimeout) == [32_000]
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_e_not_used_over_tcp_but_timer_f_fires_at_64_t1(timers):
    h = Harness(timers)
    h.send_request(new_request("OPTIONS", transport="TCP"), UAS_TCP, at=0)
    h.advance(h.b_ms)
    assert [s.ms for s in h.requests("OPTIONS")] == [0]
    assert h.times_of(TransactionTimeout) == [h.b_ms]
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_k_udp_is_t4_and_absorbs_retransmitted_finals(timers):
    h = Harness(timers)
    txn = h.send_request(new_request("OPTIONS"), UAS_UDP, at=0)
    ok = m.response(h.sent[0].data, 200, to_tag="uas-1")
    at = h.t1_ms // 2  # before Timer E's first firing
    h.receive(ok, UAS_UDP, at=at)
    assert txn.state is State.COMPLETED
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], ResponseReceived) and evs[0].transaction is txn
    # Retransmitted finals while Completed are absorbed: no event, nothing sent.
    h.receive(ok, UAS_UDP, at=at + h.t4_ms // 2)
    assert h.events == []
    assert [s.ms for s in h.requests("OPTIONS")] == [0]  # Timer E stopped
    # Timer K = T4.
    assert h.run_until_empty(at + 10 * h.t4_ms) == at + h.t4_ms
    assert h.of(TransactionTimeout) == []
    h.assert_no_leaks()


def test_timer_k_is_zero_over_tcp():
    h = Harness()
    txn = h.send_request(new_request("OPTIONS", transport="TCP"), UAS_TCP, at=0)
    h.receive(m.response(h.sent[0].data, 200, to_tag="uas-1"), UAS_TCP, at=100)
    assert [type(e) for e in h.take_events()] == [ResponseReceived]
    assert h.run_until_empty(100) == 100
    assert txn.state is State.TERMINATED
    h.assert_no_leaks()


# =================================================================================================
# INVITE server transaction (§17.2.1, RFC 6026 §7.1) and the UAS core's 2xx retransmission (§13.3.1.4)
# =================================================================================================
def test_server_invite_retransmission_is_absorbed_and_gets_the_last_provisional():
    h = Harness()
    invite = m.request("INVITE", branch="z9hG4bKinv1")
    txn = server_txn(h, invite, at=0)
    assert txn.state is State.PROCEEDING
    # Before any response: absorbed, nothing sent, no new event.
    h.receive(invite, UAC_UDP, at=500)
    assert h.sent == [] and h.events == []
    h.respond(txn, 100, at=600, to_tag=None)
    h.receive(invite, UAC_UDP, at=1_500)
    h.respond(txn, 180, at=2_000)
    h.receive(invite, UAC_UDP, at=3_500)
    h.receive(invite, UAC_UDP, at=7_500)
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [
        (600, 100), (1_500, 100), (2_000, 180), (3_500, 180), (7_500, 180)]
    assert all(s.peer == UAC_UDP for s in h.sent)
    assert h.responses(180)[1].data == h.responses(180)[0].data
    assert h.events == []
    assert txn.state is State.PROCEEDING
    h.respond(txn, 486, at=8_000)
    h.receive(m.ack_for_non2xx(invite, h.responses(486)[0].data), UAC_UDP, at=8_100)
    h.assert_no_leaks()


def test_timer_g_udp_resends_final_at_500_1500_3500_then_every_4000ms_timer_h_at_32000ms():
    h = Harness()
    txn = server_txn(h, m.request("INVITE"), at=0)
    h.respond(txn, 486, at=0)
    assert txn.state is State.COMPLETED
    h.advance(31_999)
    assert h.of(AckTimeout) == [] and h.stack.transaction_count == 1
    h.advance(32_000)
    finals = h.responses(486)
    assert [s.ms for s in finals] == [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500,
                                      23_500, 27_500, 31_500]
    assert all(s.data == finals[0].data for s in finals)
    # Timer H: no ACK within 64*T1 -> the TU is told, the transaction is gone.
    assert h.times_of(AckTimeout) == [32_000]
    assert h.of(AckTimeout)[0].transaction is txn
    assert txn.state is State.TERMINATED
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_g_doubles_capped_at_t2_and_timer_h_is_64_t1(timers):
    h = Harness(timers)
    txn = server_txn(h, m.request("INVITE"), at=0)
    h.respond(txn, 603, at=10)
    h.advance(10 + h.b_ms)
    assert [s.ms for s in h.responses(603)] == [10] + backoff_ms(h.t1_ms, h.t2_ms, h.b_ms, start=10)
    assert h.times_of(AckTimeout) == [10 + h.b_ms]
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_g_not_used_over_tcp_but_timer_h_fires_at_64_t1(timers):
    h = Harness(timers)
    txn = server_txn(h, m.request("INVITE", transport="TCP"), UAC_TCP, at=0)
    h.respond(txn, 486, at=0)
    h.advance(h.b_ms)
    assert [(s.ms, s.peer) for s in h.responses(486)] == [(0, UAC_TCP)]
    assert h.times_of(AckTimeout) == [h.b_ms]
    h.assert_no_leaks()


def test_retransmitted_invite_in_completed_gets_the_final_again():
    h = Harness()
    invite = m.request("INVITE")
    txn = server_txn(h, invite, at=0)
    h.respond(txn, 180, at=0)
    h.respond(txn, 486, at=100)
    h.receive(invite, UAC_UDP, at=300)  # before Timer G's first firing at 600 ms
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [(0, 180), (100, 486), (300, 486)]
    assert h.events == []
    h.receive(m.ack_for_non2xx(invite, h.sent[1].data), UAC_UDP, at=400)
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_ack_moves_completed_to_confirmed_stops_timer_g_and_timer_i_is_t4(timers):
    h = Harness(timers)
    invite = m.request("INVITE")
    txn = server_txn(h, invite, at=0)
    final = h.respond(txn, 486, at=0)
    ack_at = 4 * h.t1_ms  # after Timer G fired at T1 and 3*T1
    ack = m.ack_for_non2xx(invite, final)
    h.receive(ack, UAC_UDP, at=ack_at)
    assert txn.state is State.CONFIRMED
    assert h.events == []  # the ACK for a non-2xx is absorbed by the transaction
    # In Confirmed, retransmitted ACKs and INVITEs are absorbed, and Timer G is stopped.
    h.receive(ack, UAC_UDP, at=ack_at + 1)
    h.receive(invite, UAC_UDP, at=ack_at + 2)
    h.advance(ack_at + h.t4_ms - 1)
    assert [s.ms for s in h.responses(486)] == [0, h.t1_ms, 3 * h.t1_ms]
    assert h.events == []
    assert h.stack.transaction_count == 1
    # Timer I = T4 after the ACK; Timer H never fires.
    assert h.run_until_empty(ack_at + 10 * h.t4_ms) == ack_at + h.t4_ms
    assert txn.state is State.TERMINATED
    h.advance(10 * h.b_ms)
    assert h.of(AckTimeout) == []
    h.assert_no_leaks()


def test_timer_i_is_zero_over_tcp():
    h = Harness()
    invite = m.request("INVITE", transport="TCP")
    txn = server_txn(h, invite, UAC_TCP, at=0)
    final = h.respond(txn, 486, at=0)
    h.receive(m.ack_for_non2xx(invite, final), UAC_TCP, at=100)
    assert txn.state in (State.CONFIRMED, State.TERMINATED)
    assert h.run_until_empty(100) == 100
    assert h.events == []
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_timer_l_and_uas_core_2xx_retransmission_until_the_ack(timers):
    h = Harness(timers)
    invite = m.request("INVITE")
    txn = server_txn(h, invite, at=0)
    h.respond(txn, 180, at=0)
    ok = h.respond(txn, 200, at=0)
    assert txn.state is State.ACCEPTED  # RFC 6026 §7.1
    # A retransmitted INVITE in Accepted is absorbed: not passed to the TU.
    h.receive(invite, UAC_UDP, at=h.t1_ms // 2)
    assert h.events == []
    ack_at = 4 * h.t1_ms + h.t2_ms  # default: 6000 ms
    h.advance(ack_at - 1)
    sched = backoff_ms(h.t1_ms, h.t2_ms, ack_at)  # default: 500, 1500, 3500 ms
    assert [s.ms for s in h.responses(200)] == [0] + sched
    assert all(s.data == ok and s.peer == UAC_UDP for s in h.responses(200))
    # The ACK for the 2xx (its own branch) goes to the TU with transaction None, and stops the resending.
    ack = m.ack_for_2xx(invite, ok)
    h.receive(ack, UAC_UDP, at=ack_at)
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], RequestReceived)
    assert evs[0].request.method == "ACK" and evs[0].transaction is None and evs[0].peer == UAC_UDP
    # ACK retransmissions reach the TU too (RFC 6026 §7.1: not absorbed).
    h.receive(ack, UAC_UDP, at=ack_at + 1)
    assert [type(e) for e in h.take_events()] == [RequestReceived]
    # The transaction stays in Accepted until Timer L = 64*T1 after the 2xx.
    h.advance(h.b_ms - 1)
    assert txn.state is State.ACCEPTED and h.stack.transaction_count == 1
    assert h.run_until_empty(10 * h.b_ms) == h.b_ms
    assert [s.ms for s in h.responses(200)] == [0] + sched  # nothing after the ACK
    assert h.of(AckTimeout) == []
    h.assert_no_leaks()


def test_2xx_retransmission_default_500_1500_3500_7500_11500_to_31500ms_then_ack_timeout_at_32000ms():
    h = Harness()
    txn = server_txn(h, m.request("INVITE"), at=0)
    h.respond(txn, 200, at=0)
    h.advance(31_999)
    assert h.of(AckTimeout) == []
    h.advance(32_000)
    assert [s.ms for s in h.responses(200)] == [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500,
                                                23_500, 27_500, 31_500]
    assert h.times_of(AckTimeout) == [32_000]
    assert h.of(AckTimeout)[0].transaction is txn
    h.assert_no_leaks()


@pytest.mark.parametrize("timers", TIMERS)
def test_2xx_without_ack_is_resent_then_ack_timeout_at_64_t1(timers):
    h = Harness(timers)
    txn = server_txn(h, m.request("INVITE"), at=0)
    h.respond(txn, 200, at=0)
    h.advance(h.b_ms - 1)
    assert h.of(AckTimeout) == []
    h.advance(h.b_ms)
    assert [s.ms for s in h.responses(200)] == [0] + backoff_ms(h.t1_ms, h.t2_ms, h.b_ms)
    assert h.times_of(AckTimeout) == [h.b_ms]
    assert h.of(AckTimeout)[0].transaction is txn
    # A late ACK still goes to the TU (the dialog layer decides), but nothing resends any more.
    h.receive(m.ack_for_2xx(m.request("INVITE"), h.responses(200)[0].data), UAC_UDP, at=h.b_ms + 1)
    assert h.of(RequestReceived)[-1].transaction is None
    h.assert_no_leaks()
    assert len(h.responses(200)) == 1 + len(backoff_ms(h.t1_ms, h.t2_ms, h.b_ms))


@pytest.mark.parametrize("timers", TIMERS)
def test_2xx_over_tcp_without_ack_gives_ack_timeout_at_64_t1_and_timer_l(timers):
    h = Harness(timers)
    txn = server_txn(h, m.request("INVITE", transport="TCP"), UAC_TCP, at=0)
    h.respond(txn, 200, at=0)
    assert txn.state is State.ACCEPTED
    h.advance(h.b_ms - 1)
    assert h.of(AckTimeout) == [] and h.stack.transaction_count == 1
    h.advance(h.b_ms)
    assert h.times_of(AckTimeout) == [h.b_ms]
    assert h.stack.transaction_count == 0  # Timer L = 64*T1 on every transport
    h.assert_no_leaks()


def test_2xx_is_retransmitted_even_over_tcp_until_the_ack():
    h = Harness()
    invite = m.request("INVITE", transport="TCP")
    txn = server_txn(h, invite, UAC_TCP, at=0)
    ok = h.respond(txn, 200, at=0)
    h.receive(m.ack_for_2xx(invite, ok), UAC_TCP, at=5_000)
    h.advance(40_000)
    assert [s.ms for s in h.responses(200)] == [0, 500, 1_500, 3_500]
    assert h.of(AckTimeout) == []
    h.assert_no_leaks()


def test_stop_2xx_retransmit_ends_resending_without_ack_timeout():
    h = Harness()
    req = m.request("INVITE", call_id="stop-me@x", cseq=7)
    txn = server_txn(h, req, at=0)
    h.respond(txn, 200, at=0)
    h.advance(2_000)  # resent at 500 and 1500 ms
    h.stack.stop_2xx_retransmit("stop-me@x", 7)  # the TU tore the dialog down another way
    h.advance(40_000)
    assert [s.ms for s in h.responses(200)] == [0, 500, 1_500]
    assert h.of(AckTimeout) == []
    assert txn.state is State.TERMINATED  # Timer L still ran
    h.assert_no_leaks()


def test_tu_2xx_retransmission_in_accepted_is_sent_and_other_responses_are_not():
    h = Harness()
    invite = m.request("INVITE")
    txn = server_txn(h, invite, at=0)
    ok = h.respond(txn, 200, at=0)
    h.respond(txn, 200, at=100)  # the TU may pass 2xx retransmissions to the transaction
    h.respond(txn, 486, at=200)  # but no other final response once Accepted
    h.respond(txn, 180, at=300)
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [(0, 200), (100, 200)]
    h.receive(m.ack_for_2xx(invite, ok), UAC_UDP, at=400)
    h.assert_no_leaks()


# =================================================================================================
# Non-INVITE server transaction (§17.2.2)
# =================================================================================================
@pytest.mark.parametrize("timers", TIMERS)
def test_non_invite_server_retransmissions_get_the_last_response_and_timer_j_is_64_t1(timers):
    h = Harness(timers)
    req = m.request("OPTIONS")
    txn = server_txn(h, req, at=0)
    assert txn.state is State.TRYING
    h.receive(req, UAC_UDP, at=10)  # Trying: absorbed, nothing to resend
    assert h.sent == [] and h.events == []
    h.respond(txn, 100, at=20, to_tag=None)
    assert txn.state is State.PROCEEDING
    h.receive(req, UAC_UDP, at=30)  # Proceeding: the last provisional again
    h.respond(txn, 200, at=40)
    assert txn.state is State.COMPLETED
    h.receive(req, UAC_UDP, at=50)  # Completed: the final again
    h.receive(req, UAC_UDP, at=60)
    h.respond(txn, 500, at=70)  # a second final from the TU is not sent
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [(20, 100), (30, 100), (40, 200), (50, 200), (60, 200)]
    assert h.sent[3].data == h.sent[2].data
    assert all(s.peer == UAC_UDP for s in h.sent)
    assert h.events == []
    # No retransmission on a timer for non-INVITE responses; Timer J = 64*T1 after the final.
    assert h.run_until_empty(40 + 10 * h.b_ms) == 40 + h.b_ms
    assert len(h.sent) == 5 and h.events == []
    h.assert_no_leaks()


def test_timer_j_is_zero_over_tcp():
    h = Harness()
    txn = server_txn(h, m.request("OPTIONS", transport="TCP"), UAC_TCP, at=0)
    h.respond(txn, 200, at=100)
    assert [(s.ms, s.peer) for s in h.responses(200)] == [(100, UAC_TCP)]
    assert h.run_until_empty(100) == 100
    h.assert_no_leaks()


# =================================================================================================
# CANCEL (§9)
# =================================================================================================
def test_cancel_matching_a_proceeding_invite_gets_200_and_cancel_received():
    h = Harness()
    invite = m.request("INVITE", branch="z9hG4bKcancelme")
    txn = server_txn(h, invite, at=0)
    txn.to_tag = "uas-tag"  # the TU's tag for this INVITE
    h.respond(txn, 180, at=0)
    cancel = m.cancel_for(invite)
    h.receive(cancel, UAC_UDP, at=1_000)
    ok = h.responses(200)
    assert len(ok) == 1 and ok[0].peer == UAC_UDP
    assert m.header(ok[0].data, "cseq").split() == ["1", "CANCEL"]
    assert m.branch_of(ok[0].data) == "z9hG4bKcancelme"
    assert m.to_tag(ok[0].data) == "uas-tag"  # §9.2: same To tag as the responses to the INVITE
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], CancelReceived)
    assert evs[0].transaction is txn and evs[0].request.method == "CANCEL"
    # A CANCEL retransmission gets the 200 again, without a second event.
    h.receive(cancel, UAC_UDP, at=1_500)
    assert [s.ms for s in h.responses(200)] == [1_000, 1_500]
    assert h.events == []
    # The INVITE itself is still pending: the TU answers it 487.
    assert txn.state is State.PROCEEDING
    final = h.respond(txn, 487, at=1_600)
    h.receive(m.ack_for_non2xx(invite, final), UAC_UDP, at=1_700)
    assert txn.state is State.CONFIRMED
    h.assert_no_leaks()


def test_cancel_without_a_matching_invite_gets_481():
    h = Harness()
    cancel = m.cancel_for(m.request("INVITE", branch="z9hG4bKnosuch"))
    h.receive(cancel, UAC_UDP, at=0)
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [(0, 481)]
    assert m.header(h.sent[0].data, "cseq").split() == ["1", "CANCEL"]
    assert h.events == []
    h.receive(cancel, UAC_UDP, at=500)  # retransmission: the same 481 again
    assert [s.ms for s in h.responses(481)] == [0, 500]
    assert h.sent[1].data == h.sent[0].data
    assert h.events == []
    assert h.run_until_empty(100_000) == 32_000  # Timer J of the CANCEL transaction
    h.assert_no_leaks()


def test_cancel_for_an_other_branch_does_not_match():
    h = Harness()
    invite = m.request("INVITE", branch="z9hG4bKone")
    txn = server_txn(h, invite, at=0)
    h.receive(m.cancel_for(m.request("INVITE", branch="z9hG4bKtwo")), UAC_UDP, at=100)
    assert [m.status_of(s.data) for s in h.sent] == [481]
    assert h.events == []
    h.respond(txn, 486, at=200)
    h.receive(m.ack_for_non2xx(invite, h.responses(486)[0].data), UAC_UDP, at=300)
    h.assert_no_leaks()


@pytest.mark.parametrize("final", [486, 200])
def test_cancel_after_the_final_response_gets_200_but_no_event(final):
    h = Harness()
    invite = m.request("INVITE")
    txn = server_txn(h, invite, at=0)
    resp = h.respond(txn, final, at=0)
    h.receive(m.cancel_for(invite), UAC_UDP, at=100)
    cancel_ok = [s for s in h.responses(200) if m.header(s.data, "cseq").endswith("CANCEL")]
    assert len(cancel_ok) == 1
    assert h.of(CancelReceived) == []
    ack = m.ack_for_non2xx(invite, resp) if final >= 300 else m.ack_for_2xx(invite, resp)
    h.receive(ack, UAC_UDP, at=200)
    h.assert_no_leaks()


def test_cancel_matching_a_pending_non_invite_gets_200():
    h = Harness()
    req = m.request("MESSAGE", branch="z9hG4bKmsg")
    txn = server_txn(h, req, at=0)
    cancel = m.request("CANCEL", branch="z9hG4bKmsg")  # same URI, Via, From, To, Call-ID, CSeq number
    h.receive(cancel, UAC_UDP, at=100)
    assert [m.status_of(s.data) for s in h.sent] == [200]
    assert m.header(h.sent[0].data, "cseq").split() == ["1", "CANCEL"]
    assert h.of(CancelReceived) == []  # nothing for the TU to do for a non-INVITE
    assert txn.state is State.TRYING
    h.respond(txn, 200, at=200)
    h.assert_no_leaks()


@pytest.mark.parametrize("branch", [None, "z9hG4bK"], ids=["no-branch", "bare-magic-cookie"])
def test_cancel_matches_an_rfc2543_invite(branch):
    h = Harness()
    invite = m.request("INVITE", branch=branch)
    txn = server_txn(h, invite, at=0)
    h.respond(txn, 180, at=0)
    h.receive(m.cancel_for(invite), UAC_UDP, at=1_000)
    assert [m.status_of(s.data) for s in h.sent] == [180, 200]
    assert [ev.transaction for ev in h.of(CancelReceived)] == [txn]
    final = h.respond(txn, 487, at=1_100)
    h.receive(m.ack_for_non2xx(invite, final), UAC_UDP, at=1_200)
    h.assert_no_leaks()


def test_client_cancel_before_any_provisional_is_deferred_until_a_1xx():
    h = Harness()
    routes = ("<sip:p1.example.com;lr>",)
    txn = h.send_request(new_request("INVITE", routes=routes), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.cancel(txn, at=100)
    h.cancel(txn, at=150)  # asking twice still gives one CANCEL
    h.advance(1_000)
    assert h.requests("CANCEL") == []  # §9.1: not before a provisional response
    assert [s.ms for s in h.requests("INVITE")] == [0, 500]  # the INVITE keeps retransmitting
    h.receive(m.response(invite, 180, to_tag="uas-1"), UAS_UDP, at=1_200)
    cancels = h.requests("CANCEL")
    assert [(s.ms, s.peer) for s in cancels] == [(1_200, UAS_UDP)]
    cancel = cancels[0].data
    # §9.1: Request-URI, Call-ID, To, From, CSeq number equal the INVITE's; one Via equal to its top Via.
    assert m.request_uri(cancel) == m.request_uri(invite)
    for name in ("call-id", "to", "from"):
        assert m.header(cancel, name) == m.header(invite, name)
    assert m.header(cancel, "cseq").split() == ["1", "CANCEL"]
    assert m.headers(cancel, "via") == [m.top_via(invite)]
    assert m.headers(cancel, "route") == list(routes)
    assert [type(e) for e in h.take_events()] == [ResponseReceived]
    # 200 to the CANCEL, then 487 to the INVITE (ACKed by the transaction).
    h.receive(m.response(cancel, 200, to_tag="uas-1"), UAS_UDP, at=1_300)
    h.receive(m.response(invite, 487, to_tag="uas-1"), UAS_UDP, at=1_400)
    assert [e.response.status for e in h.of(ResponseReceived)] == [200, 487]
    assert [s.ms for s in h.requests("ACK")] == [1_400]
    assert [s.ms for s in h.requests("CANCEL")] == [1_200]
    assert [s.ms for s in h.requests("INVITE")] == [0, 500]
    h.assert_no_leaks()


def test_client_cancel_in_proceeding_is_sent_at_once_and_retransmitted_by_timer_e():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.receive(m.response(invite, 183, to_tag="uas-1"), UAS_UDP, at=100)
    h.cancel(txn, at=200)
    h.cancel(txn, at=250)  # a second cancel() sends nothing more
    h.advance(2_000)  # the CANCEL is a non-INVITE transaction: Timer E at 700, 1700 ms
    cancels = h.requests("CANCEL")
    assert [s.ms for s in cancels] == [200, 700, 1_700]
    assert m.branch_of(cancels[0].data) == m.branch_of(invite)  # same branch as the INVITE (§9.1)
    h.receive(m.response(cancels[0].data, 200, to_tag="uas-1"), UAS_UDP, at=2_000)
    h.receive(m.response(invite, 487, to_tag="uas-1"), UAS_UDP, at=2_100)
    h.advance(10_000)
    assert [s.ms for s in h.requests("CANCEL")] == [200, 700, 1_700]
    h.assert_no_leaks()


@pytest.mark.parametrize("final", [200, 486])
def test_client_cancel_after_a_final_response_is_not_sent(final):
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.receive(m.response(invite, 180, to_tag="uas-1"), UAS_UDP, at=100)
    h.receive(m.response(invite, final, to_tag="uas-1"), UAS_UDP, at=200)
    h.cancel(txn, at=300)
    h.advance(5_000)
    assert h.requests("CANCEL") == []
    assert h.stack.transaction_count == 1  # Completed (Timer D) or Accepted (Timer M)
    h.assert_no_leaks()
    assert h.requests("CANCEL") == []


def test_client_cancel_deferred_then_a_final_without_1xx_is_never_sent():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.cancel(txn, at=100)
    h.receive(m.response(invite, 486, to_tag="uas-1"), UAS_UDP, at=700)
    # A late provisional (retransmitted or reordered) must not release the CANCEL now.
    h.receive(m.response(invite, 180, to_tag="uas-1"), UAS_UDP, at=800)
    h.assert_no_leaks()
    assert h.requests("CANCEL") == []
    assert [s.ms for s in h.requests("ACK")] == [700]


def test_client_cancel_deferred_while_calling_then_timer_b():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    h.cancel(txn, at=100)
    h.advance(32_000)
    assert h.requests("CANCEL") == []
    assert h.times_of(TransactionTimeout) == [32_000]
    h.assert_no_leaks()


def test_client_invite_is_destroyed_64_t1_after_cancel_without_a_final_response():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    invite = h.sent[0].data
    h.receive(m.response(invite, 180, to_tag="uas-1"), UAS_UDP, at=100)
    h.cancel(txn, at=200)
    cancel = h.requests("CANCEL")[0].data
    h.receive(m.response(cancel, 200, to_tag="uas-1"), UAS_UDP, at=300)
    # No 487 ever comes; 64*T1 = 32000 ms after the CANCEL (plus Timer K of the CANCEL).
    h.advance(200 + 32_000 + 5_000 + 1)
    assert txn.state is State.TERMINATED
    assert h.stack.transaction_count == 0
    h.assert_no_leaks()


# =================================================================================================
# Merged requests (§8.2.2.2)
# =================================================================================================
def test_merged_invite_gets_482_and_the_original_is_unaffected():
    h = Harness()
    first = m.request("INVITE", branch="z9hG4bKpath1")
    txn = server_txn(h, first, at=0)
    h.respond(txn, 180, at=0)
    merged = m.request("INVITE", branch="z9hG4bKpath2")  # same From tag, Call-ID, CSeq; no To tag
    h.receive(merged, UAC_UDP, at=100)
    assert h.events == []
    loops = h.responses(482)
    assert len(loops) == 1 and loops[0].peer == UAC_UDP
    assert m.branch_of(loops[0].data) == "z9hG4bKpath2"
    assert m.header(loops[0].data, "cseq").split() == ["1", "INVITE"]
    assert m.to_tag(loops[0].data)  # a final response carries a To tag
    # Retransmission of the merged copy: 482 again (whether resent statelessly or by a
    # server transaction's Timer G); of the original: its own last provisional.
    h.receive(merged, UAC_UDP, at=550)
    assert [s.ms for s in h.responses(482)][-1] == 550
    h.receive(first, UAC_UDP, at=700)
    assert [s.ms for s in h.responses(180)] == [0, 700]
    assert all(m.branch_of(s.data) == "z9hG4bKpath2" for s in h.responses(482))
    assert h.events == []  # neither copy of the merged request reached the TU
    h.receive(m.ack_for_non2xx(merged, loops[0].data), UAC_UDP, at=750)  # upstream ACKs the 482
    assert not [ev for ev in h.of(RequestReceived) if ev.request.method == "INVITE"]
    assert txn.state is State.PROCEEDING
    final = h.respond(txn, 486, at=800)
    h.receive(m.ack_for_non2xx(first, final), UAC_UDP, at=900)
    h.assert_no_leaks()


def test_merged_non_invite_gets_482():
    h = Harness()
    txn = server_txn(h, m.request("MESSAGE", branch="z9hG4bKm1"), at=0)
    h.receive(m.request("MESSAGE", branch="z9hG4bKm2"), UAC_UDP, at=50)
    assert [m.status_of(s.data) for s in h.sent] == [482]
    assert h.events == []
    h.respond(txn, 200, at=100)
    h.assert_no_leaks()


def test_requests_that_differ_in_from_tag_call_id_or_cseq_are_not_merged():
    h = Harness()
    txns = [
        server_txn(h, m.request("INVITE", branch="z9hG4bKa"), at=0),
        server_txn(h, m.request("INVITE", branch="z9hG4bKb", from_tag="other"), at=10),
        server_txn(h, m.request("INVITE", branch="z9hG4bKc", call_id="other@x"), at=20),
        server_txn(h, m.request("INVITE", branch="z9hG4bKd", cseq=2), at=30),
        # with a To tag (in-dialog) the merge check does not apply
        server_txn(h, m.request("INVITE", branch="z9hG4bKe", to_tag="dlg"), at=40),
    ]
    assert len({id(t) for t in txns}) == 5
    assert h.responses(482) == []
    for t in txns:
        h.respond(t, 486, at=50)
    h.advance(32_050)  # Timer H on each
    assert len(h.of(AckTimeout)) == 5
    h.assert_no_leaks()


def test_ack_for_a_482_does_not_stop_the_originals_2xx_retransmission():
    h = Harness()
    first = m.request("INVITE", branch="z9hG4bKpath1")
    txn = server_txn(h, first, at=0)
    ok = h.respond(txn, 200, at=0, to_tag="uas-a")
    merged = m.request("INVITE", branch="z9hG4bKpath2")
    h.receive(merged, UAC_UDP, at=100)
    loop = h.responses(482)[0].data
    h.receive(m.ack_for_non2xx(merged, loop), UAC_UDP, at=150)  # the upstream ACKs its 482
    h.advance(4_000)
    assert [s.ms for s in h.responses(200)] == [0, 500, 1_500, 3_500]
    h.receive(m.ack_for_2xx(first, ok), UAC_UDP, at=4_000)
    h.assert_no_leaks()
    assert h.of(AckTimeout) == []


# =================================================================================================
# Transport errors (§17.1.4, §17.2.4)
# =================================================================================================
def test_transport_error_ends_a_calling_invite_client_transaction():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    h.transport_error(UAS_UDP, at=600)  # after one retransmission at 500 ms
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], TransportError) and evs[0].transaction is txn
    assert txn.state is State.TERMINATED
    assert h.stack.transaction_count == 0
    h.advance(100_000)
    assert [s.ms for s in h.requests("INVITE")] == [0, 500]  # no more Timer A
    assert h.events == []  # and no Timer B timeout
    h.assert_no_leaks()


def test_transport_error_event_names_the_transaction_and_spares_other_peers():
    h = Harness()
    other_peer = Peer("tcp", "203.0.113.5", 5060, 3)
    victim = h.send_request(new_request("OPTIONS", transport="TCP"), UAS_TCP, at=0)
    other = h.send_request(new_request("OPTIONS", transport="TCP", call_id="c2"), other_peer, at=0)
    h.transport_error(UAS_TCP, at=100)
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], TransportError) and evs[0].transaction is victim
    assert victim.state is State.TERMINATED and other.state is State.TRYING
    assert h.stack.transaction_count == 1
    h.receive(m.response(h.sent[1].data, 200, to_tag="x"), other_peer, at=200)
    assert [ev.transaction for ev in h.of(ResponseReceived)] == [other]
    # A response for the ended transaction is a stray.
    h.receive(m.response(h.sent[0].data, 200, to_tag="x"), UAS_TCP, at=300)
    assert len(h.of(ResponseReceived)) == 1
    h.assert_no_leaks()


def test_transport_error_ends_a_proceeding_invite_client_transaction():
    h = Harness()
    txn = h.send_request(new_request("INVITE"), UAS_UDP, at=0)
    h.receive(m.response(h.sent[0].data, 180, to_tag="uas-1"), UAS_UDP, at=100)
    h.take_events()
    h.transport_error(UAS_UDP, at=200)
    assert [ev.transaction for ev in h.of(TransportError)] == [txn]
    assert h.stack.transaction_count == 0
    h.assert_no_leaks()


def test_transport_error_ends_a_server_transaction():
    h = Harness()
    txn = server_txn(h, m.request("INVITE"), at=0)
    h.respond(txn, 486, at=0)
    h.transport_error(UAC_UDP, at=100)
    assert [ev.transaction for ev in h.of(TransportError)] == [txn]
    assert h.stack.transaction_count == 0
    h.advance(40_000)
    assert [s.ms for s in h.responses(486)] == [0]  # Timer G stopped
    assert h.of(AckTimeout) == []  # and Timer H too
    h.assert_no_leaks()


# =================================================================================================
# RFC 2543 matching (§17.2.3 last paragraphs): no branch, or a bare magic cookie
# =================================================================================================
RFC2543 = pytest.mark.parametrize("branch", [None, "z9hG4bK"], ids=["no-branch", "bare-magic-cookie"])


@RFC2543
def test_rfc2543_invite_retransmission_matches_and_the_ack_confirms(branch):
    h = Harness()
    invite = m.request("INVITE", branch=branch)
    txn = server_txn(h, invite, at=0)
    h.respond(txn, 180, at=0)
    h.receive(invite, UAC_UDP, at=500)
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [(0, 180), (500, 180)]
    assert h.events == [] and h.stack.transaction_count == 1
    final = h.respond(txn, 486, at=1_000)
    h.receive(invite, UAC_UDP, at=1_200)
    assert [(s.ms, m.status_of(s.data)) for s in h.sent][-2:] == [(1_000, 486), (1_200, 486)]
    h.receive(m.ack_for_non2xx(invite, final), UAC_UDP, at=1_300)
    assert txn.state is State.CONFIRMED
    assert h.events == []
    assert h.run_until_empty(100_000) == 1_300 + 5_000  # Timer I
    h.assert_no_leaks()


@RFC2543
def test_rfc2543_non_invite_retransmission_matches(branch):
    h = Harness()
    req = m.request("OPTIONS", branch=branch)
    txn = server_txn(h, req, at=0)
    h.respond(txn, 200, at=10)
    h.receive(req, UAC_UDP, at=500)
    assert [(s.ms, m.status_of(s.data)) for s in h.sent] == [(10, 200), (500, 200)]
    assert h.events == []
    assert h.run_until_empty(100_000) == 10 + 32_000  # Timer J
    h.assert_no_leaks()


@RFC2543
def test_rfc2543_requests_that_differ_are_different_transactions(branch):
    h = Harness()
    a = server_txn(h, m.request("OPTIONS", branch=branch, cseq=1), at=0)
    b = server_txn(h, m.request("OPTIONS", branch=branch, cseq=2), at=10)
    c = server_txn(h, m.request("OPTIONS", branch=branch, cseq=3, via_value=m.via(branch, port=5080)), at=20)
    assert len({id(a), id(b), id(c)}) == 3
    for t in (a, b, c):
        h.respond(t, 200, at=30)
    h.assert_no_leaks()


@RFC2543
def test_rfc2543_ack_for_a_2xx_goes_to_the_tu_and_stops_resending(branch):
    # RFC 6026 §6: an ACK matching an INVITE server transaction in Accepted goes to the TU.
    h = Harness()
    invite = m.request("INVITE", branch=branch)
    txn = server_txn(h, invite, at=0)
    ok = h.respond(txn, 200, at=0)
    ack = m.ack_for_non2xx(invite, ok)  # same Via as the INVITE, as an RFC 2543 UA sends it
    h.receive(ack, UAC_UDP, at=1_000)
    evs = h.take_events()
    assert len(evs) == 1 and isinstance(evs[0], RequestReceived) and evs[0].transaction is None
    h.advance(10_000)
    assert [s.ms for s in h.responses(200)] == [0, 500]
    assert h.run_until_empty(100_000) == 32_000  # Timer L
    h.assert_no_leaks()


# =================================================================================================
# The stack's clock is an input; transactions reach the stack only through TransactionHost
# =================================================================================================
def test_stack_now_is_read_only():
    h = Harness()
    h.receive(m.request("OPTIONS"), UAC_UDP, at=1_000)
    assert h.stack.now == 1.0
    with pytest.raises(AttributeError):
        h.stack.now = 5.0  # type: ignore[misc]  # the point of the test: a read-only property
    assert h.stack.now == 1.0


def test_an_older_now_does_not_move_the_clock_back():
    h = Harness()
    stack = h.stack
    txn = server_txn(h, m.request("OPTIONS"), at=10_000)
    assert stack.now == 10.0
    # Every input with an older time leaves the clock where it is.
    stack.handle_timer(4.0)
    assert stack.now == 10.0
    stack.receive(m.request("OPTIONS", branch="z9hG4bKother"), UAC_UDP, 3.0)
    assert stack.now == 10.0
    client = stack.send_request(new_request("INVITE"), UAS_UDP, 2.0)
    assert stack.now == 10.0
    stack.cancel(client, 1.0)
    stack.transport_error(UAS_UDP, 1.5)
    assert stack.now == 10.0
    # A 200 to the OPTIONS given with an old time: Timer J starts from 10 s, not from 2 s (§17.2.2).
    stack.respond(txn, make_response(txn.request, 200, to_tag="t"), 2.0)
    assert stack.now == 10.0
    assert txn.state is State.COMPLETED
    stack.handle_timer(2.0 + h.b_ms / 1000)  # Timer J, had the clock gone back to 2 s
    assert txn.state is State.COMPLETED
    assert stack.now == 2.0 + h.b_ms / 1000
    stack.handle_timer(10.0 + h.b_ms / 1000)
    assert txn.state is State.TERMINATED
    assert stack.now == 10.0 + h.b_ms / 1000
    # A later time still moves it on.
    stack.handle_timer(100.0)
    assert stack.now == 100.0


def test_transactions_use_only_the_public_transaction_host():
    """b2bua/sip/transaction.py touches no private member of its host and never imports the stack."""
    import ast
    from pathlib import Path

    import b2bua.sip.transaction as transaction

    tree = ast.parse(Path(transaction.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module is not None and "stack" not in node.module.split("."), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert all("stack" not in a.name.split(".") for a in node.names), ast.dump(node)

    def is_host(expr: ast.expr) -> bool:
        """``self.host`` or the ``host`` parameter of a transaction's constructor."""
        if isinstance(expr, ast.Name):
            return expr.id == "host"
        return isinstance(expr, ast.Attribute) and expr.attr == "host" and isinstance(expr.value, ast.Name) \
            and expr.value.id == "self"

    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and is_host(node.value)}
    assert used, "transactions no longer reach their host through self.host?"
    assert not [a for a in used if a.startswith("_")], used
    stack_refs = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "stack"]
    assert stack_refs == [], "a transaction holds its TransactionHost as .host, not a stack"

    protocol = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TransactionHost")
    declared = {n.name for n in protocol.body if isinstance(n, ast.FunctionDef)}
    assert not [a for a in declared if a.startswith("_")], declared
    assert used <= declared, f"used but not in TransactionHost: {used - declared}"
    # and the stack really implements every member of it
    assert all(hasattr(SipStack(), name) for name in declared)


@pytest.mark.parametrize("to, expected", [
    ("<sip:bob@example.com>", "<sip:bob@example.com>;tag=ours"),
    ("<sip:bob@example.com>;tag=theirs", "<sip:bob@example.com>;tag=theirs"),
    ("<sip:bob@example.com> ; TAG = theirs", "<sip:bob@example.com> ; TAG = theirs"),  # §7.3.1: any case, spaces
])
def test_a_response_and_a_refusal_built_elsewhere_get_our_to_tag_once(to: str, expected: str) -> None:
    from b2bua.call.admission import tag_to

    req = parse_message(m.request("INVITE").replace(f"To: {m.TO}".encode(), f"To: {to}".encode()))
    assert isinstance(req, Request) and req.get("to") == to
    assert make_response(req, 486, to_tag="ours").get("to") == expected
    refusal = make_response(req, 403)  # a router's refusal: no tag of ours yet
    tag_to(refusal, "ours")
    assert refusal.get("to") == expected
    assert refusal.to_tag == expected.rpartition("=")[2].strip()
