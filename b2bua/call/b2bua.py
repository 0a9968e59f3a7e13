"""The signalling B2BUA: two independent dialogs per call (RFC 3261 §6 "B2BUA", RFC 7092).

Sans-I/O like the stack below it: :meth:`B2BUA.handle_event` consumes stack
events and drives the stack; timers go through the stack's timer queue.
Nothing of one leg's topology (Via, Record-Route, Contact, Call-ID, tags,
CSeq) is copied to the other leg.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from ..sip.auth import answer_challenge
from ..sip.dialog import Dialog, uri_to_peer
from ..sip.errors import SipError
from ..sip.events import (
    AckTimeout, CancelReceived, Event, Peer, RequestReceived, ResponseReceived,
    TransactionTimeout, TransportError,
)
from ..sip.message import Request, Response
from ..sip.stack import SipStack, make_response
from ..sip.timers import TimerHandle
from ..sip.transaction import ClientTransaction, ServerTransaction
from ..sip.uas import UasPolicy, check_request, options_response
from ..sip.sdp import find_sdp
from ..sip.uri import Address, SipUri
from .identity import scrub_sdp
from .route import Route
from .media import Engine, MediaSession
from .session import (
    LegTimer, ReliableProvisional, SessionTimerConfig, min_se, rack, rseq, session_expires,
    supports,
)

log = logging.getLogger("b2bua.call")

#: Headers copied from one leg's request or response to the other. Everything
#: else (Via, Route, Record-Route, Contact, Call-ID, CSeq, tags) is per leg.
BODY_HEADERS = ("content-type", "content-disposition", "content-language")

#: Final responses we do not forward as they are (§16.7 step 6 reasoning applies
#: to a B2BUA too: a downstream 503 must not make the carrier think *we* are down).
DEFAULT_RESPONSE_MAP: dict[int, int] = {401: 403, 407: 403, 503: 500}


def map_status(status: int, table: dict[int, int]) -> int:
    """Map a B-leg final status to what the A leg receives (3xx become 480)."""
    if status in table:
        return table[status]
    if 300 <= status < 400:
        return 480
    return status


class CallState(Enum):
    ROUTING = "routing"
    PROCEEDING = "proceeding"
    EARLY = "early"
    ANSWERED = "answered"  # 2xx sent to A, A's ACK pending
    CONFIRMED = "confirmed"
    CANCELLING = "cancelling"
    TERMINATING = "terminating"
    ENDED = "ended"


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


@dataclass(slots=True)
class Call:
    id: str
    a: Leg
    b: Leg
    a_invite: ServerTransaction
    a_tag: str
    route: Route
    started: float
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
    #: relayed in-dialog transactions: client txn on one leg -> server txn on the other
    relays: dict[int, ServerTransaction] = field(default_factory=dict)
    #: re-INVITE 2xx awaiting the originator's ACK: originator leg name -> (other leg, cseq)
    pending_acks: dict[str, int] = field(default_factory=dict)
    #: 2xx dialogs we ACKed and hung up at once, by To tag: (ACK, where it went)
    unwanted: dict[str, tuple[Request, Peer]] = field(default_factory=dict)
    #: the media anchor (None when media is not anchored: SDP passes through)
    media: MediaSession | None = None
    #: the INVITE carried no SDP: the offer comes in the 2xx, the answer in the ACK
    late_offer: bool = False
    #: relayed requests that carried an SDP offer (their 2xx carries the answer)
    relay_offers: set[int] = field(default_factory=set)
    #: legs whose ACK must carry the answer to an offer made in a relayed 2xx
    ack_answers: set[str] = field(default_factory=set)
    dtmf: list[tuple[float, str, str]] = field(default_factory=list)
    #: our own session refresh transactions: id(txn) -> leg name
    refreshes: dict[int, str] = field(default_factory=dict)
    st_retries: int = 0
    #: without media anchoring: the SDP body last forwarded to each leg
    sdp_sent: dict[str, bytes] = field(default_factory=dict)
    media_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    bye_reason: str | None = None
    #: state of the call's features (staff protection), owned by :attr:`B2BUA.features`
    features: object | None = None


class Features:
    """Hooks for call features above plain B2BUA behaviour (staff protection). No-ops here."""

    def on_new_call(self, call: Call) -> bool:
        """A routed call, before the outbound INVITE: True when the feature sends it later
        (:meth:`B2BUA.proceed`) or ends the call itself."""
        return False

    def on_answer(self, call: Call) -> None: ...
    def on_dtmf(self, call: Call, leg: str, digit: str) -> None: ...
    def on_play_done(self, call: Call, leg: str, prompt: str) -> None: ...
    def on_end(self, call: Call) -> None: ...


def _policy() -> UasPolicy:
    return UasPolicy(allow=("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK", "REGISTER",
                            "MESSAGE", "NOTIFY"), supported=("100rel", "timer"))


@dataclass(slots=True)
class B2BUAConfig:
    policy: UasPolicy = field(default_factory=_policy)
    session_timer: SessionTimerConfig = field(default_factory=SessionTimerConfig)
    response_map: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_RESPONSE_MAP))
    ring_timeout: float = 180.0
    max_calls: int = 100_000
    #: latch to the source of the first RTP packet (RFC 4961 symmetric RTP)
    symmetric_rtp: bool = True
    #: end every answered call after this many seconds (0: no limit)
    max_duration: float = 0.0


class B2BUA:
    """Call control above a :class:`SipStack`."""

    def __init__(self, stack: SipStack, router: Callable[[Request, Peer], Route | Response],
                 config: B2BUAConfig | None = None, engine: Engine | None = None):
        self.stack = stack
        #: the media engine's command interface; None passes SDP through untouched
        self.engine = engine
        #: called for every key press: (call, leg name, digit, source)
        self.on_dtmf: Callable[[Call, str, str, str], None] | None = None
        self.router = router
        self.config = config or B2BUAConfig()
        self.calls: dict[str, Call] = {}
        self._legs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.stats: Counter[str] = Counter()
        #: (route, what) -> count: attempts, answered, end:<cause>
        self.by_route: Counter[tuple[str, str]] = Counter()
        #: status code -> responses we sent
        self.responses: Counter[int] = Counter()
        #: call setup time (INVITE in -> 2xx out) histogram: bucket upper bounds, counts, sum
        self.setup_buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
        self.setup_counts = [0] * (len(self.setup_buckets) + 1)
        self.setup_sum = 0.0
        self.on_call_end: Callable[[CallRecord], None] | None = None
        #: Set by the driver when the event loop runs late: new INVITEs get 503.
        self.overloaded = False
        #: Extra request handlers by method (REGISTER -> registrar), out of dialog only.
        self.handlers: dict[str, Callable[[Request, ServerTransaction, Peer, float], Response | None]] = {}
        #: Transactions call control did not start for a call (OPTIONS pings): (txn, response or None)
        self.on_other_result: Callable[[ClientTransaction, Response | None], None] | None = None
        #: Checks a new INVITE (digest auth of staff devices); a Response rejects it.
        self.authorize: Callable[[Request, float], Response | None] | None = None
        #: call features (ringback prompts, recording, staff keys)
        self.features: Features | None = None

    @property
    def now(self) -> float:
        return self.stack.now

    def _observe_setup(self, seconds: float) -> None:
        self.setup_sum += seconds
        for i, bound in enumerate(self.setup_buckets):
            if seconds <= bound:
                self.setup_counts[i] += 1
                return
        self.setup_counts[-1] += 1

    # -- event dispatch -----------------------------------------------------------------
    def handle_event(self, ev: Event, now: float) -> None:
        try:
            if isinstance(ev, RequestReceived):
                self._on_request(ev.request, ev.transaction, ev.peer)
            elif isinstance(ev, ResponseReceived):
                self._on_response(ev.response, ev.transaction)
            elif isinstance(ev, CancelReceived):
                self._on_cancel(ev.transaction)
            elif isinstance(ev, TransactionTimeout):
                self._on_client_failure(ev.transaction, 408, "timeout")
            elif isinstance(ev, TransportError):
                if isinstance(ev.transaction, ClientTransaction):
                    self._on_client_failure(ev.transaction, 502, "transport_error")
            elif isinstance(ev, AckTimeout):
                self._on_ack_timeout(ev.transaction)
        except SipError as err:
            # A malformed message from a peer mid-call: answer it if we can, keep serving.
            self.stats["protocol_errors"] += 1
            log.info("protocol error: %s", err)
            if isinstance(ev, RequestReceived) and ev.transaction is not None:
                self.stack.respond(ev.transaction, make_response(ev.request, err.status, err.reason,
                                                                 to_tag=self.stack.new_id()), self.now)

    def drain(self, now: float) -> None:
        """Process every pending stack event."""
        while (ev := self.stack.next_event()) is not None:
            self.handle_event(ev, now)

    # -- requests -----------------------------------------------------------------------
    def _on_request(self, req: Request, txn: ServerTransaction | None, peer: Peer) -> None:
        to_tag = req.to_tag
        if to_tag is not None:
            found = self._legs.get((req.call_id, to_tag))
            if found is None:
                if txn is not None:
                    self._respond(txn, make_response(req, 481))
                return
            self._in_dialog(found[0], found[1], req, txn)
            return
        if txn is None:
            return  # stray ACK
        method = req.method
        if method == "INVITE":
            self._new_call(req, txn, peer)
            return
        tag = self.stack.new_id()
        err = check_request(req, self.config.policy, routed=False, to_tag=tag)
        if err is not None:
            self._respond(txn, err)
        elif method == "OPTIONS":
            self._respond(txn, options_response(req, self.config.policy, tag))
        elif method in self.handlers:
            resp = self.handlers[method](req, txn, peer, self.now)
            if resp is not None:
                self._respond(txn, resp)
        else:
            self._respond(txn, make_response(req, 481, to_tag=tag))

    def _respond(self, txn: ServerTransaction, resp: Response) -> None:
        self.responses[resp.status] += 1
        self.stack.respond(txn, resp, self.now)

    def _new_call(self, req: Request, txn: ServerTransaction, peer: Peer) -> None:
        a_tag = self.stack.new_id()
        txn.to_tag = a_tag
        err = check_request(req, self.config.policy, routed=True, to_tag=a_tag)
        if err is not None:
            self._respond(txn, err)
            return
        if self.overloaded or len(self.calls) >= self.config.max_calls:
            self.stats["overload_rejects"] += 1
            resp = make_response(req, 503, to_tag=a_tag)
            resp.add("retry-after", "5")
            self._respond(txn, resp)
            return
        if self.authorize is not None:
            challenge = self.authorize(req, self.now)
            if challenge is not None:
                _tag_to(challenge, a_tag)
                self._respond(txn, challenge)
                return
        st = self.config.session_timer
        se = session_expires(req)
        if st.enabled and se is not None and se[0] < st.min_se:
            resp = make_response(req, 422, to_tag=a_tag)  # RFC 4028 §9
            resp.add("min-se", str(st.min_se))
            self._respond(txn, resp)
            return
        self._respond(txn, make_response(req, 100))
        route = self.router(req, peer)
        if isinstance(route, Response):
            _tag_to(route, a_tag)
            self._respond(txn, route)
            return
        call_id = f"c{self.stack.new_id()}"  # unique across restarts (random prefix + counter)
        media: MediaSession | None = None
        b_offer: bytes | None = None
        if self.engine is not None:
            media = MediaSession(self.engine, call_id,
                                 {"a": route.symmetric_a if route.symmetric_a is not None else self.config.symmetric_rtp,
                                  "b": route.symmetric_b if route.symmetric_b is not None else self.config.symmetric_rtp},
                                 {"b": list(route.codecs)} if route.codecs else None)
            try:
                media.allocate()
                sdp = find_sdp(req.get("content-type"), req.body)
                if sdp is not None:
                    b_offer = media.offer("a", sdp)
            except SipError as err:
                media.close()
                self._respond(txn, make_response(req, err.status, err.reason, to_tag=a_tag))
                return
            except Exception as exc:  # PortsExhausted or an engine failure: no call is better than a crash
                media.close()
                log.warning("no media for a new call: %s", exc)
                self.stats["media_unavailable"] += 1
                resp = make_response(req, 503, "Service Unavailable (media ports)", to_tag=a_tag)
                resp.add("retry-after", "5")
                self._respond(txn, resp)
                return
        a_leg = Leg("a", peer)
        contact = self._contact(peer)
        a_leg.dialog = Dialog.from_uas(req, a_tag, contact)
        call = Call(call_id, a_leg, Leg("b", peer), txn, a_tag, route, self.now)
        call.media = media
        call.late_offer = not req.body
        call.a.allows_update = "UPDATE" in [m.upper() for m in req.get_all("allow")]
        if supports(req, "100rel"):
            call.a.reliable = ReliableProvisional()
        txn.user = call
        self.calls[call_id] = call
        self._legs[a_leg.dialog.key] = (call, a_leg)
        self.stats["calls_started"] += 1
        self.by_route[(route.name, "attempts")] += 1
        log.info("call %s start from=%s to=%s", call_id, req.from_.uri, req.to.uri)
        call.b_offer = b_offer
        call.ring_timer = self.stack.timers.call_at(self.now + self.config.ring_timeout, self._ring_timeout, call)
        if self.features is None or not self.features.on_new_call(call):
            self._send_b_invite(call, b_offer)

    # -- what features may do -----------------------------------------------------------
    def early_media(self, call: Call) -> bool:
        """Answer the caller's offer ourselves in a 183 (RFC 3262 reliable when it supports 100rel),
        so prompts can play before anyone answers. False when there is no offer to answer."""
        media = call.media
        if media is None or call.late_offer or call.state not in (CallState.ROUTING, CallState.PROCEEDING,
                                                                  CallState.EARLY):
            return False
        try:
            body = media.answer_locally()
        except SipError:
            return False
        resp = self._to_a(call, 183)
        resp.set_body(body, "application/sdp")
        self._send_provisional(call, resp)
        return True

    def proceed(self, call: Call) -> None:
        """Send the outbound INVITE a feature held back (after a notice, or to a fallback route)."""
        if call.state is CallState.ROUTING and call.b_invite is None:
            call.target_index = 0
            self._send_b_invite(call, call.b_offer)

    def release(self, call: Call, status: int, cause: str) -> None:
        """Refuse a call that was not answered (a closed department after its prompt)."""
        if call.state is CallState.ROUTING and call.b_invite is None:
            self._fail_a(call, status, cause, by="b2bua")
        elif call.state in (CallState.PROCEEDING, CallState.EARLY):
            self._abandon(call, status, cause, "b2bua")

    def end_call(self, call: Call, cause: str, reason: str) -> None:
        """BYE both legs of an answered call with a Reason header (RFC 3326)."""
        call.bye_reason = reason
        self._hangup(call, "b2bua", cause)

    def _local_host(self, peer: Peer) -> str:
        host = (self.stack.config.local.get(peer.transport) or self.stack.config.local.get("udp", ("127.0.0.1", 0)))[0]
        return f"[{host}]" if ":" in host else host

    @staticmethod
    def _rehost(uri: str, hostport: str) -> str:
        """``sip:user@anything`` -> ``sip:user@hostport``; tel: URIs are kept as they are."""
        try:
            u = SipUri.parse(uri)
        except SipError:
            return f"sip:anonymous@{hostport}"
        if u.scheme not in ("sip", "sips"):
            return uri
        user = f"{u.user}@" if u.user else ""
        return f"{u.scheme}:{user}{hostport}"

    def _contact(self, peer: Peer) -> str:
        host, port = self.stack.config.local.get(peer.transport) or self.stack.config.local.get("udp", ("127.0.0.1", 5060))
        if ":" in host:
            host = f"[{host}]"
        t = "" if peer.transport == "udp" else f";transport={peer.transport}"
        return f"<sip:{host}:{port}{t}>"

    def _send_b_invite(self, call: Call, offer: bytes | None = None) -> None:
        """Build the outbound INVITE from scratch: new Call-ID, tags, CSeq, Via, Contact."""
        a_req = call.a_invite.request
        target = call.route.targets[call.target_index]
        target_uri = SipUri.parse(target)
        ruri = SipUri.parse(a_req.uri) if a_req.uri[:4].lower() in ("sip:", "sips") else None
        if ruri is not None and ruri.user and not target_uri.user:
            target_uri.user = ruri.user
        try:
            peer = call.route.peer or uri_to_peer(str(target_uri))
        except SipError:
            self._fail_a(call, 500, "bad_route")
            return
        call.b.peer = peer
        req = Request("INVITE", str(target_uri))
        mf = a_req.get("max-forwards")
        req.add("max-forwards", str(max(int(mf) - 1, 0)) if mf is not None else "70")
        # Identities keep their user part and display name; host parts become ours / the
        # target's so the caller's addresses never reach the callee (RFC 7092 §5).
        from_addr = a_req.from_
        from_uri = self._rehost(from_addr.uri, self._local_host(peer))
        req.add("from", str(Address(from_uri, from_addr.display, {"tag": self.stack.new_id()})))
        to_addr = a_req.to
        to_uri = self._rehost(to_addr.uri, target_uri.host + (f":{target_uri.port}" if target_uri.port else ""))
        req.add("to", str(Address(to_uri, to_addr.display, {})))
        req.add("call-id", f"{self.stack.new_id()}@b2bua")
        req.add("cseq", "1 INVITE")
        req.add("contact", self._contact(peer))
        req.add("allow", ", ".join(self.config.policy.allow))
        req.add("supported", "100rel, timer" if self.config.session_timer.enabled else "100rel")
        if self.config.session_timer.enabled:
            st = self.config.session_timer
            req.add("session-expires", str(st.session_expires))
            req.add("min-se", str(st.min_se))
        if offer is not None:
            req.set_body(offer, "application/sdp")
        elif call.media is None:
            self._carry_body(call, "a", a_req, req, None)
        pres = call.route.presentation[call.target_index] if call.target_index < len(call.route.presentation) else None
        if pres is not None:
            pres.apply(req, self._local_host(peer))
        call.state = CallState.PROCEEDING
        ctxn = self.stack.send_request(req, peer, self.now)
        ctxn.user = call
        call.b_invite = ctxn
        if call.route.no_answer_timeout and call.target_index + 1 < len(call.route.targets):
            self.stack.timers.call_at(self.now + call.route.no_answer_timeout, self._no_answer, call, ctxn)

    @staticmethod
    def _copy_body(src: Request | Response, dst: Request | Response) -> None:
        if src.body:
            for key in BODY_HEADERS:
                v = src.get(key)
                if v is not None:
                    dst.add(key, v)
            dst.body = src.body

    # -- responses ----------------------------------------------------------------------
    def _on_response(self, resp: Response, txn: ClientTransaction) -> None:
        user = txn.user
        if user is not None and not isinstance(user, Call):
            if resp.status >= 200 and self.on_other_result is not None:
                self.on_other_result(txn, resp)
            return
        if isinstance(user, Call):
            if user.state is CallState.ENDED:
                if txn.request.method == "INVITE" and 200 <= resp.status < 300:
                    self._on_b_answer(user, resp, txn)  # answered too late: ACK and BYE it
                return
            if txn.request.method == "INVITE" and txn is user.b_invite:
                self._on_b_invite_response(user, resp, txn)
            elif txn.request.method == "INVITE" and txn.request.to_tag is None and 200 <= resp.status < 300:
                self._ack_and_bye(user, txn, resp)  # a target we gave up on answered after all
            elif txn.request.method == "BYE" and resp.status >= 200:
                self._leg_done(user, user.b if self._is_b(user, txn) else user.a)
            elif id(txn) in user.refreshes:
                self._on_refresh_response(user, txn, resp)
            elif id(txn) in user.relays:
                self._relay_response(user, txn, resp)
            elif txn.request.method == "INVITE" and 200 <= resp.status < 300:
                # a retransmitted 2xx to a relayed re-INVITE: resend the ACK (§13.2.2.4)
                leg = user.b if self._is_b(user, txn) else user.a
                if leg.last_ack is not None and leg.last_ack[0] == txn.request.cseq[0]:
                    self.stack.send_ack(_copy_request(leg.last_ack[1]), leg.peer, self.now)
        # CANCEL responses and responses to finished calls need nothing more

    @staticmethod
    def _is_b(call: Call, txn: ClientTransaction) -> bool:
        return call.b.dialog is not None and txn.request.call_id == call.b.dialog.call_id

    def _on_b_invite_response(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        status = resp.status
        if status < 200:
            if status == 100:
                return
            if resp.to_tag and call.b.dialog is None:
                call.b.dialog = Dialog.from_uac(txn.request, resp)
                self._legs[call.b.dialog.key] = (call, call.b)
            if "100rel" in [t.lower() for t in resp.get_all("require")]:
                r = rseq(resp)
                if r is None or r <= call.b.prack_rseq:
                    return  # a retransmission of a reliable provisional we already PRACKed
                call.b.prack_rseq = r
                self._send_prack(call, r, txn.request.cseq[0])
            if call.state in (CallState.PROCEEDING, CallState.EARLY):
                call.state = CallState.EARLY
                try:
                    a_resp = self._a_response(call, resp, status)
                except SipError as err:
                    log.info("call %s: SDP in %d ignored: %s", call.id, status, err)
                    a_resp = self._a_response(call, Response(status, resp.reason), status)
                self._send_provisional(call, a_resp)
            return
        if status < 300:
            self._on_b_answer(call, resp, txn)
            return
        # final error
        if status in (401, 407) and self._retry_with_credentials(call, resp, txn):
            return
        if status == 422 and self._retry_session_interval(call, resp, txn):
            return
        if status in call.route.failover and self._next_target(call):
            return
        if call.state in (CallState.CANCELLING, CallState.TERMINATING, CallState.ENDED):
            call.b.ended = True
            self._maybe_finish(call)
            return
        self._fail_a(call, map_status(status, self.config.response_map), "rejected", resp)

    def _no_answer(self, call: Call, txn: ClientTransaction) -> None:
        """This target rang too long: CANCEL it and try the next one (the caller keeps waiting)."""
        if txn is not call.b_invite or call.state not in (CallState.PROCEEDING, CallState.EARLY):
            return
        self.stack.cancel(txn, self.now)
        call.state = CallState.PROCEEDING  # the next target starts from scratch
        self._next_target(call)

    def _next_target(self, call: Call) -> bool:
        """Fail over to the route's next gateway: a fresh outbound leg (new Call-ID and tags)."""
        if call.state is not CallState.PROCEEDING or call.target_index + 1 >= len(call.route.targets):
            return False
        if call.b.dialog is not None:
            self._legs.pop(call.b.dialog.key, None)
        call.target_index += 1
        call.b = Leg("b", call.b.peer)
        call.auth_tries = call.st_retries = 0
        self.stats["failovers"] += 1
        log.info("call %s: failing over to %s", call.id, call.route.targets[call.target_index])
        self._send_b_invite(call, call.b_offer)
        return True

    def _retry_session_interval(self, call: Call, resp: Response, txn: ClientTransaction) -> bool:
        """422: ask again with the far end's Min-SE (RFC 4028 §7.4), once."""
        if call.st_retries >= 1 or call.state is not CallState.PROCEEDING:
            return False
        old = txn.request
        retry = _next_invite(old, drop=("via",))
        wanted = max(min_se(resp), self.config.session_timer.min_se)
        asked = session_expires(old)
        retry.set("session-expires", str(max(wanted, asked[0] if asked else 0)))
        retry.set("min-se", str(wanted))
        call.st_retries += 1
        self._send_b_retry(call, retry)
        return True

    def _send_b_retry(self, call: Call, retry: Request) -> None:
        call.b_invite = self.stack.send_request(retry, call.b.peer, self.now)
        call.b_invite.user = call

    def _retry_with_credentials(self, call: Call, resp: Response, txn: ClientTransaction) -> bool:
        """Answer the far end's digest challenge once with the route's credentials (§22.2)."""
        if call.route.credentials is None or call.auth_tries >= 1 or call.state is not CallState.PROCEEDING:
            return False
        retry = _next_invite(txn.request, drop=("via", "authorization", "proxy-authorization"))
        answer = answer_challenge(retry, resp, *call.route.credentials)
        if answer is None:
            return False
        retry.add(answer[0], answer[1])
        call.auth_tries += 1
        self._send_b_retry(call, retry)
        return True

    def _a_response(self, call: Call, src: Response, status: int) -> Response:
        """A response to A's INVITE carrying B's body and our own Contact and Record-Route copy."""
        same = status == src.status and call.route.department is None  # a department's phones say nothing
        resp = self._to_a(call, status, src.reason if same else None)
        if status >= 200:
            resp.add("allow", ", ".join(self.config.policy.allow))
            if 200 <= status < 300:
                self._inbound_session_timer(call, resp)
        if call.late_offer and status < 200:
            return resp  # an offer in an unreliable 1xx is only a preview: keep it for the 2xx
        self._carry_body(call, "b", src, resp, "offer" if call.late_offer else "answer", final=status >= 200)
        media = call.media
        if 200 <= status < 300 and media is not None and media.answered_locally and not resp.body:
            # our own answer went in an unreliable 183: the 2xx must carry it (RFC 3261 §13.2.1)
            resp.set_body(media.answer_locally(), "application/sdp")
            media.complete()
        return resp

    def _to_a(self, call: Call, status: int, reason: str | None = None) -> Response:
        """A response to A's INVITE in its dialog: our tag and Contact, its Record-Route (§12.1.1)."""
        a_req = call.a_invite.request
        resp = make_response(a_req, status, reason, to_tag=call.a_tag)
        for rr in a_req.get_all("record-route"):
            resp.add("record-route", rr)
        resp.add("contact", call.a.dialog.local_contact if call.a.dialog else self._contact(call.a.peer))
        return resp

    def _carry_body(self, call: Call, from_leg: str, src: Request | Response, dst: Request | Response,
                    role: str | None, final: bool = False) -> None:
        """Copy a body across; with media anchored an SDP goes through offer/answer instead,
        so each leg only ever sees our addresses."""
        media = call.media
        if media is None or not src.body:
            self._copy_body(src, dst)
            if src.body and src.content_type == "application/sdp":
                if from_leg == "a" and _protected(call):
                    dst.body = scrub_sdp(dst.body, self._local_host(call.b.peer))  # passed through: not its owner
                call.sdp_sent["b" if from_leg == "a" else "a"] = dst.body  # for session refreshes
            return
        sdp = find_sdp(src.get("content-type"), src.body)
        if sdp is None:
            if src.content_type not in ("application/sdp",) and not (src.content_type or "").startswith("multipart/"):
                self._copy_body(src, dst)  # INFO dtmf-relay, MESSAGE text, ...
            return
        if role == "offer":
            body = media.offer(from_leg, sdp)
        elif role == "answer":
            if not media.offer_pending:
                return  # a repeated answer (18x then 2xx): already given
            body = media.answer(from_leg, sdp)
            if final:
                media.complete()
        else:
            return
        dst.set_body(body, "application/sdp")

    def _on_b_answer(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        cseq = txn.request.cseq[0]
        tag = resp.to_tag
        unwanted = call.unwanted.get(tag or "")
        if unwanted is not None:  # retransmitted 2xx of a dialog we hung up: ACK again
            self.stack.send_ack(_copy_request(unwanted[0]), unwanted[1], self.now)
            return
        if call.state in (CallState.PROCEEDING, CallState.EARLY):
            dialog = call.b.dialog
            if dialog is None or dialog.remote_tag != tag:
                if dialog is not None:
                    self._legs.pop(dialog.key, None)  # the early dialog of another fork
                dialog = Dialog.from_uac(txn.request, resp)
                call.b.dialog = dialog
                self._legs[dialog.key] = (call, call.b)
            dialog.confirmed = True
            dialog.refresh_target(resp)
            dialog.route_set = list(reversed(resp.get_all("record-route")))
            call.b.peer = self._b_peer(call, dialog)
            self._cancel_ring(call)
            try:
                a_resp = self._a_response(call, resp, resp.status)
            except SipError as err:
                # the callee's SDP is unusable: hang it up, refuse the caller
                log.info("call %s: callee SDP refused: %s", call.id, err)
                self._ack_and_bye(call, txn, resp)
                self._fail_a(call, 488, "bad_sdp")
                return
            call.state = CallState.ANSWERED
            call.answered = self.now
            call.final_status = 200
            self._observe_setup(self.now - call.started)
            call.b.allows_update = "UPDATE" in [m.upper() for m in resp.get_all("allow")]
            self._outbound_session_timer(call, resp)
            if self.config.max_duration > 0:
                self.stack.timers.call_at(self.now + self.config.max_duration, self._max_duration, call)
            if call.a.reliable is not None:
                call.a.reliable.cancel()
            self._respond(call.a_invite, a_resp)
            if self.features is not None:
                self.features.on_answer(call)
            return
        dialog = call.b.dialog
        if dialog is not None and dialog.confirmed and dialog.remote_tag == tag:
            if call.b.last_ack is not None and call.b.last_ack[0] == cseq:
                self.stack.send_ack(_copy_request(call.b.last_ack[1]), call.b.peer, self.now)
            return  # else A has not ACKed yet; ours goes out with A's
        # A 2xx we do not want: a second fork, or an answer that crossed our CANCEL (§15, §9.1).
        self._ack_and_bye(call, txn, resp)
        if call.state in (CallState.CANCELLING, CallState.TERMINATING, CallState.ENDED):
            call.b.ended = True
            self._maybe_finish(call)

    def _b_peer(self, call: Call, dialog: Dialog) -> Peer:
        try:
            peer = dialog.next_hop()
        except SipError:
            return call.b.peer
        if peer.transport != "udp" and peer.host == call.b.peer.host and peer.port == call.b.peer.port:
            return call.b.peer
        return peer

    def _ack_and_bye(self, call: Call, txn: ClientTransaction, resp: Response) -> None:
        """ACK a 2xx and end its dialog at once; its retransmissions get the same ACK."""
        d = Dialog.from_uac(txn.request, resp)
        try:
            peer = d.next_hop()
        except SipError:
            peer = call.b.peer
        ack = d.create_ack(txn.request.cseq[0])
        call.unwanted[resp.to_tag or ""] = (_copy_request(ack), peer)
        self.stack.send_ack(ack, peer, self.now)
        self.stack.send_request(d.create_request("BYE"), peer, self.now)
        self.stats["unwanted_answers"] += 1

    def _ack_b(self, call: Call, cseq: int, src_ack: Request | None) -> None:
        dialog = call.b.dialog
        if dialog is None:
            return
        ack = dialog.create_ack(cseq)
        if src_ack is not None:
            try:
                self._carry_body(call, "a", src_ack, ack, "answer" if call.late_offer else None, final=True)
            except SipError as err:
                log.info("call %s: SDP in ACK refused: %s", call.id, err)
                self._hangup(call, "a", "bad_sdp")
        call.b.last_ack = (cseq, _copy_request(ack))
        self.stack.send_ack(ack, call.b.peer, self.now)

    def _fail_a(self, call: Call, status: int, cause: str, src: Response | None = None, by: str = "b") -> None:
        """End a call that was never answered with a final response to A."""
        self._cancel_ring(call)
        resp = make_response(call.a_invite.request, status, to_tag=call.a_tag)
        if src is not None and call.route.department is not None:
            resp.add("reason", f"SIP;cause={src.status}")  # to a citizen: nothing of the department's situation
        elif src is not None:
            reason = src.get("reason")
            resp.add("reason", reason or f'SIP;cause={src.status};text="{src.reason.replace(chr(34), "")}"')
            if status == src.status:
                resp.reason = src.reason
        if status == 503:
            resp.add("retry-after", "5")
        self._respond(call.a_invite, resp)
        call.final_status = status
        call.cause = cause
        call.ended_by = by
        call.a.ended = call.b.ended = True
        self._finish(call)

    def _on_client_failure(self, txn: ClientTransaction, status: int, cause: str) -> None:
        call = txn.user
        if not isinstance(call, Call):
            if call is not None and self.on_other_result is not None:
                self.on_other_result(txn, None)
            return
        if txn is call.b_invite:
            if call.state is CallState.PROCEEDING and self._next_target(call):
                return
            if call.state in (CallState.PROCEEDING, CallState.EARLY):
                self._fail_a(call, status, cause)
            else:
                call.b.ended = True
                self._maybe_finish(call)
        elif txn.request.method == "BYE":
            leg = call.b if self._is_b(call, txn) else call.a
            self._leg_done(call, leg)
        elif id(txn) in call.refreshes:
            name = call.refreshes.pop(id(txn))
            call.bye_reason = 'SIP;cause=408;text="Session refresh failed"'
            self._hangup(call, name, "session_refresh_failed")
        elif id(txn) in call.relays:
            stxn = call.relays.pop(id(txn))
            self._respond(stxn, make_response(stxn.request, status, to_tag=_leg_tag(call, stxn)))
            if status == 408 or cause == "transport_error":
                self._hangup(call, "b" if self._is_b(call, txn) else "a", cause)

    def _on_ack_timeout(self, txn: ServerTransaction) -> None:
        call = txn.user
        if isinstance(call, Call) and call.state is CallState.ANSWERED and txn is call.a_invite:
            self._ack_b(call, call.b_invite.request.cseq[0] if call.b_invite else 1, None)
            self._hangup(call, "a", "ack_timeout")

    # -- CANCEL, timeouts, teardown -----------------------------------------------------
    def _on_cancel(self, txn: ServerTransaction) -> None:
        call = txn.user
        if not isinstance(call, Call):
            self._respond(txn, make_response(txn.request, 487, to_tag=txn.to_tag))
            return
        self._abandon(call, 487, "cancelled", "a")

    def _abandon(self, call: Call, status: int, cause: str, by: str) -> None:
        """End a call that was never answered: ``status`` to the caller, CANCEL to the callee."""
        self._cancel_ring(call)
        if call.a.reliable is not None:
            call.a.reliable.cancel()
        self._respond(call.a_invite, make_response(call.a_invite.request, status, to_tag=call.a_tag))
        call.final_status, call.cause, call.ended_by = status, cause, by
        call.a.ended = True
        call.state = CallState.CANCELLING
        if call.b_invite is not None:
            self.stack.cancel(call.b_invite, self.now)
            self._arm_cleanup(call)
        else:
            call.b.ended = True
            self._finish(call)

    def _ring_timeout(self, call: Call) -> None:
        if call.state in (CallState.PROCEEDING, CallState.EARLY):
            self._abandon(call, 480, "no_answer", "b")

    def _cancel_ring(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _arm_cleanup(self, call: Call) -> None:
        """Give the other leg 64*T1 to finish, then forget the call regardless."""
        if call.cleanup_timer is None:
            call.cleanup_timer = self.stack.timers.call_at(self.now + self.stack.config.b + 1, self._finish, call)

    def _hangup(self, call: Call, by: str, cause: str) -> None:
        """Tear down both legs of an established call."""
        if call.state in (CallState.TERMINATING, CallState.ENDED):
            return
        call.state = CallState.TERMINATING
        call.cause = call.cause or cause
        call.ended_by = call.ended_by or by
        for leg in (call.a, call.b):
            if not leg.ended:
                self._send_bye(call, leg)
        self._arm_cleanup(call)

    def _send_bye(self, call: Call, leg: Leg) -> None:
        if leg.dialog is None or not leg.dialog.confirmed and leg is call.b:
            leg.ended = True
            return
        req = leg.dialog.create_request("BYE")
        if call.bye_reason:
            req.add("reason", call.bye_reason)
        txn = self.stack.send_request(req, leg.peer, self.now)
        txn.user = call

    def _leg_done(self, call: Call, leg: Leg) -> None:
        leg.ended = True
        self._maybe_finish(call)

    def _maybe_finish(self, call: Call) -> None:
        if call.a.ended and call.b.ended:
            self._finish(call)

    def _finish(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        self._cancel_ring(call)
        if call.cleanup_timer is not None:
            call.cleanup_timer.cancel()
            call.cleanup_timer = None
        for leg in (call.a, call.b):
            if leg.dialog is not None:
                self._legs.pop(leg.dialog.key, None)
        self.calls.pop(call.id, None)
        call.relays.clear()
        if self.features is not None:
            self.features.on_end(call)
        if call.media is not None:
            call.media_stats = call.media.close()
        for leg in (call.a, call.b):
            if leg.timer is not None:
                leg.timer.cancel()
            if leg.reliable is not None:
                leg.reliable.cancel()
        call.refreshes.clear()
        # Break call <-> transaction reference cycles so refcounting frees the call (no GC pass).
        call.a_invite.user = None
        if call.b_invite is not None:
            call.b_invite = None  # its .user still finds the call for a late 2xx
        self.stats["calls_ended"] += 1
        self.by_route[(call.route.name, f"end:{call.cause or 'normal'}")] += 1
        if call.answered is not None:
            self.by_route[(call.route.name, "answered")] += 1
        a_req = call.a_invite.request
        record = CallRecord(
            call_id=call.id, a_call_id=a_req.call_id,
            b_call_id=call.b.dialog.call_id if call.b.dialog else "",
            from_uri=a_req.from_.uri, to_uri=a_req.to.uri, route=call.route.name, route_obj=call.route,
            start=call.started, answer=call.answered, end=self.now,
            status=call.final_status, cause=call.cause or "normal", ended_by=call.ended_by,
            media=call.media_stats,
        )
        media = " ".join(f"{leg}_{k}={int(v)}" for leg, st in sorted(call.media_stats.items())
                         for k, v in st.items() if k in ("packets_received", "packets_sent", "packets_lost",
                                                         "dropped", "strangers"))
        log.info("call %s end status=%s cause=%s by=%s%s", call.id, record.status, record.cause, record.ended_by,
                 f" {media}" if media else "")
        if self.on_call_end is not None:
            self.on_call_end(record)

    # -- session timers (RFC 4028) -----------------------------------------------------
    def _inbound_session_timer(self, call: Call, resp: Response) -> None:
        """Grant the caller's Session-Expires (or ours) in the 2xx (§9) and start the leg's timer."""
        st = self.config.session_timer
        if not st.enabled:
            return
        req = call.a_invite.request
        se = session_expires(req)
        peer_supports = supports(req, "timer")
        if se is not None:
            interval, refresher = se[0], se[1] or ("uac" if peer_supports else "uas")
        else:
            interval, refresher = st.session_expires, "uac" if peer_supports else "uas"
        if refresher == "uac" and not peer_supports:
            refresher = "uas"
        call.a.timer = LegTimer(interval, we_refresh=refresher == "uas", peer_supports=peer_supports)
        resp.add("session-expires", f"{interval};refresher={refresher}")
        if peer_supports:
            resp.add("require", "timer")
        self._arm_session_timer(call, call.a)

    def _outbound_session_timer(self, call: Call, resp: Response) -> None:
        """Adopt what the callee's 2xx says (§7.2); without Session-Expires we refresh ourselves."""
        st = self.config.session_timer
        if not st.enabled:
            return
        se = session_expires(resp)
        if se is not None:
            call.b.timer = LegTimer(se[0], we_refresh=se[1] != "uas", peer_supports=True)
        else:
            asked = session_expires(call.b_invite.request) if call.b_invite else None
            call.b.timer = LegTimer(asked[0] if asked else st.session_expires, we_refresh=True,
                                    peer_supports=supports(resp, "timer"))
        self._arm_session_timer(call, call.b)

    def _arm_session_timer(self, call: Call, leg: Leg) -> None:
        timer = leg.timer
        assert timer is not None
        timer.cancel()
        if timer.we_refresh:
            timer.handle = self.stack.timers.call_at(self.now + timer.refresh_after, self._send_refresh, call, leg)
        else:
            timer.handle = self.stack.timers.call_at(self.now + timer.expire_after, self._session_expired, call, leg)

    def _send_refresh(self, call: Call, leg: Leg) -> None:
        """We are this leg's refresher: UPDATE when the peer allows it, else a re-INVITE
        repeating our current SDP (§7.4, §9)."""
        if call.state not in (CallState.ANSWERED, CallState.CONFIRMED) or leg.dialog is None or leg.timer is None:
            return
        body = call.media.last_sent.get(leg.name) if call.media is not None else call.sdp_sent.get(leg.name)
        if leg.allows_update or body is None:
            req = leg.dialog.create_request("UPDATE")
        else:
            req = leg.dialog.create_request("INVITE")
            req.set_body(body, "application/sdp")
        req.add("session-expires", leg.timer.header(we_are_uac=True))
        req.add("supported", "timer")
        txn = self.stack.send_request(req, leg.peer, self.now)
        txn.user = call
        call.refreshes[id(txn)] = leg.name
        leg.timer.refreshes += 1

    def _on_refresh_response(self, call: Call, txn: ClientTransaction, resp: Response) -> None:
        if resp.status < 200:
            return
        name = call.refreshes.pop(id(txn), "")
        leg = call.a if name == "a" else call.b
        if 200 <= resp.status < 300:
            if txn.request.method == "INVITE" and leg.dialog is not None:
                self.stack.send_ack(leg.dialog.create_ack(txn.request.cseq[0]), leg.peer, self.now)
            se = session_expires(resp)
            if leg.timer is not None:
                if se is not None:
                    leg.timer.interval = se[0]
                    leg.timer.we_refresh = se[1] != "uas"  # we were the UAC of this refresh
                self._arm_session_timer(call, leg)
        elif resp.status == 422 and leg.timer is not None:
            leg.timer.interval = max(leg.timer.interval, min_se(resp))
            self._send_refresh(call, leg)
        elif resp.status in (408, 481) or resp.status >= 500 and resp.status != 503:
            call.bye_reason = f'SIP;cause={resp.status};text="Session refresh failed"'
            self._hangup(call, leg.name, "session_refresh_failed")
        elif leg.timer is not None:  # 491 and the like: try again a little later
            leg.timer.cancel()
            leg.timer.handle = self.stack.timers.call_at(self.now + 5.0, self._send_refresh, call, leg)

    def _max_duration(self, call: Call) -> None:
        if call.state in (CallState.ANSWERED, CallState.CONFIRMED):
            log.info("call %s: maximum duration reached", call.id)
            call.bye_reason = 'SIP;cause=200;text="Maximum call duration"'
            self._hangup(call, "b2bua", "max_duration")

    def _session_expired(self, call: Call, leg: Leg) -> None:
        """The peer should have refreshed and did not: end the call (§10)."""
        if call.state in (CallState.ANSWERED, CallState.CONFIRMED):
            log.info("call %s: session timer of leg %s expired", call.id, leg.name)
            call.bye_reason = 'SIP;cause=408;text="Session timer expired"'
            self._hangup(call, "timer", "session_expired")

    def _session_refresh(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction) -> bool:
        """Answer a pure refresh (UPDATE without a body, or an SDP that did not change) on this leg
        ourselves; 422 an interval below our Min-SE. True when handled here."""
        st = self.config.session_timer
        se = session_expires(req)
        tag = leg.dialog.local_tag if leg.dialog else None
        if st.enabled and se is not None and se[0] < st.min_se:
            resp = make_response(req, 422, to_tag=tag)
            resp.add("min-se", str(st.min_se))
            self._respond(txn, resp)
            return True
        sdp = find_sdp(req.get("content-type"), req.body)
        media = call.media
        if sdp is None and req.method == "INVITE":
            return False  # an offerless re-INVITE: the other side must make the offer
        if sdp is not None and (media is None or not media.unchanged(leg.name, sdp)):
            return False  # a real change: relay it
        if leg.timer is None:
            if sdp is None:
                return False
            leg.timer = LegTimer(se[0] if se else st.session_expires, we_refresh=False,
                                 peer_supports=supports(req, "timer"))
        elif se is not None:
            leg.timer.interval = max(se[0], st.min_se)
            leg.timer.we_refresh = se[1] == "uas"  # the sender is this transaction's UAC
        resp = make_response(req, 200, to_tag=tag)
        resp.add("contact", leg.dialog.local_contact if leg.dialog else self._contact(leg.peer))
        resp.add("session-expires", leg.timer.header(we_are_uac=False))
        if leg.timer.peer_supports and not leg.timer.we_refresh:
            resp.add("require", "timer")
        if req.method == "INVITE" and media is not None:
            resp.set_body(media.last_sent.get(leg.name, b""), "application/sdp")
        self._respond(txn, resp)
        self._arm_session_timer(call, leg)
        self.stats["session_refreshes"] += 1
        return True

    # -- reliable provisionals (RFC 3262) ------------------------------------------------
    def _send_provisional(self, call: Call, resp: Response) -> None:
        rel = call.a.reliable
        if rel is None or resp.status == 100:
            self._respond(call.a_invite, resp)
            return
        if rel.pending is not None:
            rel.queue.append(resp)  # one unacknowledged reliable provisional at a time (§3)
            return
        resp.set("require", "100rel")
        resp.set("rseq", str(rel.rseq))
        rel.pending = (rel.rseq, resp)
        rel.rseq += 1
        rel.interval = self.stack.config.t1
        self._respond(call.a_invite, resp)
        rel.handle = self.stack.timers.call_at(self.now + rel.interval, self._resend_provisional, call,
                                               self.now + self.stack.config.b)

    def _resend_provisional(self, call: Call, give_up_at: float) -> None:
        rel = call.a.reliable
        if rel is None or rel.pending is None or call.state not in (CallState.PROCEEDING, CallState.EARLY):
            return
        if self.now >= give_up_at:
            self._abandon(call, 504, "prack_timeout", "a")  # never PRACKed: reject the INVITE (§3)
            return
        self.stack.send_stateless(rel.pending[1].serialize(), call.a_invite.peer)
        rel.interval = min(rel.interval * 2, self.stack.config.t2)
        rel.handle = self.stack.timers.call_at(min(self.now + rel.interval, give_up_at), self._resend_provisional,
                                               call, give_up_at)

    def _on_prack(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction) -> None:
        rel = leg.reliable
        got = rack(req)
        tag = leg.dialog.local_tag if leg.dialog else None
        if leg is not call.a or rel is None or rel.pending is None or got is None \
                or got != (rel.pending[0], call.a_invite.request.cseq[0], "INVITE"):
            self._respond(txn, make_response(req, 481, to_tag=tag))  # §4: no matching provisional
            return
        if rel.handle is not None:
            rel.handle.cancel()
            rel.handle = None
        rel.pending = None
        self._respond(txn, make_response(req, 200, to_tag=tag))
        if rel.queue and call.state in (CallState.PROCEEDING, CallState.EARLY):
            self._send_provisional(call, rel.queue.pop(0))

    def _send_prack(self, call: Call, r: int, cseq: int) -> None:
        """PRACK the callee's reliable provisional in its early dialog (RFC 3262 §4)."""
        dialog = call.b.dialog
        if dialog is None:
            return
        req = dialog.create_request("PRACK")
        req.add("rack", f"{r} {cseq} INVITE")
        txn = self.stack.send_request(req, call.b.peer, self.now)
        txn.user = call

    # -- media events -------------------------------------------------------------------
    def on_media_event(self, event: object, now: float | None = None) -> None:
        """An event from the media engine (``DtmfEvent``, ``PlayDone``, ``MediaTimeout``), by duck type,
        at ``now`` (the stack's clock otherwise moves only with SIP traffic and timers)."""
        if now is not None and now > self.stack.now:
            self.stack.now = now
        call = self.calls.get(getattr(event, "session", ""))
        if call is None:
            return
        digit = getattr(event, "digit", None)
        if digit is not None:
            self._dtmf(call, getattr(event, "leg"), digit, getattr(event, "source", "rfc4733"))
        elif hasattr(event, "prompt"):
            if self.features is not None:
                self.features.on_play_done(call, getattr(event, "leg"), getattr(event, "prompt"))
        elif hasattr(event, "idle") and call.state in (CallState.CONFIRMED, CallState.ANSWERED, CallState.EARLY):
            log.info("call %s: no RTP from leg %s for %.0f s", call.id, getattr(event, "leg"), getattr(event, "idle"))
            call.bye_reason = 'SIP;cause=408;text="RTP timeout"'
            if call.state is CallState.EARLY:
                self._abandon(call, 408, "rtp_timeout", "media")
            else:
                self._hangup(call, "media", "rtp_timeout")

    def _dtmf(self, call: Call, leg: str, digit: str, source: str) -> None:
        call.dtmf.append((self.now, leg, digit))
        self.stats["dtmf"] += 1
        log.info("call %s dtmf leg=%s digit=%s source=%s", call.id, leg, digit, source)
        if self.on_dtmf is not None:
            self.on_dtmf(call, leg, digit, source)
        if self.features is not None:
            self.features.on_dtmf(call, leg, digit)

    def _info_dtmf(self, call: Call, leg: Leg, req: Request) -> None:
        digit = _info_digit(req)
        if digit is not None:
            self._dtmf(call, leg.name, digit, "info")

    # -- in-dialog requests -------------------------------------------------------------
    def _in_dialog(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction | None) -> None:
        other = call.b if leg is call.a else call.a
        dialog = leg.dialog
        assert dialog is not None
        method = req.method
        if method == "ACK":
            self._on_ack(call, leg, other, req)
            return
        assert txn is not None
        txn.to_tag = dialog.local_tag
        status = dialog.check_request(req)
        if status is not None:
            self._respond(txn, make_response(req, status))
            return
        if method == "BYE":
            self._respond(txn, make_response(req, 200))
            leg.ended = True
            if call.state is CallState.ANSWERED and leg is call.a:
                self.stack.stop_2xx_retransmit(req.call_id, call.a_invite.request.cseq[0])
                self._ack_b(call, call.b_invite.request.cseq[0] if call.b_invite else 1, None)
            if call.state in (CallState.PROCEEDING, CallState.EARLY) and leg is call.b:
                # BYE on an early dialog from B: the call failed before answer
                self._fail_a(call, 480, "early_bye")
                return
            call.cause = call.cause or "normal"
            call.ended_by = call.ended_by or leg.name
            if call.state not in (CallState.TERMINATING, CallState.ENDED):
                call.state = CallState.TERMINATING
                if not other.ended:
                    self._send_bye(call, other)
                self._arm_cleanup(call)
            self._maybe_finish(call)
            return
        if method == "PRACK":
            self._on_prack(call, leg, req, txn)
            return
        if call.state in (CallState.TERMINATING, CallState.ENDED, CallState.CANCELLING):
            self._respond(txn, make_response(req, 481))
            return
        if method in ("INVITE", "UPDATE") and self._session_refresh(call, leg, req, txn):
            return
        odialog = other.dialog
        if odialog is None or other.ended:
            resp = make_response(req, 500 if method != "INVITE" else 491)
            resp.add("retry-after", "1")
            self._respond(txn, resp)
            return
        err = check_request(req, self.config.policy, routed=False, to_tag=dialog.local_tag)
        if err is not None:
            self._respond(txn, err)
            return
        if method == "INFO":
            self._info_dtmf(call, leg, req)
            if call.media is not None and leg.name in call.media.quiet_keys and _info_digit(req) is not None:
                self._respond(txn, make_response(req, 200))  # a staff key: for us, not for the caller
                return
        out = odialog.create_request(method)
        for key in ("event", "subscription-state", "subject", "info-package", "reason"):
            v = req.get(key)
            if v is not None and not (key in ("subject", "reason") and other is call.b and _protected(call)):
                out.add(key, v)
        offer = method in ("INVITE", "UPDATE") and call.media is not None and \
            find_sdp(req.get("content-type"), req.body) is not None
        self._carry_body(call, leg.name, req, out, "offer" if offer else None)  # SdpError -> 400/488
        if method == "INVITE":
            self._respond(txn, make_response(req, 100))  # the far end may take its time (§17.2.1)
        if method in ("INVITE", "UPDATE") and other.timer is not None:
            out.add("session-expires", other.timer.header(we_are_uac=True))
            out.add("supported", "timer")
        ctxn = self.stack.send_request(out, other.peer, self.now)
        ctxn.user = call
        call.relays[id(ctxn)] = txn
        if offer:
            call.relay_offers.add(id(ctxn))

    def _relay_response(self, call: Call, ctxn: ClientTransaction, resp: Response) -> None:
        stxn = call.relays.get(id(ctxn)) if resp.status < 200 else call.relays.pop(id(ctxn), None)
        if stxn is None:
            return
        if resp.status == 100:
            return
        status = resp.status if resp.status < 300 else map_status(resp.status, self.config.response_map)
        from_leg = call.a if stxn.request.call_id == call.a_invite.request.call_id else call.b
        to_leg = call.b if from_leg is call.a else call.a
        same = status == resp.status and not (from_leg is call.b and _protected(call))
        out = make_response(stxn.request, status, resp.reason if same else None,
                            to_tag=from_leg.dialog.local_tag if from_leg.dialog else None)
        if ctxn.request.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            out.add("contact", from_leg.dialog.local_contact if from_leg.dialog else self._contact(from_leg.peer))
            if to_leg.dialog is not None:
                to_leg.dialog.refresh_target(resp)
            # a successful re-INVITE/UPDATE refreshes the session on both legs (RFC 4028 §10)
            for leg in (from_leg, to_leg):
                if leg.timer is not None:
                    self._arm_session_timer(call, leg)
            if from_leg.timer is not None:
                out.add("session-expires", from_leg.timer.header(we_are_uac=False))
        carried_offer = id(ctxn) in call.relay_offers
        if status >= 200:
            call.relay_offers.discard(id(ctxn))
        try:
            if carried_offer and status < 300:
                self._carry_body(call, to_leg.name, resp, out, "answer", final=status >= 200)
            elif ctxn.request.method == "INVITE" and 200 <= status < 300 and call.media is not None \
                    and find_sdp(resp.get("content-type"), resp.body) is not None:
                self._carry_body(call, to_leg.name, resp, out, "offer")  # offerless re-INVITE
                call.ack_answers.add(from_leg.name)
            elif status >= 300 and carried_offer and call.media is not None:
                call.media.abandon()  # offer rejected: the previous session stays (RFC 3264 §8)
            else:
                self._carry_body(call, to_leg.name, resp, out, None)
        except SipError as err:
            log.info("call %s: SDP refused in relayed response: %s", call.id, err)
            out = make_response(stxn.request, 500, to_tag=from_leg.dialog.local_tag if from_leg.dialog else None)
        self._respond(stxn, out)
        if ctxn.request.method == "INVITE" and 200 <= status < 300:
            call.pending_acks[from_leg.name] = ctxn.request.cseq[0]

    def _on_ack(self, call: Call, leg: Leg, other: Leg, ack: Request) -> None:
        if leg is call.a and call.state is CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            if leg.dialog is not None:
                leg.dialog.confirmed = True
            self._ack_b(call, call.b_invite.request.cseq[0] if call.b_invite else 1, ack)
            return
        cseq = call.pending_acks.pop(leg.name, None)
        if cseq is not None and other.dialog is not None:
            out = other.dialog.create_ack(cseq)
            answer = leg.name in call.ack_answers
            call.ack_answers.discard(leg.name)
            try:
                self._carry_body(call, leg.name, ack, out, "answer" if answer else None, final=True)
            except SipError as err:
                log.info("call %s: SDP in ACK refused: %s", call.id, err)
            other.last_ack = (cseq, _copy_request(out))
            self.stack.send_ack(out, other.peer, self.now)


def _protected(call: Call) -> bool:
    """The outbound leg goes to a carrier: nothing of the caller's own reaches it."""
    return any(p is not None and p.protected for p in call.route.presentation)


def _next_invite(old: Request, drop: tuple[str, ...]) -> Request:
    """The same INVITE again with the next CSeq (same Call-ID and tags), minus ``drop`` headers."""
    retry = Request("INVITE", old.uri, [list(h) for h in old.headers if h[0] not in drop], old.body)
    retry.set("cseq", f"{old.cseq[0] + 1} INVITE")
    return retry


def _info_digit(req: Request) -> str | None:
    """The key in an INFO application/dtmf-relay (``Signal=5``) or application/dtmf body."""
    ctype = req.content_type
    text = req.body.decode("ascii", "replace")
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal" and value.strip():
                return value.strip()[:1]
    elif ctype == "application/dtmf" and text.strip():
        return text.strip()[:1]
    return None


def _tag_to(resp: Response, tag: str) -> None:
    for h in resp.headers:
        if h[0] == "to" and ";tag=" not in h[2]:
            h[2] += f";tag={tag}"


def _leg_tag(call: Call, stxn: ServerTransaction) -> str | None:
    leg = call.a if stxn.request.call_id == call.a_invite.request.call_id else call.b
    return leg.dialog.local_tag if leg.dialog else None


def _copy_request(req: Request) -> Request:
    """A fresh copy (the stack inserts a Via into what it sends)."""
    out = Request(req.method, req.uri, [list(h) for h in req.headers if h[0] != "via"], req.body)
    return out


__all__ = ["B2BUA", "B2BUAConfig", "Call", "CallRecord", "CallState", "Features", "Route", "map_status"]
