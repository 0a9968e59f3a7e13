"""Events the sans-I/O SIP stack hands to its transaction user.

The stack builds them (transactions report through :class:`~b2bua.sip.transaction.TransactionHost`,
so this module depends on the transaction layer and never the other way round). ``Peer`` lives in
:mod:`b2bua.sip.peer` and is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .message import Request, Response
from .peer import Peer
from .transaction import ClientTransaction, ServerTransaction


@dataclass(slots=True)
class RequestReceived:
    """A new request (§17.2). ``transaction`` is None for an ACK to a 2xx."""

    request: Request
    transaction: ServerTransaction | None
    peer: Peer


@dataclass(slots=True)
class ResponseReceived:
    """A response matched to a client transaction (§17.1.3), 2xx retransmissions included."""

    response: Response
    transaction: ClientTransaction


@dataclass(slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE server transaction (§9.2); 200 was already sent."""

    transaction: ServerTransaction
    request: Request


@dataclass(slots=True)
class TransactionTimeout:
    """Timer B or F fired: the request got no final response (§17.1.1.2, §17.1.2.2)."""

    transaction: ClientTransaction


@dataclass(slots=True)
class TransportError:
    """The transport reported a failure sending for this transaction (§17.1.4)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(slots=True)
class AckTimeout:
    """A 2xx we sent was never acknowledged within 64*T1 (§13.3.1.4)."""

    transaction: ServerTransaction


#: Everything :meth:`~b2bua.sip.stack.SipStack.next_event` can return.
Event: TypeAlias = (
    RequestReceived | ResponseReceived | CancelReceived | TransactionTimeout | TransportError | AckTimeout
)


__all__ = ["AckTimeout", "CancelReceived", "Event", "Peer", "RequestReceived", "ResponseReceived",
           "TransactionTimeout", "TransportError"]
