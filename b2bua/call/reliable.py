"""Reliable provisional responses (RFC 3262), driven through :class:`~b2bua.call.host.CallHost`.

Towards the caller (when it supports 100rel) our 18x are reliable: one unacknowledged at a time
(§3), retransmitted from T1 doubling to T2 until PRACKed, the INVITE refused with 504 when 64*T1
passes without a PRACK. Towards the callee we PRACK every reliable provisional once (§4).
"""

from __future__ import annotations

from ..sip.message import Request, Response
from ..sip.stack import make_response
from ..sip.transaction import ServerTransaction
from .host import CallHost
from .model import Call, Leg
from .session import rack
from .state import RINGING
from .users import Prack


class ReliableProvisionals:
    def __init__(self, host: CallHost):
        self.host = host

    def send(self, call: Call, resp: Response) -> None:
        """A provisional to the caller: reliable when it supports 100rel, queued behind an unPRACKed one."""
        rel = call.a.reliable
        if rel is None or resp.status == 100:
            self.host.respond(call.a_invite, resp)
            return
        if rel.pending is not None:
            rel.queue.append(resp)  # one unacknowledged reliable provisional at a time (§3)
            return
        resp.set("require", "100rel")
        resp.set("rseq", str(rel.rseq))
        rel.pending = (rel.rseq, resp)
        rel.rseq += 1
        timers = self.host.sip_timers
        rel.interval = timers.t1
        self.host.respond(call.a_invite, resp)
        now = self.host.clock.now
        rel.handle = self.host.call_at(now + rel.interval, self._resend, call, now + timers.b)

    def _resend(self, call: Call, give_up_at: float) -> None:
        rel = call.a.reliable
        if rel is None or rel.pending is None or call.state not in RINGING:
            return
        now = self.host.clock.now
        if now >= give_up_at:
            self.host.abandon(call, 504, "prack_timeout", "a")  # never PRACKed: reject the INVITE (§3)
            return
        self.host.send_stateless(rel.pending[1].serialize(), call.a_invite.peer)
        rel.interval = min(rel.interval * 2, self.host.sip_timers.t2)
        rel.handle = self.host.call_at(min(now + rel.interval, give_up_at), self._resend, call, give_up_at)

    def on_prack(self, call: Call, leg: Leg, req: Request, txn: ServerTransaction) -> None:
        """The caller's PRACK (§4): 200 when it matches the pending provisional, else 481."""
        rel = leg.reliable
        got = rack(req)
        tag = leg.dialog.local_tag if leg.dialog else None
        if leg is not call.a or rel is None or rel.pending is None or got is None \
                or got != (rel.pending[0], call.a_invite.request.cseq[0], "INVITE"):
            self.host.respond(txn, make_response(req, 481, to_tag=tag))  # §4: no matching provisional
            return
        if rel.handle is not None:
            rel.handle.cancel()
            rel.handle = None
        rel.pending = None
        self.host.respond(txn, make_response(req, 200, to_tag=tag))
        if rel.queue and call.state in RINGING:
            self.send(call, rel.queue.pop(0))

    def prack(self, call: Call, r: int, cseq: int) -> None:
        """PRACK the callee's reliable provisional in its early dialog (§4)."""
        dialog = call.b.dialog
        if dialog is None:
            return
        req = dialog.create_request("PRACK")
        req.add("rack", f"{r} {cseq} INVITE")
        self.host.send_request(req, call.b.peer, Prack(call))


__all__ = ["ReliableProvisionals"]
