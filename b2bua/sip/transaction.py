"""RFC 3261 §17 transaction state machines, updated by RFC 6026.

Each transaction talks to its :class:`~b2bua.sip.stack.SipStack` only through
``stack._send``, ``stack.timers``, ``stack._emit`` and ``stack._forget``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from .events import AckTimeout, Peer, ResponseReceived, TransactionTimeout
from .message import Request, Response
from .timers import TimerHandle

if TYPE_CHECKING:
    from .stack import SipStack


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Transaction:
    __slots__ = ("stack", "key", "request", "peer", "state", "reliable", "_timer", "_timer2", "user")

    def __init__(self, stack: "SipStack", key: Any, request: Request, peer: Peer):
        self.stack = stack
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

    def _arm(self, delay: float, callback: Any, *args: Any, second: bool = False) -> None:
        handle = self.stack.timers.call_at(self.stack.now + delay, callback, *args)
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
        if self.state is not State.TERMINATED:
            self.state = State.TERMINATED
            self._cancel_timers()
            self.stack._forget(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state.value}>"


class ClientTransaction(Transaction):
    """INVITE (§17.1.1) and non-INVITE (§17.1.2) client transactions."""

    __slots__ = ("data", "interval", "last_response", "cancel_pending", "cancelled")

    def __init__(self, stack: "SipStack", key: Any, request: Request, peer: Peer):
        super().__init__(stack, key, request, peer)
        self.data = request.serialize()
        self.interval = stack.config.t1
        self.last_response: Response | None = None
        self.cancel_pending = False
        self.cancelled = False

    def start(self) -> None:
        cfg = self.stack.config
        invite = self.request.method == "INVITE"
        self.state = State.CALLING if invite else State.TRYING
        self.stack._send(self.data, self.peer, self)
        if not self.reliable:
            self._arm(cfg.t1, self._retransmit)  # Timer A / Timer E
        self._arm(cfg.b, self._timeout, second=True)  # Timer B / Timer F

    def _retransmit(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            cfg = self.stack.config
            if self.request.method == "INVITE":
                if self.state is not State.CALLING:
                    return
                self.interval *= 2  # Timer A doubles without a cap (§17.1.1.2)
            elif self.state is State.PROCEEDING:
                self.interval = cfg.t2  # §17.1.2.2: T2 in Proceeding
            else:
                self.interval = min(self.interval * 2, cfg.t2)
            self.stack._send(self.data, self.peer, self)
            self._arm(self.interval, self._retransmit)

    def _timeout(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if self.request.method == "INVITE" and self.state is State.PROCEEDING:
                return  # Timer B only covers Calling; the TU limits ringing time
            self.terminate()
            self.stack._emit(TransactionTimeout(self))
        elif self.state is State.ACCEPTED:
            self.terminate()  # Timer M (RFC 6026 §8.4)

    def expire_after_cancel(self) -> None:
        """§9.1: with no final response 64*T1 after our CANCEL, give the INVITE up."""
        self._arm(self.stack.config.b, self._cancel_expired, second=True)

    def _cancel_expired(self) -> None:
        if self.state in (State.CALLING, State.PROCEEDING):
            self.terminate()
            self.stack._emit(TransactionTimeout(self))

    def receive_response(self, resp: Response) -> None:
        status = resp.status
        state = self.state
        cfg = self.stack.config
        if self.request.method == "INVITE":
            if state in (State.CALLING, State.PROCEEDING):
                if status < 200:
                    if state is State.CALLING:
                        self.state = State.PROCEEDING
                        if self._timer is not None:
                            self._timer.cancel()
                            self._timer = None
                    self.last_response = resp
                    self.stack._emit(ResponseReceived(resp, self))
                    if self.cancel_pending:
                        self.cancel_pending = False
                        self.stack._send_cancel(self)
                elif status < 300:
                    self.state = State.ACCEPTED  # RFC 6026 §8.4
                    self._cancel_timers()
                    self._arm(cfg.b, self._timeout, second=True)  # Timer M
                    self.last_response = resp
                    self.stack._emit(ResponseReceived(resp, self))
                else:
                    self.state = State.COMPLETED
                    self._cancel_timers()
                    self.last_response = resp
                    self._send_ack(resp)
                    self._arm(0 if self.reliable else 32.0, self.terminate)  # Timer D
                    self.stack._emit(ResponseReceived(resp, self))
            elif state is State.COMPLETED and status >= 300:
                self._send_ack(resp)  # retransmitted final response
            elif state is State.ACCEPTED and 200 <= status < 300:
                self.stack._emit(ResponseReceived(resp, self))  # TU re-sends its ACK
        else:
            if state in (State.TRYING, State.PROCEEDING):
                if status < 200:
                    self.state = State.PROCEEDING
                    self.stack._emit(ResponseReceived(resp, self))
                else:
                    self.state = State.COMPLETED
                    self._cancel_timers()
                    self.last_response = resp
                    if self.reliable:
                        self.terminate()
                    else:
                        self._arm(cfg.t4, self.terminate)  # Timer K
                    self.stack._emit(ResponseReceived(resp, self))

    def _send_ack(self, resp: Response) -> None:
        """ACK for a non-2xx final response, inside the transaction (§17.1.1.3)."""
        req = self.request
        headers = [h for h in req.headers if h[0] in ("via", "call-id", "from", "route", "max-forwards")]
        via = [h for h in headers if h[0] == "via"][:1]
        rest = [h for h in headers if h[0] != "via"]
        ack = Request("ACK", req.uri, [list(h) for h in via + rest])
        ack.add("to", resp.get("to") or "")
        ack.add("cseq", f"{req.cseq[0]} ACK")
        self.stack._send(ack.serialize(), self.peer, self)


class ServerTransaction(Transaction):
    """INVITE (§17.2.1, RFC 6026 §7.1) and non-INVITE (§17.2.2) server transactions."""

    __slots__ = ("last_response", "last_data", "interval", "merge_key", "to_tag")

    def __init__(self, stack: "SipStack", key: Any, request: Request, peer: Peer):
        super().__init__(stack, key, request, peer)
        self.last_response: Response | None = None
        self.last_data: bytes | None = None
        self.interval = stack.config.t1
        self.merge_key: Any = None
        #: The To tag we answer with (set by the TU for dialog-creating responses).
        self.to_tag: str | None = None
        self.state = State.PROCEEDING if request.method == "INVITE" else State.TRYING

    def receive_retransmission(self) -> None:
        """The same request arrived again: resend the last response (§17.2.1, §17.2.2)."""
        if self.last_data is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            self.stack._send(self.last_data, self.peer, self)

    def respond(self, resp: Response) -> None:
        cfg = self.stack.config
        status = resp.status
        if self.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED, State.ACCEPTED):
            if self.state is State.ACCEPTED and 200 <= status < 300:
                self.stack._send(resp.serialize(), self.peer, self)  # UAS core 2xx retransmit
            return
        data = resp.serialize()
        self.last_response = resp
        self.last_data = data
        self.stack._send(data, self.peer, self)
        if self.request.method == "INVITE":
            if status < 200:
                return
            if status < 300:
                self.state = State.ACCEPTED  # RFC 6026 §7.1
                self._arm(cfg.b, self.terminate, second=True)  # Timer L
                self.stack._start_2xx_retransmit(self, data, resp.to_tag)
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
            self.stack._send(self.last_data, self.peer, self)
            self.interval = min(self.interval * 2, self.stack.config.t2)
            self._arm(self.interval, self._retransmit_g)

    def _timeout_h(self) -> None:
        if self.state is State.COMPLETED:
            self.terminate()  # Timer H: the ACK never came; inform the TU
            self.stack._emit(AckTimeout(self))

    def receive_ack(self) -> None:
        """ACK for our non-2xx final response (§17.2.1)."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._arm(0 if self.reliable else self.stack.config.t4, self.terminate, second=True)  # Timer I
