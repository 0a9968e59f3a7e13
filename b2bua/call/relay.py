"""In-dialog requests relayed between the legs (RFC 7092 §3.1: each leg its own dialog).

INFO, UPDATE, re-INVITE, MESSAGE and NOTIFY from one leg become a new request in the other leg's
dialog, their final response goes back; an SDP in them goes through offer/answer when the media
is anchored (RFC 3264 §8). The ACK for a relayed re-INVITE's 2xx is sent when the originator's
ACK arrives, carrying the answer if the 2xx made the offer. Pure session refreshes are answered
by :class:`~b2bua.call.session_timers.SessionTimers` without reaching the other leg.
"""

from __future__ import annotations

from ..sip.errors import SipError
from ..sip.message import Request, Response
from ..sip.sdp import find_sdp
from ..sip.stack import make_response
from ..sip.transaction import ClientTransaction, ServerTransaction, State
from ..sip.uas import check_request
from .body import carry_body, copy_request
from .host import CallHost
from .model import Call, Leg
from .session_timers import SessionTimers
from .settings import map_status
from .state import CLOSING
from .users import Relay

#: headers of an in-dialog request that cross to the other leg (besides the body's)
CARRIED = ("event", "subscription-state", "subject", "info-package", "reason")
#: of those, the ones that may carry the staff's words: never sent towards a carrier
PERSONAL = ("subject", "reason")


def info_digit(req: Request) -> str | None:
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


class InDialogRelay:
    def __init__(self, host: CallHost, timers: SessionTimers):
        self.host = host
        self.timers = timers

    def _ours(self, call: Call) -> str:
        return self.host.local_host(call.b.peer)

    def request(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction) -> None:
        """A request in ``leg``'s dialog other than ACK, BYE and PRACK."""
        other = call.other(leg)
        method = req.method
        if call.state in CLOSING:
            self.host.respond(txn, make_response(req, 481))
            return
        if method in ("INVITE", "UPDATE") and self.timers.answer_refresh(call, leg, req, txn):
            return
        odialog = other.dialog
        if odialog is None or other.ended:
            resp = make_response(req, 500 if method != "INVITE" else 491)
            resp.add("retry-after", "1")
            self.host.respond(txn, resp)
            return
        assert leg.dialog is not None
        err = check_request(req, self.host.config.policy, routed=False, to_tag=leg.dialog.local_tag)
        if err is not None:
            self.host.respond(txn, err)
            return
        if method == "INFO":
            digit = info_digit(req)
            if digit is not None:
                self.host.dtmf(call, leg.name, digit, "info")
                if call.media is not None and leg.name in call.media.quiet_keys:
                    self.host.respond(txn, make_response(req, 200))  # a staff key: for us, not for the caller
                    return
        out = odialog.create_request(method)
        for key in CARRIED:
            v = req.get(key)
            if v is not None and not (key in PERSONAL and other is call.b and call.protected):
                out.add(key, v)
        offer = method in ("INVITE", "UPDATE") and call.media is not None and \
            find_sdp(req.get("content-type"), req.body) is not None
        carry_body(call, leg.name, req, out, "offer" if offer else None, ours=self._ours(call))  # SdpError -> 4xx
        if method == "INVITE":
            self.host.respond(txn, make_response(req, 100))  # the far end may take its time (§17.2.1)
        if method in ("INVITE", "UPDATE") and other.timer is not None:
            out.add("session-expires", other.timer.header(we_are_uac=True))
            out.add("supported", "timer")
        self.host.send_request(out, other.peer, Relay(call, txn, offer))

    def response(self, call: Call, user: Relay, ctxn: ClientTransaction, resp: Response) -> None:
        """The other leg answered a relayed request: answer the originator the same way."""
        stxn = user.server
        if stxn.state not in (State.TRYING, State.PROCEEDING):
            if ctxn.request.method == "INVITE" and 200 <= resp.status < 300:
                self._ack_again(call, ctxn)  # a retransmitted 2xx (§13.2.2.4)
            return
        if resp.status == 100:
            return
        status = resp.status if resp.status < 300 else map_status(resp.status, self.host.config.response_map)
        from_leg = call.a if stxn.request.call_id == call.a_invite.request.call_id else call.b
        to_leg = call.other(from_leg)
        same = status == resp.status and not (from_leg is call.b and call.protected)
        out = make_response(stxn.request, status, resp.reason if same else None,
                            to_tag=from_leg.dialog.local_tag if from_leg.dialog else None)
        success = 200 <= status < 300
        if ctxn.request.method in ("INVITE", "UPDATE") and success:
            out.add("contact", from_leg.dialog.local_contact if from_leg.dialog else self.host.contact(from_leg.peer))
            if to_leg.dialog is not None:
                to_leg.dialog.refresh_target(resp)
            self.timers.rearm_both(call)
            if from_leg.timer is not None:
                out.add("session-expires", from_leg.timer.header(we_are_uac=False))
        try:
            if user.offer and status < 300:
                carry_body(call, to_leg.name, resp, out, "answer", final=status >= 200, ours=self._ours(call))
            elif ctxn.request.method == "INVITE" and success and call.media is not None \
                    and find_sdp(resp.get("content-type"), resp.body) is not None:
                carry_body(call, to_leg.name, resp, out, "offer", ours=self._ours(call))  # offerless re-INVITE
                call.ack_answers.add(from_leg.name)
            elif status >= 300 and user.offer and call.media is not None:
                call.media.abandon()  # offer rejected: the previous session stays (RFC 3264 §8)
            else:
                carry_body(call, to_leg.name, resp, out, None, ours=self._ours(call))
        except SipError as err:
            call.log.info("SDP refused in relayed response: %s", err)
            out = make_response(stxn.request, 500, to_tag=from_leg.dialog.local_tag if from_leg.dialog else None)
        self.host.respond(stxn, out)
        if ctxn.request.method == "INVITE" and success:
            call.pending_acks[from_leg.name] = ctxn.request.cseq[0]

    def failure(self, call: Call, user: Relay, ctxn: ClientTransaction, status: int, cause: str) -> None:
        """The relayed request timed out or could not be sent: answer the originator, and hang up
        when the other leg is gone (408, transport error)."""
        stxn = user.server
        if stxn.state in (State.TRYING, State.PROCEEDING):
            leg = call.a if stxn.request.call_id == call.a_invite.request.call_id else call.b
            tag = leg.dialog.local_tag if leg.dialog else None
            self.host.respond(stxn, make_response(stxn.request, status, to_tag=tag))
        if status == 408 or cause == "transport_error":
            lost = call.b if call.b.dialog is not None and ctxn.request.call_id == call.b.dialog.call_id else call.a
            self.host.hangup(call, lost.name, cause)

    def _ack_again(self, call: Call, ctxn: ClientTransaction) -> None:
        leg = call.b if call.b.dialog is not None and ctxn.request.call_id == call.b.dialog.call_id else call.a
        if leg.last_ack is not None and leg.last_ack[0] == ctxn.request.cseq[0]:
            self.host.send_ack(copy_request(leg.last_ack[1]), leg.peer)

    def ack(self, call: Call, leg: Leg, ack: Request) -> None:
        """The originator's ACK for a relayed re-INVITE's 2xx: ACK the other leg's 2xx, with the
        answer when that 2xx carried an offer."""
        other = call.other(leg)
        cseq = call.pending_acks.pop(leg.name, None)
        if cseq is None or other.dialog is None:
            return
        out = other.dialog.create_ack(cseq)
        answer = leg.name in call.ack_answers
        call.ack_answers.discard(leg.name)
        try:
            carry_body(call, leg.name, ack, out, "answer" if answer else None, final=True, ours=self._ours(call))
        except SipError as err:
            call.log.info("SDP in ACK refused: %s", err)
        other.last_ack = (cseq, copy_request(out))
        self.host.send_ack(out, other.peer)


__all__ = ["InDialogRelay", "info_digit"]
