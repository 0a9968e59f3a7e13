"""The signalling B2BUA: two independent dialogs per call (RFC 3261 §6 "B2BUA", RFC 7092).

Sans-I/O like the stack below it: :meth:`B2BUA.drain` consumes the stack's events and drives the
stack; timers go through the stack's timer queue; time is read from the process's one
:class:`~b2bua.clock.Clock`. Nothing of one leg's topology (Via, Record-Route, Contact, Call-ID,
tags, CSeq) is copied to the other leg.

This module keeps dispatch, admission, the answer/failover logic and teardown. The rest of call
control sits beside it, each part acting through the narrow :class:`~b2bua.call.host.CallHost`:
:mod:`~b2bua.call.outbound` (the outbound INVITE), :mod:`~b2bua.call.relay` (in-dialog requests),
:mod:`~b2bua.call.session_timers` (RFC 4028), :mod:`~b2bua.call.reliable` (RFC 3262), with the
state machine in :mod:`~b2bua.call.state`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from media.api import DtmfEvent, Engine, MediaEvent, MediaTimeout, PlayDone

from ..clock import Clock
from ..sip import events
from ..sip.dialog import Dialog
from ..sip.errors import SipError
from ..sip.events import Event, Peer
from ..sip.message import Request, Response
from ..sip.sdp import find_sdp
from ..sip.stack import SipStack, make_response
from ..sip.timers import TimerConfig, TimerHandle
from ..sip.transaction import ClientTransaction, ServerTransaction
from ..sip.uas import check_request, options_response
from . import admission, outbound
from .body import carry_body
from .callee import CalleeInvite
from .features import Features
from .media import MediaSession
from .model import Call, CallRecord, Leg
from .relay import InDialogRelay
from .reliable import ReliableProvisionals
from .route import Route
from .session import ReliableProvisional, supports
from .session_timers import SessionTimers
from .settings import B2BUAConfig, map_status
from .state import (
    ANSWERED,
    CANCELLING,
    CONFIRMED,
    DONE,
    EARLY,
    ENDED,
    LIVE,
    PROCEEDING,
    RINGING,
    ROUTING,
    TERMINATING,
    UNANSWERED,
    CallState,
)
from .users import BInvite, Bye, CallUser, Ping, Refresh, Relay, TxnUser

log = logging.getLogger("b2bua.call")

#: histogram bounds of the call setup time (INVITE in -> 2xx out), seconds
SETUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: a handler for out-of-dialog requests by method (REGISTER -> the registrar)
Handler = Callable[[Request, ServerTransaction, Peer, float], Response | None]


class B2BUA:
    """Call control above a :class:`SipStack`; implements :class:`~b2bua.call.host.CallHost`."""

    def __init__(self, stack: SipStack, router: Callable[[Request, Peer], Route | Response],
                 config: B2BUAConfig | None = None, engine: Engine | None = None, *, clock: Clock):
        self.stack = stack
        self.clock = clock
        #: the media engine's command interface; None passes SDP through untouched
        self.engine = engine
        self.router = router
        self.config = config or B2BUAConfig()
        self.calls: dict[str, Call] = {}
        self._legs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.stats: Counter[str] = Counter()
        #: (route, what) -> count: attempts, answered, end:<cause>
        self.by_route: Counter[tuple[str, str]] = Counter()
        #: status code -> responses we sent
        self.responses: Counter[int] = Counter()
        self.setup_buckets = SETUP_BUCKETS
        self.setup_counts = [0] * (len(SETUP_BUCKETS) + 1)
        self.setup_sum = 0.0
        self.on_call_end: Callable[[CallRecord], None] | None = None
        #: Set by the driver when the event loop runs late, or while draining: new INVITEs get 503,
        #: and while draining OPTIONS too (a dispatcher in front marks the node down)
        self.overloaded = False
        self.draining = False
        #: Extra request handlers by method (REGISTER -> registrar), out of dialog only.
        self.handlers: dict[str, Handler] = {}
        #: Where gateway pings' results go: (txn, its ping, final response or None on timeout)
        self.on_ping_result: Callable[[Ping, Response | None], None] | None = None
        #: Checks a new INVITE (digest auth of staff devices); a Response rejects it.
        self.authorize: Callable[[Request, float], Response | None] | None = None
        #: call features (ringback prompts, recording, staff keys)
        self.features: Features | None = None
        self.session_timers = SessionTimers(self)
        self.reliable = ReliableProvisionals(self)
        self.relay = InDialogRelay(self, self.session_timers)
        self.callee = CalleeInvite(self)

    @property
    def now(self) -> float:
        return self.clock.now

    # -- CallHost: what the parts of call control act through -------------------------------
    @property
    def sip_timers(self) -> TimerConfig:
        return self.stack.config.timers

    def send_request(self, req: Request, peer: Peer, user: TxnUser | None) -> ClientTransaction:
        txn = self.stack.send_request(req, peer, self.clock.now)
        txn.user = user
        return txn

    def send_ack(self, ack: Request, peer: Peer) -> None:
        self.stack.send_ack(ack, peer, self.clock.now)

    def send_stateless(self, data: bytes, peer: Peer) -> None:
        self.stack.send_stateless(data, peer)

    def respond(self, txn: ServerTransaction, resp: Response) -> None:
        self.responses[resp.status] += 1
        self.stack.respond(txn, resp, self.clock.now)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.stack.timers.call_at(when, callback, *args)

    def contact(self, peer: Peer) -> str:
        return outbound.contact(self.stack.config.local, peer)

    def local_host(self, peer: Peer) -> str:
        return outbound.local_host(self.stack.config.local, peer)

    # -- CalleeHost: what the outbound leg's INVITE acts through ----------------------------
    def new_id(self) -> str:
        return self.stack.new_id()

    def cancel(self, txn: ClientTransaction) -> None:
        self.stack.cancel(txn, self.clock.now)

    def register_dialog(self, call: Call, leg: Leg) -> None:
        assert leg.dialog is not None
        self._legs[leg.dialog.key] = (call, leg)

    def forget_dialog(self, dialog: Dialog) -> None:
        self._legs.pop(dialog.key, None)

    def prack(self, call: Call, r: int, cseq: int) -> None:
        self.reliable.prack(call, r, cseq)

    def ringing(self, call: Call, resp: Response) -> None:
        call.enter(EARLY)
        try:
            a_resp = self._a_response(call, resp, resp.status)
        except SipError as err:
            call.log.info("SDP in %d ignored: %s", resp.status, err)
            a_resp = self._a_response(call, Response(resp.status, resp.reason), resp.status)
        self.reliable.send(call, a_resp)

    # -- event dispatch -----------------------------------------------------------------
    def handle_event(self, ev: Event) -> None:
        try:
            match ev:
                case events.RequestReceived(request=req, transaction=txn, peer=peer):
                    self._on_request(req, txn, peer)
                case events.ResponseReceived(response=resp, transaction=txn):
                    self._on_response(resp, txn)
                case events.CancelReceived(transaction=txn):
                    self._on_cancel(txn)
                case events.TransactionTimeout(transaction=txn):
                    self._on_client_failure(txn, 408, "timeout")
                case events.TransportError(transaction=ClientTransaction() as txn):
                    self._on_client_failure(txn, 502, "transport_error")
                case events.AckTimeout(transaction=txn):
                    self._on_ack_timeout(txn)
        except SipError as err:
            # A malformed message from a peer mid-call: answer it if we can, keep serving.
            self.stats["protocol_errors"] += 1
            log.info("protocol error: %s", err)
            if isinstance(ev, events.RequestReceived) and ev.transaction is not None:
                self.respond(ev.transaction, make_response(ev.request, err.status, err.reason,
                                                           to_tag=self.stack.new_id()))

    def drain(self) -> None:
        """Process every pending stack event."""
        while (ev := self.stack.next_event()) is not None:
            self.handle_event(ev)

    # -- requests -----------------------------------------------------------------------
    def _on_request(self, req: Request, txn: ServerTransaction | None, peer: Peer) -> None:
        to_tag = req.to_tag
        if to_tag is not None:
            found = self._legs.get((req.call_id, to_tag))
            if found is None:
                if txn is not None:
                    self.respond(txn, make_response(req, 481))
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
            self.respond(txn, err)
        elif method == "OPTIONS":
            self.respond(txn, admission.unavailable(req, tag) if self.draining else
                         options_response(req, self.config.policy, tag))
        elif method in self.handlers:
            resp = self.handlers[method](req, txn, peer, self.now)
            if resp is not None:
                self.respond(txn, resp)
        else:
            self.respond(txn, make_response(req, 481, to_tag=tag))

    def _new_call(self, req: Request, txn: ServerTransaction, peer: Peer) -> None:
        a_tag = self.stack.new_id()
        txn.to_tag = a_tag
        authorize = self.authorize
        refused = admission.refusal(req, a_tag, self.config, stats=self.stats,
                                    busy=self.overloaded or self.draining or len(self.calls) >= self.config.max_calls,
                                    authorize=(lambda r: authorize(r, self.now)) if authorize else None)
        if refused is not None:
            self.respond(txn, refused)
            return
        self.respond(txn, make_response(req, 100))
        route = self.router(req, peer)
        if isinstance(route, Response):
            admission.tag_to(route, a_tag)
            self.respond(txn, route)
            return
        call_id = f"c{self.stack.new_id()}"  # unique across restarts (random prefix + counter)
        media: MediaSession | None = None
        b_offer: bytes | None = None
        if self.engine is not None:
            sym = self.config.symmetric_rtp
            media = MediaSession(self.engine, call_id,
                                 {"a": route.symmetric_a if route.symmetric_a is not None else sym,
                                  "b": route.symmetric_b if route.symmetric_b is not None else sym},
                                 {"b": list(route.codecs)} if route.codecs else None,
                                 {"a": route.srtp_a, "b": route.srtp_b})
            try:
                media.allocate()
                sdp = find_sdp(req.get("content-type"), req.body)
                if sdp is not None:
                    b_offer = media.offer("a", sdp)
            except SipError as err:
                media.close()
                self.respond(txn, make_response(req, err.status, err.reason, to_tag=a_tag))
                return
            except Exception as exc:  # PortsExhausted or an engine failure: no call is better than a crash
                media.close()
                log.warning("no media for a new call: %s", exc)
                self.stats["media_unavailable"] += 1
                resp = make_response(req, 503, "Service Unavailable (media ports)", to_tag=a_tag)
                resp.add("retry-after", "5")
                self.respond(txn, resp)
                return
        a_leg = Leg("a", peer, Dialog.from_uas(req, a_tag, self.contact(peer)))
        a_leg.allows_update = "UPDATE" in [m.upper() for m in req.get_all("allow")]
        if supports(req, "100rel"):
            a_leg.reliable = ReliableProvisional()
        call = Call(call_id, a_leg, Leg("b", peer), txn, a_tag, route, self.now, media=media,
                    late_offer=not req.body, b_offer=b_offer)
        txn.user = call
        self.calls[call_id] = call
        assert a_leg.dialog is not None
        self.register_dialog(call, a_leg)
        self.stats["calls_started"] += 1
        self.by_route[(route.name, "attempts")] += 1
        call.log.info("start from=%s to=%s", req.from_.uri, req.to.uri)
        call.ring_timer = self.call_at(self.now + self.config.ring_timeout, self._ring_timeout, call)
        if self.features is None or not self.features.on_new_call(call):
            self.callee.send(call, b_offer)

    # -- what features may do -----------------------------------------------------------
    def early_media(self, call: Call) -> bool:
        """Answer the caller's offer ourselves in a 183 (RFC 3262 reliable when it supports 100rel),
        so prompts can play before anyone answers. False when there is no offer to answer."""
        media = call.media
        if media is None or call.late_offer or call.state not in UNANSWERED:
            return False
        try:
            body = media.answer_locally()
        except SipError:
            return False
        resp = self._to_a(call, 183)
        resp.set_body(body, "application/sdp")
        self.reliable.send(call, resp)
        return True

    def proceed(self, call: Call) -> None:
        """Send the outbound INVITE a feature held back (after a notice, or to a fallback route)."""
        if call.state is ROUTING and call.b_invite is None:
            call.target_index = 0
            self.callee.send(call, call.b_offer)

    def release(self, call: Call, status: int, cause: str) -> None:
        """Refuse a call that was not answered (a closed department after its prompt)."""
        if call.state is ROUTING and call.b_invite is None:
            self.fail_a(call, status, cause, by="b2bua")
        elif call.state in RINGING:
            self.abandon(call, status, cause, "b2bua")

    def end_call(self, call: Call, cause: str, reason: str) -> None:
        """BYE both legs of an answered call with a Reason header (RFC 3326)."""
        call.bye_reason = reason
        self.hangup(call, "b2bua", cause)

    # -- responses ----------------------------------------------------------------------
    def _on_response(self, resp: Response, txn: ClientTransaction) -> None:
        user = txn.user
        if isinstance(user, Ping):
            if resp.status >= 200 and self.on_ping_result is not None:
                self.on_ping_result(user, resp)
            return
        if not isinstance(user, CallUser):
            return  # the BYE of an unwanted 2xx: nothing to do
        call = user.call
        if isinstance(user, BInvite) and txn.request.method != "INVITE":
            return  # our CANCEL's answer (the stack gives a CANCEL its INVITE's user): nothing to do
        if call.state is ENDED:
            if isinstance(user, BInvite) and 200 <= resp.status < 300:
                self.callee.answer(call, resp, txn)  # answered too late: ACK and BYE it
            return
        match user:
            case BInvite() if txn is call.b_invite:
                self.callee.response(call, resp, txn)
            case BInvite() if 200 <= resp.status < 300:
                self.callee.ack_and_bye(call, txn, resp)  # a target we gave up on answered after all
            case Bye(leg=name) if resp.status >= 200:
                self._leg_done(call, call.leg(name))
            case Refresh():
                self.session_timers.on_response(call, user, txn, resp)
            case Relay():
                self.relay.response(call, user, txn, resp)

    def _a_response(self, call: Call, src: Response, status: int) -> Response:
        """A response to A's INVITE carrying B's body and our own Contact and Record-Route copy."""
        same = status == src.status and call.route.department is None  # a department's phones say nothing
        resp = self._to_a(call, status, src.reason if same else None)
        if status >= 200:
            resp.add("allow", ", ".join(self.config.policy.allow))
            if 200 <= status < 300:
                self.session_timers.grant_inbound(call, resp)
        if call.late_offer and status < 200:
            return resp  # an offer in an unreliable 1xx is only a preview: keep it for the 2xx
        carry_body(call, "b", src, resp, "offer" if call.late_offer else "answer", final=status >= 200,
                   ours=self.local_host(call.b.peer))
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
        resp.add("contact", call.a.dialog.local_contact if call.a.dialog else self.contact(call.a.peer))
        return resp

    def answered(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        """The callee's 2xx while ringing (its dialog confirmed by :class:`CalleeInvite`): the caller's 2xx."""
        self._cancel_ring(call)
        try:
            a_resp = self._a_response(call, resp, resp.status)
        except SipError as err:
            # the callee's SDP is unusable: hang it up, refuse the caller
            call.log.info("callee SDP refused: %s", err)
            self.callee.ack_and_bye(call, txn, resp)
            self.fail_a(call, 488, "bad_sdp")
            return
        call.enter(ANSWERED)
        call.answered = self.now
        call.final_status = 200
        self._observe_setup(self.now - call.started)
        call.b.allows_update = "UPDATE" in [m.upper() for m in resp.get_all("allow")]
        self.session_timers.adopt_outbound(call, resp)
        if self.config.max_duration > 0:
            self.call_at(self.now + self.config.max_duration, self._max_duration, call)
        if call.a.reliable is not None:
            call.a.reliable.cancel()
        self.respond(call.a_invite, a_resp)
        if self.features is not None:
            self.features.on_answer(call)

    def fail_a(self, call: Call, status: int, cause: str, src: Response | None = None, by: str = "b") -> None:
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
        self.respond(call.a_invite, resp)
        call.final_status = status
        call.cause = cause
        call.ended_by = by
        call.a.ended = call.b.ended = True
        self.finish(call)

    def _on_client_failure(self, txn: ClientTransaction, status: int, cause: str) -> None:
        user = txn.user
        if isinstance(user, Ping):
            if self.on_ping_result is not None:
                self.on_ping_result(user, None)
            return
        match user:
            case BInvite(call=call) if txn is call.b_invite:
                if call.state is PROCEEDING and self.callee.next_target(call):
                    return
                if call.state in RINGING:
                    self.fail_a(call, status, cause)
                else:
                    call.b.ended = True
                    self.maybe_finish(call)
            case Bye(call=call, leg=name):
                self._leg_done(call, call.leg(name))
            case Refresh(call=call) if call.state is not ENDED:
                self.session_timers.failed(call, user)
            case Relay(call=call) if call.state is not ENDED:
                self.relay.failure(call, user, txn, status, cause)

    def _on_ack_timeout(self, txn: ServerTransaction) -> None:
        call = txn.user
        if isinstance(call, Call) and call.state is ANSWERED and txn is call.a_invite:
            self.callee.ack(call, None)
            self.hangup(call, "a", "ack_timeout")

    # -- in-dialog requests -------------------------------------------------------------
    def _in_dialog(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction | None) -> None:
        dialog = leg.dialog
        assert dialog is not None
        if req.method == "ACK":
            if leg is call.a and call.state is ANSWERED:
                call.enter(CONFIRMED)
                dialog.confirmed = True
                self.callee.ack(call, req)
            else:
                self.relay.ack(call, leg, req)
            return
        assert txn is not None
        txn.to_tag = dialog.local_tag
        status = dialog.check_request(req)
        if status is not None:
            self.respond(txn, make_response(req, status))
            return
        match req.method:
            case "BYE":
                self._on_bye(call, leg, req, txn)
            case "PRACK":
                self.reliable.on_prack(call, leg, req, txn)
            case _:
                self.relay.request(call, leg, req, txn)

    def _on_bye(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction) -> None:
        """A BYE from either leg (§15.1.2): 200, then BYE the other leg."""
        self.respond(txn, make_response(req, 200))
        leg.ended = True
        if call.state is ANSWERED and leg is call.a:
            self.stack.stop_2xx_retransmit(req.call_id, call.a_invite.request.cseq[0])
            self.callee.ack(call, None)
        if call.state in RINGING and leg is call.b:
            self.fail_a(call, 480, "early_bye")  # BYE on an early dialog from B: the call failed before answer
            return
        call.cause = call.cause or "normal"
        call.ended_by = call.ended_by or leg.name
        if call.state not in DONE:
            call.enter(TERMINATING)
            other = call.other(leg)
            if not other.ended:
                self._send_bye(call, other)
            self._arm_cleanup(call)
        self.maybe_finish(call)

    # -- media events ---------------------------------------------------------------------
    def on_media_event(self, event: MediaEvent) -> None:
        """An event from the media engine, at the clock's now (the driver moved it before calling)."""
        call = self.calls.get(event.session)
        if call is None:
            return
        match event:
            case DtmfEvent(leg=leg, digit=digit, source=source):
                self.dtmf(call, leg, digit, source)
            case PlayDone(leg=leg, prompt=prompt):
                if self.features is not None:
                    self.features.on_play_done(call, leg, prompt)
            case MediaTimeout(leg=leg, idle=idle) if call.state in LIVE or call.state is EARLY:
                call.log.info("no RTP from leg %s for %.0f s", leg, idle)
                call.bye_reason = 'SIP;cause=408;text="RTP timeout"'
                if call.state is EARLY:
                    self.abandon(call, 408, "rtp_timeout", "media")
                else:
                    self.hangup(call, "media", "rtp_timeout")

    def dtmf(self, call: Call, leg: str, digit: str, source: str) -> None:
        call.dtmf.append((self.now, leg, digit))
        self.stats["dtmf"] += 1
        call.log.info("dtmf leg=%s digit=%s source=%s", leg, digit, source)
        if self.features is not None:
            self.features.on_dtmf(call, leg, digit)

    # -- CANCEL, timeouts, teardown -----------------------------------------------------
    def _on_cancel(self, txn: ServerTransaction) -> None:
        call = txn.user
        if not isinstance(call, Call):
            self.respond(txn, make_response(txn.request, 487, to_tag=txn.to_tag))
            return
        self.abandon(call, 487, "cancelled", "a")

    def abandon(self, call: Call, status: int, cause: str, by: str) -> None:
        """End a call that was never answered: ``status`` to the caller, CANCEL to the callee."""
        self._cancel_ring(call)
        if call.a.reliable is not None:
            call.a.reliable.cancel()
        self.respond(call.a_invite, make_response(call.a_invite.request, status, to_tag=call.a_tag))
        call.final_status, call.cause, call.ended_by = status, cause, by
        call.a.ended = True
        call.enter(CANCELLING)
        if call.b_invite is not None:
            self.stack.cancel(call.b_invite, self.now)
            self._arm_cleanup(call)
        else:
            call.b.ended = True
            self.finish(call)

    def _ring_timeout(self, call: Call) -> None:
        if call.state in RINGING:
            self.abandon(call, 480, "no_answer", "b")

    def _max_duration(self, call: Call) -> None:
        if call.state in LIVE:
            call.log.info("maximum duration reached")
            call.bye_reason = 'SIP;cause=200;text="Maximum call duration"'
            self.hangup(call, "b2bua", "max_duration")

    def _cancel_ring(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _arm_cleanup(self, call: Call) -> None:
        """Give the other leg 64*T1 to finish, then forget the call regardless."""
        if call.cleanup_timer is None:
            call.cleanup_timer = self.call_at(self.now + self.sip_timers.b + 1, self.finish, call)

    def hangup(self, call: Call, by: str, cause: str) -> None:
        """Tear down both legs of an established call."""
        if call.state in DONE:
            return
        call.enter(TERMINATING)
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
        self.send_request(req, leg.peer, Bye(call, leg.name))

    def _leg_done(self, call: Call, leg: Leg) -> None:
        leg.ended = True
        self.maybe_finish(call)

    def maybe_finish(self, call: Call) -> None:
        if call.a.ended and call.b.ended:
            self.finish(call)

    def finish(self, call: Call) -> None:
        if call.state is ENDED:
            return
        call.enter(ENDED)
        self._cancel_ring(call)
        if call.cleanup_timer is not None:
            call.cleanup_timer.cancel()
            call.cleanup_timer = None
        for leg in (call.a, call.b):
            if leg.dialog is not None:
                self.forget_dialog(leg.dialog)
        self.calls.pop(call.id, None)
        if self.features is not None:
            self.features.on_end(call)
        if call.media is not None:
            call.media_stats = call.media.close()
        for leg in (call.a, call.b):
            if leg.timer is not None:
                leg.timer.cancel()
            if leg.reliable is not None:
                leg.reliable.cancel()
        # Break call <-> transaction reference cycles so refcounting frees the call (no GC pass).
        call.a_invite.user = None
        call.b_invite = None  # its user still finds the call for a late 2xx
        self.stats["calls_ended"] += 1
        self.by_route[(call.route.name, f"end:{call.cause or 'normal'}")] += 1
        if call.answered is not None:
            self.by_route[(call.route.name, "answered")] += 1
        record = call.record(self.now)
        media = " ".join(f"{leg}_{k}={int(v)}" for leg, st in sorted(call.media_stats.items())
                         for k, v in st.items() if k in ("packets_received", "packets_sent", "packets_lost",
                                                         "dropped", "strangers"))
        call.log.info("end status=%s cause=%s by=%s%s", record.status, record.cause, record.ended_by,
                      f" {media}" if media else "")
        if self.on_call_end is not None:
            self.on_call_end(record)

    def _observe_setup(self, seconds: float) -> None:
        self.setup_sum += seconds
        for i, bound in enumerate(self.setup_buckets):
            if seconds <= bound:
                self.setup_counts[i] += 1
                return
        self.setup_counts[-1] += 1


__all__ = ["B2BUA", "B2BUAConfig", "Call", "CallRecord", "CallState", "Features", "Route", "map_status"]
