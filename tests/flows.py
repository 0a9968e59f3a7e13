"""The fake-clock flow harness: call control (:class:`B2BUA`) + the SIP stack, no sockets, no sleeping.

Two scripted peers exchange raw bytes with the stack, the clock only moves when a test calls
:meth:`Harness.advance`, and everything the stack sends is parsed back with ``parse_message``
and filed by destination. The harness owns the fake :class:`~b2bua.clock.Clock` (as the asyncio
driver owns the real one): it moves it, passes its ``now`` to the stack, and call control reads it.

* caller "A" sends from ``Peer("udp", "127.0.0.1", 5070)``
* callee "B" is the route target ``sip:127.0.0.1:5080``
* the B2BUA itself is ``127.0.0.1:5060`` (Via, Contact)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from b2bua.call.b2bua import B2BUA, B2BUAConfig, CallRecord, Route
from b2bua.clock import Clock
from b2bua.sip.events import Peer
from b2bua.sip.message import Request, Response, parse_message
from b2bua.sip.stack import SipStack, StackConfig
from b2bua.sip.uri import Address

T1 = 0.5
TIMER_B = 64 * T1
A = Peer("udp", "127.0.0.1", 5070)
B = Peer("udp", "127.0.0.1", 5080)
LOCAL = ("127.0.0.1", 5060)
OUR_CONTACT_URI = "sip:127.0.0.1:5060"

A_CALL_ID = "a-call-1@192.0.2.1"
A_TAG = "a-from-tag"
A_CSEQ = 314
A_CONTACT = "<sip:alice@127.0.0.1:5070>"
B_CONTACT = "<sip:bob@127.0.0.1:5080>"
B_TAG = "b-to-tag"
CRLF = "\r\n"

SDP_A = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 2808844564 2808844564 IN IP4 192.0.2.2\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_A_HOLD = SDP_A.replace(b"a=rtpmap:0 PCMU/8000\r\n", b"a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n")
SDP_B_HELD = SDP_B.replace(b"a=rtpmap:0 PCMU/8000\r\n", b"a=rtpmap:0 PCMU/8000\r\na=recvonly\r\n")


# -- the harness ------------------------------------------------------------------------------
@dataclass
class Sent:
    """One datagram the stack sent, with the fake time it was sent at."""

    at: float
    peer: Peer
    data: bytes
    msg: Request | Response

    @property
    def method(self) -> str | None:
        return self.msg.method if isinstance(self.msg, Request) else None

    @property
    def status(self) -> int | None:
        return self.msg.status if isinstance(self.msg, Response) else None

    def __repr__(self) -> str:
        what = self.method or self.status
        cseq = self.msg.get("cseq")
        return f"<Sent t={self.at:g} {what} cseq={cseq!r} to={self.peer.port}>"


@dataclass
class Harness:
    ring_timeout: float = 180.0
    clock: Clock = field(default_factory=Clock)
    stack: SipStack = field(init=False)
    b2bua: B2BUA = field(init=False)
    records: list[CallRecord] = field(default_factory=list)
    log: list[Sent] = field(default_factory=list)
    queues: dict[Peer, list[Sent]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack = SipStack(StackConfig(local={"udp": LOCAL}))
        self.b2bua = B2BUA(self.stack, self.route, B2BUAConfig(ring_timeout=self.ring_timeout), clock=self.clock)
        self.b2bua.on_call_end = self.records.append
        self._branches = itertools.count(1)

    @staticmethod
    def route(req: Request, peer: Peer) -> Route:
        return Route(["sip:127.0.0.1:5080"], name="lab")

    def branch(self, who: str) -> str:
        return f"z9hG4bK-{who}-{next(self._branches)}"

    @property
    def now(self) -> float:
        return self.clock.now

    # driving ---------------------------------------------------------------------------------
    def _collect(self) -> None:
        for data, peer in self.stack.datagrams_to_send():
            sent = Sent(self.now, peer, data, parse_message(data))
            self.log.append(sent)
            self.queues.setdefault(peer, []).append(sent)

    def settle(self) -> None:
        """After driving call control directly (not through a message or the clock): what it sent."""
        self.b2bua.drain()
        self._collect()

    def deliver(self, data: bytes, peer: Peer) -> None:
        self.stack.receive(data, peer, self.now)
        self.b2bua.drain()
        self._collect()

    def from_a(self, data: bytes) -> None:
        self.deliver(data, A)

    def from_b(self, data: bytes) -> None:
        self.deliver(data, B)

    def advance(self, ms: float) -> None:
        """Move the fake clock ``ms`` forward, firing every deadline on its exact time."""
        end = self.now + ms / 1000.0
        while True:
            deadline = self.stack.get_timer()
            if deadline is None or deadline > end:
                break
            self.clock.advance(deadline)
            self.stack.handle_timer(self.now)
            self.b2bua.drain()
            self._collect()
        self.clock.advance(end)

    # inspecting ------------------------------------------------------------------------------
    def take(self, peer: Peer) -> list[Sent]:
        out = self.queues.get(peer, [])
        self.queues[peer] = []
        return out

    def take_a(self) -> list[Sent]:
        return self.take(A)

    def take_b(self) -> list[Sent]:
        return self.take(B)

    def one(self, peer: Peer) -> Sent:
        got = self.take(peer)
        assert len(got) == 1, f"expected one message to {peer}, got {got}"
        return got[0]

    def nothing_unexpected(self) -> None:
        """Nothing was sent to any address other than A and B."""
        stray = [s for s in self.log if s.peer not in (A, B)]
        assert stray == []


# -- message builders (the scripted peers) ----------------------------------------------------
def _join(lines: list[str], body: bytes = b"") -> bytes:
    return (CRLF.join(lines + [f"Content-Length: {len(body)}"]) + CRLF + CRLF).encode() + body


def a_request(h: Harness, method: str, *, cseq: int, to_tag: str | None = None, branch: str | None = None,
              body: bytes = b"", ctype: str = "application/sdp", extra: tuple[str, ...] = (),
              call_id: str = A_CALL_ID, from_tag: str = A_TAG, cseq_method: str | None = None,
              max_forwards: int = 70) -> bytes:
    """A request from caller A (UDP 127.0.0.1:5070, rport)."""
    to = "<sip:bob@b2bua.example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:bob@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch or h.branch('a')};rport",
        f"Max-Forwards: {max_forwards}",
        f'From: "Alice" <sip:alice@client.example.com>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        f"Contact: {A_CONTACT}",
    ]
    lines += list(extra)
    if body:
        lines.append(f"Content-Type: {ctype}")
    return _join(lines, body)


def reply(req: Sent | Request, status: int, reason: str = "Whatever", *, to_tag: str | None = None,
          contact: str | None = None, body: bytes = b"", ctype: str = "application/sdp",
          extra: tuple[str, ...] = ()) -> bytes:
    """A response to a request the stack sent: Via (all), From, To, Call-ID, CSeq copied (§8.2.6.2)."""
    msg = req.msg if isinstance(req, Sent) else req
    lines = [f"SIP/2.0 {status} {reason}"]
    for key, name, value in msg.headers:
        if key == "to" and to_tag and ";tag=" not in value:
            value = f"{value};tag={to_tag}"
        if key in ("via", "from", "to", "call-id", "cseq"):
            lines.append(f"{name}: {value}")
    if contact:
        lines.append(f"Contact: {contact}")
    lines += list(extra)
    if body:
        lines.append(f"Content-Type: {ctype}")
    return _join(lines, body)


def b_request(h: Harness, invite: Sent, method: str, *, cseq: int, to_tag: str, body: bytes = b"",
              ctype: str = "application/sdp", branch: str | None = None) -> bytes:
    """A request callee B sends inside the dialog the B2BUA's INVITE created (§12.2.1.1)."""
    inv = invite.msg
    target = Address.parse(inv.get("contact")).uri
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch or h.branch('b')};rport",
        "Max-Forwards: 70",
        f"From: {inv.get('to')};tag={to_tag}",
        f"To: {inv.get('from')}",
        f"Call-ID: {inv.call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: {B_CONTACT}",
    ]
    if body:
        lines.append(f"Content-Type: {ctype}")
    return _join(lines, body)


def ack_2xx(h: Harness, cseq: int, to_tag: str) -> bytes:
    """A's ACK to a 2xx: a transaction of its own, new branch (§13.2.2.4)."""
    return a_request(h, "ACK", cseq=cseq, cseq_method="ACK", to_tag=to_tag)


def ack_non2xx(branch: str, resp: Sent) -> bytes:
    """A's ACK to a 3xx-6xx: same branch as the INVITE, To from the response (§17.1.1.3)."""
    lines = [
        "ACK sip:bob@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport",
        "Max-Forwards: 70",
        f'From: "Alice" <sip:alice@client.example.com>;tag={A_TAG}',
        f"To: {resp.msg.get('to')}",
        f"Call-ID: {A_CALL_ID}",
        f"CSeq: {A_CSEQ} ACK",
    ]
    return _join(lines)


@dataclass
class Setup:
    """What the early part of a call left behind."""

    a_branch: str
    b_invite: Sent
    a_tag: str | None = None  # the B2BUA's To tag towards A
    a_200: Sent | None = None


def start_call(h: Harness, *, call_id: str = A_CALL_ID) -> Setup:
    """A INVITEs; returns B's INVITE after checking A got 100 Trying."""
    branch = h.branch("a-inv")
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, branch=branch, body=SDP_A, call_id=call_id))
    trying = h.one(A)
    assert trying.status == 100
    b_inv = h.one(B)
    assert b_inv.method == "INVITE"
    return Setup(branch, b_inv)


def ring(h: Harness, s: Setup, *, to_tag: str = B_TAG) -> Sent:
    h.from_b(reply(s.b_invite, 180, "Ringing", to_tag=to_tag, contact=B_CONTACT))
    r = h.one(A)
    assert r.status == 180
    s.a_tag = r.msg.to_tag
    return r


def answer(h: Harness, s: Setup, *, to_tag: str = B_TAG) -> Sent:
    h.from_b(reply(s.b_invite, 200, "OK", to_tag=to_tag, contact=B_CONTACT, body=SDP_B))
    ok = h.one(A)
    assert ok.status == 200
    s.a_tag = s.a_tag or ok.msg.to_tag
    s.a_200 = ok
    return ok


def establish(h: Harness, *, call_id: str = A_CALL_ID) -> Setup:
    """Flow 1 up to and including A's ACK (and B's ACK)."""
    s = start_call(h, call_id=call_id)
    ring(h, s)
    answer(h, s)
    assert h.take_b() == []
    h.from_a(a_request(h, "ACK", cseq=A_CSEQ, to_tag=s.a_tag, call_id=call_id))
    ack = h.one(B)
    assert ack.method == "ACK"
    return s


def hang_up_from_a(h: Harness, s: Setup, *, cseq: int = A_CSEQ + 1, call_id: str = A_CALL_ID) -> None:
    h.from_a(a_request(h, "BYE", cseq=cseq, to_tag=s.a_tag, call_id=call_id))
    ok = h.one(A)
    assert ok.status == 200 and ok.msg.cseq == (cseq, "BYE")
    bye = h.one(B)
    assert bye.method == "BYE"
    h.from_b(reply(bye, 200, "OK"))
    assert h.take_a() == [] and h.take_b() == []


def via_branch(sent: Sent) -> str | None:
    return sent.msg.top_via.branch


# -- 1. basic call ---------------------------------------------------------------------------
