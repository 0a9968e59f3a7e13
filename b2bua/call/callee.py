"""The outbound leg's INVITE transaction, from the callee's side of the B2BUA.

It sends the INVITE :mod:`~b2bua.call.outbound` builds, follows the callee's early dialogs and
PRACKs its reliable provisionals (RFC 3262 §4), answers a digest challenge (RFC 3261 §22.2) or a
422 (RFC 4028 §7.4) once, fails over to the route's next gateway (on a failover status, a
timeout or no answer in time), ACKs the 2xx when the caller ACKs ours (§13.2.2.4), and ACKs and
hangs up the 2xx it does not want: a second fork, a target it gave up on, an answer that crossed
our CANCEL (§13.2.2.4, §9.1). The caller's side of all this (its 18x, its 2xx, its final error)
stays with :class:`~b2bua.call.b2bua.B2BUA`, through :class:`CalleeHost`.
"""

from __future__ import annotations

from typing import Protocol

from ..sip.dialog import Dialog, uri_to_peer
from ..sip.errors import SipError
from ..sip.events import Peer
from ..sip.message import Request, Response
from ..sip.transaction import ClientTransaction
from . import outbound
from .body import carry_body, copy_request
from .host import CallHost
from .model import Call, Leg
from .session import rseq
from .settings import map_status
from .state import CLOSING, PROCEEDING, RINGING
from .users import BInvite


class CalleeHost(CallHost, Protocol):
    def new_id(self) -> str:
        """A fresh token for tags and Call-IDs."""
        ...

    def cancel(self, txn: ClientTransaction) -> None:
        """CANCEL a pending INVITE (§9.1)."""
        ...

    def register_dialog(self, call: Call, leg: Leg) -> None:
        """In-dialog requests matching ``leg.dialog`` belong to ``call`` from now on."""
        ...

    def forget_dialog(self, dialog: Dialog) -> None:
        ...

    def prack(self, call: Call, r: int, cseq: int) -> None:
        """PRACK the callee's reliable provisional ``r`` (RFC 3262 §4)."""
        ...

    def ringing(self, call: Call, resp: Response) -> None:
        """The callee sent a provisional: the caller gets its own."""
        ...

    def answered(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        """The callee answered while ringing: the caller gets its 2xx."""
        ...

    def fail_a(self, call: Call, status: int, cause: str, src: Response | None = None, by: str = "b") -> None:
        """End an unanswered call with a final response to the caller."""
        ...

    def maybe_finish(self, call: Call) -> None:
        """Forget the call if both legs have ended."""
        ...


class CalleeInvite:
    def __init__(self, host: CalleeHost):
        self.host = host

    def send(self, call: Call, offer: bytes | None = None) -> None:
        """Build the outbound INVITE from scratch for the route's current target and send it."""
        host = self.host
        a_req = call.a_invite.request
        target = outbound.target_uri(a_req, call.route.targets[call.target_index])
        try:
            peer = call.route.peer or uri_to_peer(str(target))
        except SipError:
            host.fail_a(call, 500, "bad_route")
            return
        call.b.peer = peer
        ours = host.local_host(peer)
        req = outbound.build_invite(a_req, target, from_tag=host.new_id(), call_id=f"{host.new_id()}@b2bua",
                                    contact=host.contact(peer), host=ours, allow=host.config.policy.allow,
                                    session_timer=host.config.session_timer)
        if offer is not None:
            req.set_body(offer, "application/sdp")
        elif call.media is None:
            carry_body(call, "a", a_req, req, None, ours=ours)
        presentation = call.route.presentation
        pres = presentation[call.target_index] if call.target_index < len(presentation) else None
        if pres is not None:
            pres.apply(req, ours)
        call.enter(PROCEEDING)
        txn = call.b_invite = host.send_request(req, peer, BInvite(call))
        if call.route.no_answer_timeout and call.target_index + 1 < len(call.route.targets):
            host.call_at(host.clock.now + call.route.no_answer_timeout, self._no_answer, call, txn)

    def response(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        """A response to the current outbound INVITE."""
        status = resp.status
        if status < 200:
            if status > 100:
                self._provisional(call, resp, txn)
            return
        if status < 300:
            self.answer(call, resp, txn)
            return
        if call.state is PROCEEDING and self._retry(call, resp, txn):
            return
        if status in call.route.failover and self.next_target(call):
            return
        if call.state in CLOSING:
            call.b.ended = True
            self.host.maybe_finish(call)
            return
        self.host.fail_a(call, map_status(status, self.host.config.response_map), "rejected", resp)

    def _retry(self, call: Call, resp: Response, txn: ClientTransaction) -> bool:
        """Ask again once: with the route's credentials (401/407), with a larger interval (422)."""
        retry = None
        if resp.status in (401, 407) and call.route.credentials is not None and call.auth_tries < 1:
            call.auth_tries += 1
            retry = outbound.with_credentials(txn.request, resp, call.route.credentials)
        elif resp.status == 422 and call.st_retries < 1:
            call.st_retries += 1
            retry = outbound.with_larger_interval(txn.request, resp, self.host.config.session_timer.min_se)
        if retry is None:
            return False
        call.b_invite = self.host.send_request(retry, call.b.peer, BInvite(call))
        return True

    def _provisional(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        """An 18x: the callee's early dialog, our PRACK when it is reliable, the caller's 18x."""
        if resp.to_tag and call.b.dialog is None:
            call.b.dialog = Dialog.from_uac(txn.request, resp)
            self.host.register_dialog(call, call.b)
        if "100rel" in [t.lower() for t in resp.get_all("require")]:
            r = rseq(resp)
            if r is None or r <= call.b.prack_rseq:
                return  # a retransmission of a reliable provisional we already PRACKed
            call.b.prack_rseq = r
            self.host.prack(call, r, txn.request.cseq[0])
        if call.state in RINGING:
            self.host.ringing(call, resp)

    def _no_answer(self, call: Call, txn: ClientTransaction) -> None:
        """This target rang too long: CANCEL it and try the next one (the caller keeps waiting)."""
        if txn is not call.b_invite or call.state not in RINGING:
            return
        self.host.cancel(txn)
        call.enter(PROCEEDING)  # the next target starts from scratch
        self.next_target(call)

    def next_target(self, call: Call) -> bool:
        """Fail over to the route's next gateway: a fresh outbound leg (new Call-ID and tags)."""
        if call.state is not PROCEEDING or call.target_index + 1 >= len(call.route.targets):
            return False
        if call.b.dialog is not None:
            self.host.forget_dialog(call.b.dialog)
        call.target_index += 1
        call.b = Leg("b", call.b.peer)
        call.auth_tries = call.st_retries = 0
        self.host.stats["failovers"] += 1
        call.log.info("failing over to %s", call.route.targets[call.target_index])
        self.send(call, call.b_offer)
        return True

    def answer(self, call: Call, resp: Response, txn: ClientTransaction) -> None:
        """A 2xx on an outbound INVITE: the answer, a retransmission, or one we do not want."""
        tag = resp.to_tag
        unwanted = call.unwanted.get(tag or "")
        if unwanted is not None:  # retransmitted 2xx of a dialog we hung up: ACK again
            self.host.send_ack(copy_request(unwanted[0]), unwanted[1])
            return
        if call.state in RINGING:
            dialog = call.b.dialog
            if dialog is None or dialog.remote_tag != tag:
                if dialog is not None:
                    self.host.forget_dialog(dialog)  # the early dialog of another fork
                dialog = call.b.dialog = Dialog.from_uac(txn.request, resp)
                self.host.register_dialog(call, call.b)
            dialog.confirmed = True
            dialog.refresh_target(resp)
            dialog.route_set = list(reversed(resp.get_all("record-route")))
            call.b.peer = _next_hop(dialog, call.b.peer)
            self.host.answered(call, resp, txn)
            return
        dialog = call.b.dialog
        if dialog is not None and dialog.confirmed and dialog.remote_tag == tag:
            if call.b.last_ack is not None and call.b.last_ack[0] == txn.request.cseq[0]:
                self.host.send_ack(copy_request(call.b.last_ack[1]), call.b.peer)
            return  # else A has not ACKed yet; ours goes out with A's
        # A 2xx we do not want: a second fork, or an answer that crossed our CANCEL (§15, §9.1).
        self.ack_and_bye(call, txn, resp)
        if call.state in CLOSING:
            call.b.ended = True
            self.host.maybe_finish(call)

    def ack_and_bye(self, call: Call, txn: ClientTransaction, resp: Response) -> None:
        """ACK a 2xx and end its dialog at once; its retransmissions get the same ACK."""
        d = Dialog.from_uac(txn.request, resp)
        try:
            peer = d.next_hop()
        except SipError:
            peer = call.b.peer
        ack = d.create_ack(txn.request.cseq[0])
        call.unwanted[resp.to_tag or ""] = (copy_request(ack), peer)
        self.host.send_ack(ack, peer)
        self.host.send_request(d.create_request("BYE"), peer, None)
        self.host.stats["unwanted_answers"] += 1

    def ack(self, call: Call, src_ack: Request | None) -> None:
        """ACK the callee's 2xx, with the caller's answer when the 2xx made the offer (late offer)."""
        dialog = call.b.dialog
        if dialog is None:
            return
        cseq = call.b_invite.request.cseq[0] if call.b_invite else 1
        ack = dialog.create_ack(cseq)
        if src_ack is not None:
            try:
                carry_body(call, "a", src_ack, ack, "answer" if call.late_offer else None, final=True,
                           ours=self.host.local_host(call.b.peer))
            except SipError as err:
                call.log.info("SDP in ACK refused: %s", err)
                self.host.hangup(call, "a", "bad_sdp")
        call.b.last_ack = (cseq, copy_request(ack))
        self.host.send_ack(ack, call.b.peer)


def _next_hop(dialog: Dialog, current: Peer) -> Peer:
    """Where the confirmed dialog's requests go; the connection we have when it is the same place."""
    try:
        peer = dialog.next_hop()
    except SipError:
        return current
    if peer.transport != "udp" and peer.host == current.host and peer.port == current.port:
        return current
    return peer


__all__ = ["CalleeHost", "CalleeInvite"]
