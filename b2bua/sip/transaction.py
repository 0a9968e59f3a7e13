"""RFC 3261 §17 transaction state machines, updated by RFC 6026.

A transaction sits between the transport layer below it (§18) and the
transaction user above it (the UAS/UAC core and call control, §17), as in
pjsip's transport -> transaction -> dialog -> UA layering. It reaches both only
through the narrow :class:`TransactionHost` protocol defined here; the stack
(:class:`b2bua.sip.stack.SipStack`) implements that protocol, so the dependency
runs stack -> transaction and never back.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from .message import Request, Response
from .peer import Peer
from .timers import TimerHandle, TimerQueue


class TimerValues(Protocol):
    """The RFC 3261 Table 4 values a transaction reads (§17.1.1.1), in seconds."""

    @property
    def t1(self) -> float:
        """T1, the RTT estimate (§17.1.1.1)."""
        ...

    @property
    def t2(self) -> float:
        """T2, the cap on non-INVITE request and INVITE response retransmit intervals (§17.1.2.2)."""
        ...

    @property
    def t4(self) -> float:
        """T4, how long a message may stay in the network (§17.1.2.2)."""
        ...

    @property
    def b(self) -> float:
        """64*T1: Timers B, F, H, J, L and M (§17.1.1.2, RFC 6026 §8.4)."""
        ...


class TransactionHost(Protocol):
    """What a transaction needs from the layers around it, and nothing more.

    Below it: a clock (the time of the latest input), a timer queue and the
    timer values (§17.1.1.1), and a transport to send bytes with (§18). Above
    it: the transaction user (TU) that receives its events (§17), and the UAS
    and UAC cores, which own 2xx retransmission (§13.3.1.4, RFC 6026 §7.1) and
    CANCEL construction (§9.1). :class:`~b2bua.sip.stack.SipStack` implements it.
    """

    @property
    def now(self) -> float:
        """The time of the latest input, in seconds; never goes backwards."""
        ...

    @property
    def timers(self) -> TimerQueue:
        """The queue transaction timers (A through M, §17) are scheduled on, against :attr:`now`."""
        ...

    @property
    def config(self) -> TimerValues:
        """The timer values T1, T2, T4 and 64*T1 (§17.1.1.1, Table 4)."""
        ...

    def transport_send(self, data: bytes, peer: Peer, txn: Transaction | None) -> None:
        """Hand one serialized message to the transport layer for ``peer`` (§18.1.1, §18.2.2).

        ``txn`` is the transaction sending it (None for a message sent outside
        any transaction), so the transport can report a failure back (§17.1.4,
        §17.2.4).
        """
        ...

    def response_received(self, resp: Response, txn: ClientTransaction) -> None:
        """Pass a response up to the transaction user (§17.1.1.2, §17.1.3), 2xx retransmissions included."""
        ...

    def timed_out(self, txn: ClientTransaction) -> None:
        """Tell the transaction user that Timer B or F fired: no final response (§17.1.1.2, §17.1.2.2)."""
        ...

    def ack_timed_out(self, txn: ServerTransaction) -> None:
        """Tell the transaction user that a 2xx was never acknowledged within 64*T1 (§13.3.1.4)."""
        ...

    def forget_transaction(self, txn: Transaction) -> None:
        """Remove a transaction that reached Terminated from the matching tables (§17.1.3, §17.2.3)."""
        ...

    def start_2xx_retransmit(self, txn: ServerTransaction, data: bytes, to_tag: str | None) -> None:
        """UAS core: keep resending this 2xx to INVITE until its ACK arrives (§13.3.1.4, RFC 6026 §7.1).

        ``data`` is the serialized 2xx, ``to_tag`` the tag of the dialog it
        creates (an ACK with another To tag does not stop it).
        """
        ...

    def send_cancel(self, txn: ClientTransaction) -> None:
        """UAC core: build and send a CANCEL for this pending INVITE now (§9.1).

        The transaction calls it when a provisional response arrives for an
        INVITE whose CANCEL had to wait for one (§9.1: no CANCEL before a
        provisional).
        """
        ...


class State(Enum):
    """Transaction states of §17.1 and §17.2, with Accepted from RFC 6026 §7.1 and §8.4."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Transaction:
    """What client and server transactions share: identity, peer, state and two timer slots (§17).

    ``host`` is the :class:`TransactionHost` the transaction sends, schedules
    and reports through; a transaction touches nothing else of the stack.
    """

    __slots__ = ("host", "key", "request", "peer", "state", "reliable", "_timer", "_timer2", "user")

    def __init__(self, host: TransactionHost, key: Any, request: Request, peer: Peer):
        self.host = host
        self.key = key
        self.request = request
        self.peer = peer
        self.state = State.TRYING
        self.reliable = peer.transport != "udp"
        self._timer: TimerHandle | None = None
        self._timer2: TimerHandle | None = None
        #: Free slot for the transaction user (the call that owns it).
        self.user: Any = None

    @property
    def method(self) -> str:
        return self.request.method

    def _arm(self, delay: float, callback: Callable[..., object], *args: Any, second: bool = False) -> None:
        """Start a timer ``delay`` seconds from the host's clock, replacing the one in its slot."""
        handle = self.host.timers.call_at(self.host.now + delay, callback, *args)
        if second:
            if self._timer2 is not None:
                self._timer2.cancel()
            self._timer2 = handle
        else:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = handle

    def _cancel_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer2 is not None:
            self._timer2.cancel()
            self._timer2 = None

    def terminate(self) -> None:
        """Enter Terminated: stop the timers and let the host forget the transaction (§17.1.1.2, §17.2.1)."""
        if self.state is not State.TERMINATED:
            self.state = State.TERMINATED
            self._cancel_timers()
            self.host.forget_transaction(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state.value}>"


class ClientTransaction(Transaction):
    """INVITE (§17.1.1) and non-INVITE (§17.1.2) client transactions."""

    __slots__ = ("data", "interval", "cancel_pending", "cancelled")

    def __init__(self, host: TransactionHost, key: Any, request: Request, peer: Peer):
        super().__init__(host, key, request, peer)
        self.data = request.serialize()
        self.interval = host.config.t1
        self.cancel_pending = False
        self.cancelled = False

    def start(self) -> None:
        cfg = self.host.config
        invite = self.request.method == "INVITE"
        self.state = State.CALLING if invite else State.TRYING
        self.host.transport_send(self.data, self.peer, self)
        if not self.reliable:
            self._arm(cfg.t1, self._retransmit)  # Timer A / Timer E
        self._arm(cfg.b, self._timeout, second=True)  # Timer B / Timer F

    def _retransmit(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            cfg = self.host.config
            if self.request.method == "INVITE":
                if self.state is not State.CALLING:
                    return
                self.interval *= 2  # Timer A doubles without a cap (§17.1.1.2)
            elif self.state is State.PROCEEDING:
                self.interval = cfg.t2  # §17.1.2.2: T2 in Proceeding
            else:
                self.interval = min(self.interval * 2, cfg.t2)
            self.host.transport_send(self.data, self.peer, self)
            self._arm(self.interval, self._retransmit)

    def _timeout(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if self.request.method == "INVITE" and self.state is State.PROCEEDING:
                return  # Timer B only covers Calling; the TU limits ringing time
            self.terminate()
            self.host.timed_out(self)
        elif self.state is State.ACCEPTED:
            self.terminate()  # Timer M (RFC 6026 §8.4)

    def expire_after_cancel(self) -> None:
        """§9.1: with no final response 64*T1 after our CANCEL, give the INVITE up."""
        self._arm(self.host.config.b, self._cancel_expired, second=True)

    def _cancel_expired(self) -> None:
        if self.state in (State.CALLING, State.PROCEEDING):
            self.terminate()
            self.host.timed_out(self)

    def receive_response(self, resp: Response) -> None:
        status = resp.status
        state = self.state
        cfg = self.host.config
        if self.request.method == "INVITE":
            if state in (State.CALLING, State.PROCEEDING):
                if status < 200:
                    if state is State.CALLING:
                        self.state = State.PROCEEDING
                        if self._timer is not None:
                            self._timer.cancel()
                            self._timer = None
                    self.host.response_received(resp, self)
                    if self.cancel_pending:
                        self.cancel_pending = False
                        self.host.send_cancel(self)
                elif status < 300:
                    self.state = State.ACCEPTED  # RFC 6026 §8.4
                    self._cancel_timers()
                    self._arm(cfg.b, self._timeout, second=True)  # Timer M
                    self.host.response_received(resp, self)
                else:
                    self.state = State.COMPLETED
                    self._cancel_timers()
                    self._send_ack(resp)
                    self._arm(0 if self.reliable else 32.0, self.terminate)  # Timer D
                    self.host.response_received(resp, self)
            elif state is State.COMPLETED and status >= 300:
                self._send_ack(resp)  # retransmitted final response
            elif state is State.ACCEPTED and 200 <= status < 300:
                self.host.response_received(resp, self)  # TU re-sends its ACK
        else:
            if state in (State.TRYING, State.PROCEEDING):
                if status < 200:
                    self.state = State.PROCEEDING
                    self.host.response_received(resp, self)
                else:
                    self.state = State.COMPLETED
                    self._cancel_timers()
                    if self.reliable:
                        self.terminate()
                    else:
                        self._arm(cfg.t4, self.terminate)  # Timer K
                    self.host.response_received(resp, self)

    def _send_ack(self, resp: Response) -> None:
        """ACK for a non-2xx final response, inside the transaction (§17.1.1.3)."""
        req = self.request
        headers = [h for h in req.headers if h[0] in ("via", "call-id", "from", "route", "max-forwards")]
        via = [h for h in headers if h[0] == "via"][:1]
        rest = [h for h in headers if h[0] != "via"]
        ack = Request("ACK", req.uri, via + rest)
        ack.add("to", resp.get("to") or "")
        ack.add("cseq", f"{req.cseq[0]} ACK")
        self.host.transport_send(ack.serialize(), self.peer, self)


class ServerTransaction(Transaction):
    """INVITE (§17.2.1, RFC 6026 §7.1) and non-INVITE (§17.2.2) server transactions."""

    __slots__ = ("last_data", "interval", "merge_key", "to_tag")

    def __init__(self, host: TransactionHost, key: Any, request: Request, peer: Peer):
        super().__init__(host, key, request, peer)
        self.last_data: bytes | None = None
        self.interval = host.config.t1
        self.merge_key: Any = None
        #: The To tag we answer with (set by the TU for dialog-creating responses).
        self.to_tag: str | None = None
        self.state = State.PROCEEDING if request.method == "INVITE" else State.TRYING

    def receive_retransmission(self) -> None:
        """The same request arrived again: resend the last response (§17.2.1, §17.2.2)."""
        if self.last_data is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            self.host.transport_send(self.last_data, self.peer, self)

    def respond(self, resp: Response) -> None:
        cfg = self.host.config
        status = resp.status
        if self.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED, State.ACCEPTED):
            if self.state is State.ACCEPTED and 200 <= status < 300:
                self.host.transport_send(resp.serialize(), self.peer, self)  # UAS core 2xx retransmit
            return
        data = resp.serialize()
        self.last_data = data
        self.host.transport_send(data, self.peer, self)
        if self.request.method == "INVITE":
            if status < 200:
                return
            if status < 300:
                self.state = State.ACCEPTED  # RFC 6026 §7.1
                self._arm(cfg.b, self.terminate, second=True)  # Timer L
                self.host.start_2xx_retransmit(self, data, resp.to_tag)
            else:
                self.state = State.COMPLETED
                if not self.reliable:
                    self._arm(cfg.t1, self._retransmit_g)  # Timer G
                self._arm(cfg.b, self._timeout_h, second=True)  # Timer H
        else:
            if status < 200:
                self.state = State.PROCEEDING
                return
            self.state = State.COMPLETED
            if self.reliable:
                self.terminate()
            else:
                self._arm(cfg.b, self.terminate, second=True)  # Timer J

    def _retransmit_g(self) -> None:
        if self.state is State.COMPLETED and self.last_data is not None:
            self.host.transport_send(self.last_data, self.peer, self)
            self.interval = min(self.interval * 2, self.host.config.t2)
            self._arm(self.interval, self._retransmit_g)

    def _timeout_h(self) -> None:
        if self.state is State.COMPLETED:
            self.terminate()  # Timer H: the ACK never came; inform the TU
            self.host.ack_timed_out(self)

    def receive_ack(self) -> None:
        """ACK for our non-2xx final response (§17.2.1)."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._arm(0 if self.reliable else self.host.config.t4, self.terminate, second=True)  # Timer I
