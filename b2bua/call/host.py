"""The narrow interface the parts of call control use to act: what :class:`~b2bua.call.b2bua.B2BUA`
offers the in-dialog relay, the session timers and the reliable provisionals.

They never touch the SIP stack, the call table or the clock's owner directly, so each can be
read (and tested) on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from ..clock import Clock
from ..sip.events import Peer
from ..sip.message import Request, Response
from ..sip.timers import TimerConfig, TimerHandle
from ..sip.transaction import ClientTransaction, ServerTransaction
from .model import Call
from .settings import B2BUAConfig
from .users import TxnUser


class CallHost(Protocol):
    clock: Clock
    config: B2BUAConfig
    stats: Counter[str]

    @property
    def sip_timers(self) -> TimerConfig:
        """T1, T2 and 64*T1 of the stack (RFC 3261 §17.1.1.1)."""
        ...

    def send_request(self, req: Request, peer: Peer, user: TxnUser | None) -> ClientTransaction:
        """Send a request in a new client transaction owned by ``user``."""
        ...

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """Send an ACK for a 2xx (its own transaction, RFC 3261 §13.2.2.4)."""
        ...

    def send_stateless(self, data: bytes, peer: Peer) -> None:
        """Send bytes outside any transaction (a reliable provisional's retransmission)."""
        ...

    def respond(self, txn: ServerTransaction, resp: Response) -> None:
        """Answer a server transaction (and count the status)."""
        ...

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at ``when`` on the clock."""
        ...

    def contact(self, peer: Peer) -> str:
        """Our Contact towards ``peer``."""
        ...

    def local_host(self, peer: Peer) -> str:
        """Our host (address) towards ``peer``."""
        ...

    def hangup(self, call: Call, by: str, cause: str) -> None:
        """BYE both legs of an established call."""
        ...

    def abandon(self, call: Call, status: int, cause: str, by: str) -> None:
        """End an unanswered call: ``status`` to the caller, CANCEL to the callee."""
        ...

    def dtmf(self, call: Call, leg: str, digit: str, source: str) -> None:
        """A key pressed on ``leg`` (RFC 4733 or SIP INFO)."""
        ...


__all__ = ["CallHost"]
