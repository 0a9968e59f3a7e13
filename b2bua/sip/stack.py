"""The sans-I/O SIP stack: transport-level checks and transaction matching.

Feed it bytes with :meth:`SipStack.receive`, read :meth:`SipStack.next_event`,
send what :meth:`SipStack.datagrams_to_send` returns and call
:meth:`SipStack.handle_timer` at :meth:`SipStack.get_timer`. Nothing here
touches a socket or a clock; ``now`` is always passed in (seconds, float).

Layering (as pjsip's transport -> transaction -> dialog -> UA): the stack is the
transport layer and the transaction table, and implements
:class:`~b2bua.sip.transaction.TransactionHost` for its transactions; this module
imports the transaction module, never the other way round.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock
from .errors import ParseError, SipError
from .events import (
    AckTimeout,
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
    TransportError,
)
from .gate import Gate
from .grammar import split_commas
from .message import (
    MAGIC_COOKIE,
    Header,
    PartialRequest,
    Request,
    Response,
    parse_message,
    validate_request,
    validate_response,
)
from .timers import TimerConfig, TimerHandle, TimerQueue
from .transaction import ClientTransaction, ServerTransaction, State, Transaction

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_RESPONSE_COPY = ("via", "from", "to", "call-id", "cseq")


def make_response(req: Request | None, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: list[Header] | None = None) -> Response:
    """Build a response copying Via, From, To, Call-ID and CSeq (§8.2.6.2).

    ``headers`` may be given instead of ``req`` for a request that failed to parse.
    """
    src = req.headers if req is not None else (headers or [])
    copied = [h for h in src if h[0] in _RESPONSE_COPY]
    resp = Response(status, reason or REASONS.get(status, "Unknown"), copied)
    if to_tag and status > 100:
        for i, h in enumerate(copied):
            if h[0] == "to":
                copied[i] = (h[0], h[1], with_tag(h[2], to_tag))
                break
    return resp


def with_tag(value: str, tag: str) -> str:
    """A To value with our ``tag`` (§8.2.6.2), unless it carries a tag already (``;tag=``, in any case and
    spacing: §7.3.1 allows whitespace around the ``=``)."""
    if ";tag=" in value.replace(" ", "").replace("\t", "").lower():
        return value
    return f"{value};tag={tag}"


@dataclass(slots=True)
class StackConfig:
    """What the stack needs to know about itself."""

    timers: TimerConfig = field(default_factory=TimerConfig)
    #: Our sent-by per transport (``"udp"`` -> ("127.0.0.1", 5060)).
    local: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Answer UDP requests to the source address and port even without ``rport``
    #: (symmetric response routing, as SBCs do for NAT; RFC 3581 §4).
    force_rport: bool = True
    #: live transactions (both kinds) beyond which a new request gets a stateless 503 (counted as
    #: ``limit:transactions``): what a flood can make the stack hold is bounded
    max_transactions: int = 100_000

    @property
    def t1(self) -> float:
        return self.timers.t1

    @property
    def t2(self) -> float:
        return self.timers.t2

    @property
    def t4(self) -> float:
        return self.timers.t4

    @property
    def b(self) -> float:
        return self.timers.b


class _Pending2xx:
    __slots__ = ("txn", "data", "interval", "deadline", "timer", "to_tag")

    def __init__(self, txn: ServerTransaction, data: bytes, interval: float, deadline: float,
                 to_tag: str | None):
        self.txn = txn
        self.to_tag = to_tag
        self.data = data
        self.interval = interval
        self.deadline = deadline
        self.timer: TimerHandle | None = None


class SipStack:
    """Transport and transaction layers of RFC 3261 (§17, §18) without I/O.

    The clock is an input. Every entry point (:meth:`receive`,
    :meth:`handle_timer`, :meth:`transport_error`, :meth:`send_request`,
    :meth:`send_ack`, :meth:`cancel`, :meth:`respond`) takes the current time as
    ``now`` and the stack keeps the latest one; :attr:`now` reads it back and is
    read-only (assigning it raises :class:`AttributeError`). It never goes
    backwards: an input carrying an older ``now`` than one already seen leaves it
    where it is, so timers (§17.1.1.2, §17.2.1, §13.3.1.4) are always scheduled
    from the latest time known. To move the clock without SIP traffic, call
    :meth:`handle_timer` with the new time.

    The stack is the :class:`~b2bua.sip.transaction.TransactionHost` of its
    transactions: :attr:`now`, :attr:`timers`, :attr:`config`,
    :meth:`transport_send`, :meth:`response_received`, :meth:`timed_out`, :meth:`ack_timed_out`,
    :meth:`forget_transaction`,
    :meth:`start_2xx_retransmit` and :meth:`send_cancel`.
    """

    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig()
        self.timers = TimerQueue()
        #: The time of the latest input (see :attr:`now`): the stack's own clock, moved only by its inputs.
        self._clock = Clock()
        self.stats: Counter[str] = Counter()
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Peer]] = []
        self._server: dict[Any, ServerTransaction] = {}
        self._client: dict[Any, ClientTransaction] = {}
        self._merge: dict[Any, ServerTransaction] = {}
        #: server transactions by key without the method, for CANCEL matching (§9.2)
        self._cancellable: dict[Any, ServerTransaction] = {}
        self._pending_2xx: dict[tuple[str, int], _Pending2xx] = {}
        #: what new out-of-dialog requests must pass before they get a transaction (None: everything passes)
        self.gate: Gate | None = None
        prefix = os.urandom(4).hex()
        self._ids = (f"{prefix}{n:x}" for n in itertools.count(1))

    # -- the clock ----------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The time of the latest input, in seconds: read-only and never decreasing."""
        return self._clock.now

    # -- identifiers ------------------------------------------------------------------
    def new_id(self) -> str:
        """A unique token: process-random prefix plus a counter."""
        return next(self._ids)

    def new_branch(self) -> str:
        """A fresh Via branch with the RFC 3261 magic cookie (§8.1.1.7)."""
        return MAGIC_COOKIE + next(self._ids)

    # -- driver interface ---------------------------------------------------------------
    def next_event(self) -> Event | None:
        """The oldest event for the transaction user, or None."""
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        """Take the messages queued for the transport since the last call."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called, or None if no timer is armed."""
        return self.timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now`` (or at the latest time seen, if that is later)."""
        self._clock.advance(now)
        self.timers.run_due(self._clock.now)

    def transport_error(self, peer: Peer, now: float) -> None:
        """A send to ``peer`` failed: end the transactions using it (§17.1.4, §17.2.4)."""
        self._clock.advance(now)
        for table in (self._client, self._server):
            for txn in [t for t in table.values() if t.peer == peer]:
                txn.terminate()
                self._emit(TransportError(txn))

    @property
    def transaction_count(self) -> int:
        return len(self._client) + len(self._server)

    # -- receiving ----------------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """Handle one datagram or one framed stream message from ``peer``."""
        self._clock.advance(now)
        self.stats["received"] += 1
        try:
            msg = parse_message(data, stream=peer.transport != "udp")
        except PartialRequest as err:
            self._reject(err, peer, err.headers, err.is_request)
            return
        except SipError as err:
            self._reject(err, peer, None, True)
            return
        try:
            if isinstance(msg, Request):
                validate_request(msg)
            else:
                validate_response(msg)
        except SipError as err:
            self._reject(err, peer, msg.headers, isinstance(msg, Request))
            return
        if isinstance(msg, Request):
            self._receive_request(msg, peer)
        else:
            self._receive_response(msg)

    def _reject(self, err: SipError, peer: Peer, headers: list[Header] | None, is_request: bool) -> None:
        """Answer a malformed request from its raw headers (§8.2.6.2), or drop it."""
        self.stats["parse_errors"] += 1
        if not is_request or headers is None or not any(h[0] == "via" for h in headers):
            return  # a broken response, or nothing to answer with: drop (§18.1.2)
        if any(h[0] == "cseq" and h[2].rstrip().endswith("ACK") for h in headers):
            return  # an ACK is never answered (§17.2.1)
        try:
            resp = make_response(None, err.status, err.reason, headers=headers)
            resp.add("warning", f'399 b2bua "{_warning_text(err.detail)}"')
            self._out.append((resp.serialize(), peer))
            self.stats["sent"] += 1
        except SipError:
            pass

    def _response_peer(self, req: Request, peer: Peer) -> Peer:
        """Where responses go (§18.2.2 with RFC 3581), recording received/rport (§18.2.1)."""
        via = req.top_via
        params = via.params
        changed = False
        if via.host.strip("[]") != peer.host:
            params["received"] = peer.host
            changed = True
        rport = "rport" in params
        if rport:
            params["rport"] = str(peer.port)
            changed = True
        if changed:
            i = _first_index(req.headers, "via")
            h = req.headers[i]
            req.headers[i] = (h[0], h[1], _replace_first_value(h[2], str(via)))
        if peer.transport != "udp" or rport or self.config.force_rport:
            return peer
        return Peer("udp", peer.host, via.port or 5060)

    @staticmethod
    def _server_key(req: Request) -> Any:
        via = req.top_via
        branch = via.branch
        method = "INVITE" if req.method == "ACK" else req.method
        if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
            return (branch, via.host, via.port, method)
        # RFC 2543 matching (§17.2.3 last paragraph; RFC 4475 §3.2.1)
        return ("2543", req.call_id, req.from_tag, req.cseq[0], method, req.uri, str(via))

    def _receive_request(self, req: Request, peer: Peer) -> None:
        key = self._server_key(req)
        method = req.method
        if method == "ACK":
            txn = self._server.get(key)
            if txn is not None and txn.state in (State.COMPLETED, State.CONFIRMED):
                txn.receive_ack()
                return
            pkey = (req.call_id, req.cseq[0])
            pending = self._pending_2xx.get(pkey)
            if pending is not None and pending.to_tag in (None, req.to_tag):
                del self._pending_2xx[pkey]  # the ACK for *this* 2xx (§13.3.1.4)
                if pending.timer is not None:
                    pending.timer.cancel()
            self._emit(RequestReceived(req, None, peer))
            return
        txn = self._server.get(key)
        if txn is not None:
            self.stats["retransmissions_received"] += 1
            txn.receive_retransmission()
            return
        resp_peer = self._response_peer(req, peer)
        if method == "CANCEL":
            self._receive_cancel(req, key, resp_peer)
            return
        if self.gate is not None and req.to_tag is None:  # a new dialog or a lone request: the gate first
            refusal = self.gate.check(req, peer.host, self.now, peer.transport)
            if refusal is not None:
                if refusal.status is not None:  # stateless (§8.2.7 ... a transaction is what it must not cost)
                    self._refuse(req, refusal.status, refusal.retry_after, resp_peer)
                return
        merge_key = None
        if req.to_tag is None:
            merge_key = (req.from_tag, req.call_id, req.cseq[0], method)
            other = self._merge.get(merge_key)
            if other is not None and other.key != key:
                self.stats["merged"] += 1
                self._out.append((make_response(req, 482, to_tag=self.new_id()).serialize(), resp_peer))
                return  # merged request (§8.2.2.2)
        if self.transaction_count >= self.config.max_transactions:
            self.stats["limit:transactions"] += 1
            self._refuse(req, 503, 5, resp_peer)
            return
        txn = ServerTransaction(self, key, req, resp_peer)
        self._server[key] = txn
        self._cancellable[_without_method(key)] = txn
        if merge_key is not None:
            txn.merge_key = merge_key
            self._merge[merge_key] = txn
        self._emit(RequestReceived(req, txn, peer))

    def _refuse(self, req: Request, status: int, retry_after: int | None, peer: Peer) -> None:
        """A stateless final answer (§8.2.7): no transaction, so a retransmission is answered anew."""
        resp = make_response(req, status, to_tag=self.new_id())
        if retry_after is not None:
            resp.add("retry-after", str(retry_after))
        self._out.append((resp.serialize(), peer))
        self.stats["sent"] += 1

    def _receive_cancel(self, req: Request, key: Any, peer: Peer) -> None:
        """§9.2: match the INVITE by everything but the method; answer the CANCEL ourselves."""
        txn = ServerTransaction(self, key, req, peer)
        self._server[key] = txn
        target = self._cancellable.get(_without_method(key))
        if target is None or target.state is State.TERMINATED:
            txn.respond(make_response(req, 481, to_tag=self.new_id()))
            return
        txn.respond(make_response(req, 200, to_tag=target.to_tag or self.new_id()))
        if target.request.method == "INVITE" and target.state is State.PROCEEDING:
            self._emit(CancelReceived(target, req))

    def _receive_response(self, resp: Response) -> None:
        via = resp.top_via
        key = (via.branch, resp.cseq[1])
        txn = self._client.get(key)
        if txn is None:
            self.stats["stray_responses"] += 1
            return  # §18.1.2: no transaction, drop
        txn.receive_response(resp)

    # -- sending ------------------------------------------------------------------------
    def _via_for(self, peer: Peer, branch: str | None = None) -> str:
        host, port = self.config.local.get(peer.transport) or self.config.local.get("udp", ("127.0.0.1", 5060))
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"SIP/2.0/{peer.transport.upper()} {host}:{port};branch={branch or self.new_branch()};rport"

    def send_request(self, req: Request, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction for ``req`` (not ACK): adds our Via on top (§8.1.1.7)."""
        self._clock.advance(now)
        branch = self.new_branch()
        req.insert("via", self._via_for(peer, branch))
        key = (branch, req.method)  # (our own Via: known, not parsed back)
        txn = ClientTransaction(self, key, req, peer)
        self._client[key] = txn
        txn.start()
        return txn

    def send_ack(self, ack: Request, peer: Peer, now: float) -> None:
        """Send an ACK for a 2xx outside any transaction (§13.2.2.4, §17.1.1.3)."""
        self._clock.advance(now)
        ack.insert("via", self._via_for(peer))
        self.transport_send(ack.serialize(), peer, None)

    def cancel(self, txn: ClientTransaction, now: float) -> None:
        """CANCEL a pending INVITE; deferred until a provisional arrives (§9.1)."""
        self._clock.advance(now)
        if txn.cancelled or txn.request.method != "INVITE":
            return
        if txn.state is State.CALLING:
            txn.cancel_pending = True
        elif txn.state is State.PROCEEDING:
            self.send_cancel(txn)

    def send_cancel(self, txn: ClientTransaction) -> None:
        """Build and send a CANCEL for a pending INVITE now (§9.1); part of the TransactionHost.

        Does nothing unless ``txn`` is an INVITE client transaction in
        Proceeding that was not cancelled yet: §9.1 forbids a CANCEL before a
        provisional response (use :meth:`cancel`, which defers it) and after a
        final one.
        """
        if txn.cancelled or txn.request.method != "INVITE" or txn.state is not State.PROCEEDING:
            return
        txn.cancelled = True
        txn.expire_after_cancel()
        inv = txn.request
        headers = [h for h in inv.headers if h[0] in ("via", "call-id", "from", "to", "route", "max-forwards")]
        vias = [h for h in headers if h[0] == "via"][:1]
        cancel = Request("CANCEL", inv.uri, vias + [h for h in headers if h[0] != "via"])
        cancel.add("cseq", f"{inv.cseq[0]} CANCEL")
        key = (txn.key[0], "CANCEL")  # the INVITE's branch (§9.1): its Via, copied
        ctxn = ClientTransaction(self, key, cancel, txn.peer)
        ctxn.user = txn.user
        self._client[key] = ctxn
        ctxn.start()

    def respond(self, txn: ServerTransaction, resp: Response, now: float) -> None:
        """Send a response through its server transaction."""
        self._clock.advance(now)
        txn.respond(resp)

    def send_stateless(self, data: bytes, peer: Peer) -> None:
        """Send a message outside any transaction (a stateless response, §8.2.7)."""
        self.transport_send(data, peer, None)

    # -- TransactionHost: what transactions use (b2bua.sip.transaction) ------------------
    def transport_send(self, data: bytes, peer: Peer, txn: Transaction | None) -> None:
        """Queue one serialized message for ``peer`` (§18.1.1, §18.2.2); see :meth:`datagrams_to_send`."""
        self.stats["sent"] += 1
        self._out.append((data, peer))

    def response_received(self, resp: Response, txn: ClientTransaction) -> None:
        """A transaction's response for the transaction user (§17.1.3); see :meth:`next_event`."""
        self._events.append(ResponseReceived(resp, txn))

    def timed_out(self, txn: ClientTransaction) -> None:
        """Timer B or F fired (§17.1.1.2, §17.1.2.2): a :class:`TransactionTimeout` for the user."""
        self._events.append(TransactionTimeout(txn))

    def ack_timed_out(self, txn: ServerTransaction) -> None:
        """No ACK for our 2xx within 64*T1 (§13.3.1.4): an :class:`AckTimeout` for the user."""
        self._events.append(AckTimeout(txn))

    def _emit(self, event: Event) -> None:
        """Queue an event for the transaction user (§17); see :meth:`next_event`."""
        self._events.append(event)

    def forget_transaction(self, txn: Transaction) -> None:
        """Drop a terminated transaction from the matching tables (§17.1.3, §17.2.3, §9.2, §8.2.2.2)."""
        if isinstance(txn, ServerTransaction):
            self._server.pop(txn.key, None)
            ckey = _without_method(txn.key)
            if self._cancellable.get(ckey) is txn:
                del self._cancellable[ckey]
            if txn.merge_key is not None and self._merge.get(txn.merge_key) is txn:
                del self._merge[txn.merge_key]
        else:
            self._client.pop(txn.key, None)

    def start_2xx_retransmit(self, txn: ServerTransaction, data: bytes, to_tag: str | None) -> None:
        """UAS core: resend a 2xx to INVITE until its ACK arrives (§13.3.1.4, RFC 6026 §7.1).

        Every T1, doubling up to T2, for 64*T1; an :class:`AckTimeout` is emitted
        if no ACK with this ``to_tag`` arrives in that time.
        """
        key = (txn.request.call_id, txn.request.cseq[0])
        old = self._pending_2xx.pop(key, None)
        if old is not None and old.timer is not None:
            old.timer.cancel()
        pending = _Pending2xx(txn, data, self.config.t1, self.now + self.config.b, to_tag)
        self._pending_2xx[key] = pending
        # "independent of whatever transport protocols are used" (§13.3.1.4, RFC 6026 §8.1)
        pending.timer = self.timers.call_at(self.now + pending.interval, self._2xx_tick, key, pending)

    def _2xx_tick(self, key: tuple[str, int], pending: _Pending2xx) -> None:
        if self.now >= pending.deadline:
            self._2xx_timeout(key, pending)
            return
        self.transport_send(pending.data, pending.txn.peer, pending.txn)
        pending.interval = min(pending.interval * 2, self.config.t2)
        pending.timer = self.timers.call_at(min(self.now + pending.interval, pending.deadline),
                                            self._2xx_tick, key, pending)

    def _2xx_timeout(self, key: tuple[str, int], pending: _Pending2xx) -> None:
        if self._pending_2xx.get(key) is pending:
            del self._pending_2xx[key]
            self._emit(AckTimeout(pending.txn))

    def stop_2xx_retransmit(self, call_id: str, cseq: int) -> None:
        """Stop resending a 2xx (the dialog was torn down another way)."""
        pending = self._pending_2xx.pop((call_id, cseq), None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()


def _without_method(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A server transaction key minus its method (branch keys: index 3; RFC 2543 keys: index 4)."""
    if key[0] == "2543":
        return key[:4] + key[5:]
    return key[:3]


def _first_index(headers: list[Header], key: str) -> int:
    for i, h in enumerate(headers):
        if h[0] == key:
            return i
    raise ParseError(f"missing {key}")


def _replace_first_value(value: str, first: str) -> str:
    parts = split_commas(value)
    if len(parts) == 1:
        return first
    return ", ".join([first] + parts[1:])


def _warning_text(detail: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "?" for c in detail)[:100]
