"""What a client transaction belongs to: typed transaction users, set on ``txn.user``.

Call control matches a response or a timeout on the user's type instead of looking the
transaction up in per-call tables. Frozen: a user never changes once its request is out.
``eq=False``: users compare by identity (a call is not hashable, and two users are never "equal").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from .model import Call


@dataclass(frozen=True, slots=True, eq=False)
class BInvite:
    """The outbound INVITE (RFC 3261 §13.2.1) to the current or an abandoned target
    (only ``call.b_invite`` is current: a 2xx on another is ACKed and hung up)."""

    call: Call


@dataclass(frozen=True, slots=True, eq=False)
class Relay:
    """A request relayed from the other leg: its final response answers ``server`` there."""

    call: Call
    server: ServerTransaction
    #: the relayed request carried an SDP offer (RFC 3264 §8): its 2xx carries the answer
    offer: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Refresh:
    """Our own session refresh on ``leg`` (RFC 4028 §7.4 / §9): UPDATE or re-INVITE."""

    call: Call
    leg: str


@dataclass(frozen=True, slots=True, eq=False)
class Bye:
    """Our BYE on ``leg`` (RFC 3261 §15.1.1): its final response or timeout ends that leg."""

    call: Call
    leg: str


@dataclass(frozen=True, slots=True, eq=False)
class Prack:
    """Our PRACK of the callee's reliable provisional (RFC 3262 §4): nothing waits for its answer."""

    call: Call


@dataclass(frozen=True, slots=True, eq=False)
class Ping:
    """A gateway health OPTIONS (RFC 3261 §11): its answer or timeout goes to the gateway monitor."""

    uri: str
    threshold: int


CallUser = BInvite | Relay | Refresh | Bye | Prack
TxnUser = CallUser | Ping

__all__ = ["BInvite", "Bye", "CallUser", "Ping", "Prack", "Refresh", "Relay", "TxnUser"]
