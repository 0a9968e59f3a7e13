"""Events the sans-I/O SIP stack hands to its transaction user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Union

if TYPE_CHECKING:
    from .message import Request, Response
    from .transaction import ClientTransaction, ServerTransaction


class Peer(NamedTuple):
    """Where a message came from or goes to.

    ``conn`` identifies a stream connection (0 for UDP or "open one if needed").
    """

    transport: str
    host: str
    port: int
    conn: int = 0


@dataclass(slots=True)
class RequestReceived:
    """A new request (§17.2). ``transaction`` is None for an ACK to a 2xx."""

    request: "Request"
    transaction: "ServerTransaction | None"
    peer: Peer


@dataclass(slots=True)
class ResponseReceived:
    """A response matched to a client transaction (§17.1.3), 2xx retransmissions included."""

    response: "Response"
    transaction: "ClientTransaction"


@dataclass(slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE server transaction (§9.2); 200 was already sent."""

    transaction: "ServerTransaction"
    request: "Request"


@dataclass(slots=True)
class TransactionTimeout:
    """Timer B or F fired: the request got no final response (§17.1.1.2, §17.1.2.2)."""

    transaction: "ClientTransaction"


@dataclass(slots=True)
class TransportError:
    """The transport reported a failure sending for this transaction (§17.1.4)."""

    transaction: "ClientTransaction | ServerTransaction"


@dataclass(slots=True)
class AckTimeout:
    """A 2xx we sent was never acknowledged within 64*T1 (§13.3.1.4)."""

    transaction: "ServerTransaction"


Event = Union[RequestReceived, ResponseReceived, CancelReceived, TransactionTimeout, TransportError, AckTimeout]
