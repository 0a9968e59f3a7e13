"""Session timers per leg (RFC 4028), driven through :class:`~b2bua.call.host.CallHost`.

Each leg negotiates its own interval and refresher (the state and header arithmetic are in
:mod:`b2bua.call.session`): we grant the caller's Session-Expires in our 2xx (§9), adopt what the
callee's 2xx says (§7.2), refresh the legs we are the refresher of with UPDATE or a re-INVITE
repeating our SDP (§7.4), answer a peer's pure refresh ourselves, and end the call when a leg's
refresher stays silent (§10).
"""

from __future__ import annotations

from ..sip.message import Request, Response
from ..sip.sdp import find_sdp
from ..sip.stack import make_response
from ..sip.transaction import ClientTransaction, ServerTransaction
from .host import CallHost
from .model import Call, Leg
from .session import LegTimer, min_se, session_expires, supports
from .state import LIVE
from .users import Refresh

#: a refresh refused with 491 and the like is tried again this much later
RETRY_AFTER_S = 5.0


class SessionTimers:
    def __init__(self, host: CallHost):
        self.host = host

    def grant_inbound(self, call: Call, resp: Response) -> None:
        """Grant the caller's Session-Expires (or ours) in the 2xx (§9) and start the leg's timer."""
        st = self.host.config.session_timer
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
        self.arm(call, call.a)

    def adopt_outbound(self, call: Call, resp: Response) -> None:
        """Adopt what the callee's 2xx says (§7.2); without Session-Expires we refresh ourselves."""
        st = self.host.config.session_timer
        if not st.enabled:
            return
        se = session_expires(resp)
        if se is not None:
            call.b.timer = LegTimer(se[0], we_refresh=se[1] != "uas", peer_supports=True)
        else:
            asked = session_expires(call.b_invite.request) if call.b_invite else None
            call.b.timer = LegTimer(asked[0] if asked else st.session_expires, we_refresh=True,
                                    peer_supports=supports(resp, "timer"))
        self.arm(call, call.b)

    def arm(self, call: Call, leg: Leg) -> None:
        """(Re)start the leg's timer: our refresh at half the interval, or its expiry (§10)."""
        timer = leg.timer
        assert timer is not None
        timer.cancel()
        now = self.host.clock.now
        if timer.we_refresh:
            timer.handle = self.host.call_at(now + timer.refresh_after, self.refresh, call, leg)
        else:
            timer.handle = self.host.call_at(now + timer.expire_after, self._expired, call, leg)

    def rearm_both(self, call: Call) -> None:
        """A successful re-INVITE/UPDATE refreshes the session on both legs (§10)."""
        for leg in (call.a, call.b):
            if leg.timer is not None:
                self.arm(call, leg)

    def refresh(self, call: Call, leg: Leg) -> None:
        """We are this leg's refresher: UPDATE when the peer allows it, else a re-INVITE
        repeating our current SDP (§7.4, §9)."""
        if call.state not in LIVE or leg.dialog is None or leg.timer is None:
            return
        body = call.media.last_sent.get(leg.name) if call.media is not None else call.sdp_sent.get(leg.name)
        if leg.allows_update or body is None:
            req = leg.dialog.create_request("UPDATE")
        else:
            req = leg.dialog.create_request("INVITE")
            req.set_body(body, "application/sdp")
        req.add("session-expires", leg.timer.header(we_are_uac=True))
        req.add("supported", "timer")
        self.host.send_request(req, leg.peer, Refresh(call, leg.name))
        leg.timer.refreshes += 1

    def on_response(self, call: Call, user: Refresh, txn: ClientTransaction, resp: Response) -> None:
        """The answer to our refresh: re-arm, retry with a larger interval (422), or end the call."""
        if resp.status < 200:
            return
        leg = call.leg(user.leg)
        if 200 <= resp.status < 300:
            if txn.request.method == "INVITE" and leg.dialog is not None:
                self.host.send_ack(leg.dialog.create_ack(txn.request.cseq[0]), leg.peer)
            se = session_expires(resp)
            if leg.timer is not None:
                if se is not None:
                    leg.timer.interval = se[0]
                    leg.timer.we_refresh = se[1] != "uas"  # we were the UAC of this refresh
                self.arm(call, leg)
        elif resp.status == 422 and leg.timer is not None:
            leg.timer.interval = max(leg.timer.interval, min_se(resp))
            self.refresh(call, leg)
        elif resp.status in (408, 481) or resp.status >= 500 and resp.status != 503:
            self.failed(call, user, resp.status)
        elif leg.timer is not None:  # 491 and the like: try again a little later
            leg.timer.cancel()
            leg.timer.handle = self.host.call_at(self.host.clock.now + RETRY_AFTER_S, self.refresh, call, leg)

    def failed(self, call: Call, user: Refresh, status: int = 408) -> None:
        """Our refresh got no answer or a fatal one: the session is gone (§10)."""
        call.bye_reason = f'SIP;cause={status};text="Session refresh failed"'
        self.host.hangup(call, user.leg, "session_refresh_failed")

    def _expired(self, call: Call, leg: Leg) -> None:
        """The peer should have refreshed and did not: end the call (§10)."""
        if call.state in LIVE:
            call.log.info("session timer of leg %s expired", leg.name)
            call.bye_reason = 'SIP;cause=408;text="Session timer expired"'
            self.host.hangup(call, "timer", "session_expired")

    def answer_refresh(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction) -> bool:
        """Answer a pure refresh (UPDATE without a body, or an SDP that did not change) on this leg
        ourselves; 422 an interval below our Min-SE. True when handled here."""
        st = self.host.config.session_timer
        se = session_expires(req)
        tag = leg.dialog.local_tag if leg.dialog else None
        if st.enabled and se is not None and se[0] < st.min_se:
            resp = make_response(req, 422, to_tag=tag)
            resp.add("min-se", str(st.min_se))
            self.host.respond(txn, resp)
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
        resp.add("contact", leg.dialog.local_contact if leg.dialog else self.host.contact(leg.peer))
        resp.add("session-expires", leg.timer.header(we_are_uac=False))
        if leg.timer.peer_supports and not leg.timer.we_refresh:
            resp.add("require", "timer")
        if req.method == "INVITE" and media is not None:
            resp.set_body(media.last_sent.get(leg.name, b""), "application/sdp")
        self.host.respond(txn, resp)
        self.arm(call, leg)
        self.host.stats["session_refreshes"] += 1
        return True


__all__ = ["SessionTimers"]
