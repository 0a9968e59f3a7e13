"""What call control keeps per call: the two legs, the call, what a finished call leaves behind.

Plain data; the behaviour lives in :mod:`b2bua.call.b2bua` (dispatch, answer, teardown),
:mod:`~b2bua.call.relay` (in-dialog requests), :mod:`~b2bua.call.session` (RFC 4028 / RFC 3262)
and :mod:`~b2bua.call.outbound` (the outbound INVITE).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ..sip.dialog import Dialog
from ..sip.events import Peer
from ..sip.message import Request
from ..sip.timers import TimerHandle
from ..sip.transaction import ClientTransaction, ServerTransaction
from .media import MediaSession
from .route import Route
from .session import LegTimer, ReliableProvisional
from .state import CallState, check_transition

log = logging.getLogger("b2bua.call")


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """A call's logger: every line names the call and the caller's SIP Call-ID (operators grep by
    Call-ID), as text (``call c12 [abc@host] ...``) and as ``call``/``sip_call_id`` fields for JSON logs."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        # the Call-ID is the peer's text: a '%' in it must not be taken for a format directive
        sip_call_id = str(extra.get("sip_call_id")).replace("%", "%%")
        return f"call {extra.get('call')} [{sip_call_id}] {msg}", kwargs


@dataclass(slots=True)
class Leg:
    """One side of a call: its dialog and where to send to it."""

    name: str
    peer: Peer
    dialog: Dialog | None = None
    ended: bool = False
    #: Serialized ACK we last sent for a 2xx on this leg, resent on 2xx retransmission.
    last_ack: tuple[int, Request] | None = None
    #: RFC 4028 state of this leg
    timer: LegTimer | None = None
    #: the peer listed UPDATE in Allow (refreshes use UPDATE then, RFC 4028 §7.4)
    allows_update: bool = False
    #: inbound leg: our reliable provisionals (RFC 3262), when the caller supports 100rel
    reliable: ReliableProvisional | None = None
    #: outbound leg: the highest RSeq we PRACKed
    prack_rseq: int = 0


@dataclass(slots=True)
class CallRecord:
    """What a finished call leaves behind (the CDR writer reads this)."""

    call_id: str
    a_call_id: str
    b_call_id: str
    from_uri: str
    to_uri: str
    route: str
    start: float
    answer: float | None
    end: float
    status: int
    cause: str
    ended_by: str
    media: dict[str, dict[str, float]] = field(default_factory=dict)
    route_obj: Route | None = None


@dataclass(slots=True, eq=False)
class Call:
    """One call: the caller's leg ``a``, the callee's leg ``b``, and what links them."""

    id: str
    a: Leg
    b: Leg
    a_invite: ServerTransaction
    a_tag: str
    route: Route
    started: float
    #: change it with :meth:`enter` only (the table in :mod:`b2bua.call.state`)
    state: CallState = CallState.ROUTING
    b_invite: ClientTransaction | None = None
    answered: float | None = None
    final_status: int = 0
    cause: str = ""
    ended_by: str = ""
    target_index: int = 0
    auth_tries: int = 0
    #: the SDP offer sent to the callee, sent again to the next target on failover
    b_offer: bytes | None = None
    ring_timer: TimerHandle | None = None
    cleanup_timer: TimerHandle | None = None
    #: re-INVITE 2xx awaiting the originator's ACK: originator leg name -> cseq on the other leg
    pending_acks: dict[str, int] = field(default_factory=dict)
    #: 2xx dialogs we ACKed and hung up at once, by To tag: (ACK, where it went)
    unwanted: dict[str, tuple[Request, Peer]] = field(default_factory=dict)
    #: the media anchor (None when media is not anchored: SDP passes through)
    media: MediaSession | None = None
    #: the INVITE carried no SDP: the offer comes in the 2xx, the answer in the ACK
    late_offer: bool = False
    #: legs whose ACK must carry the answer to an offer made in a relayed 2xx
    ack_answers: set[str] = field(default_factory=set)
    dtmf: list[tuple[float, str, str]] = field(default_factory=list)
    st_retries: int = 0
    #: without media anchoring: the SDP body last forwarded to each leg
    sdp_sent: dict[str, bytes] = field(default_factory=dict)
    media_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    bye_reason: str | None = None
    #: state of the call's features (staff protection), owned by :attr:`B2BUA.features`
    features: object | None = None
    log: CallLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = CallLog(log, {"call": self.id, "sip_call_id": self.a_invite.request.call_id})

    def enter(self, new: CallState) -> None:
        """Move to ``new`` (:class:`~b2bua.call.state.CallStateError` if the table forbids it)."""
        self.state = check_transition(self.state, new)

    def leg(self, name: str) -> Leg:
        return self.a if name == "a" else self.b

    def other(self, leg: Leg) -> Leg:
        return self.b if leg is self.a else self.a

    @property
    def protected(self) -> bool:
        """The outbound leg goes to a carrier: nothing of the caller's own reaches it."""
        return any(p is not None and p.protected for p in self.route.presentation)

    def record(self, end: float) -> CallRecord:
        a_req = self.a_invite.request
        return CallRecord(
            call_id=self.id, a_call_id=a_req.call_id, b_call_id=self.b.dialog.call_id if self.b.dialog else "",
            from_uri=a_req.from_.uri, to_uri=a_req.to.uri, route=self.route.name, route_obj=self.route,
            start=self.started, answer=self.answered, end=end, status=self.final_status,
            cause=self.cause or "normal", ended_by=self.ended_by, media=self.media_stats,
        )


__all__ = ["Call", "CallLog", "CallRecord", "Leg"]
