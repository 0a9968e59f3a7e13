"""Dialog state (RFC 3261 §12): creation, in-dialog requests, target refresh, CSeq rules."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import ParseError
from .events import Peer
from .message import Request, Response
from .uri import Address, SipUri


def uri_to_peer(uri: str) -> Peer:
    """Next-hop transport address for a SIP URI (RFC 3263 without DNS: host is used as is)."""
    u = SipUri.parse(uri)
    if u.scheme not in ("sip", "sips"):
        raise ParseError(f"cannot route to a {u.scheme} URI")
    transport = u.transport
    host = u.params.get("maddr") or u.host
    port = u.port or (5061 if transport == "tls" else 5060)
    return Peer(transport, host.strip("[]"), port)


@dataclass(slots=True)
class Dialog:
    """One side's view of a dialog (§12.1)."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    local_seq: int
    remote_seq: int | None
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_contact: str = ""
    confirmed: bool = False

    @classmethod
    def from_uac(cls, req: Request, resp: Response) -> Dialog:
        """UAC dialog from a 1xx/2xx with a To tag (§12.1.2); route set is Record-Route reversed."""
        contact = resp.contact
        target = contact.uri if contact is not None else req.uri
        return cls(
            call_id=req.call_id,
            local_tag=req.from_tag or "",
            remote_tag=resp.to_tag,
            local_uri=_without_tag(req.from_),
            remote_uri=_without_tag(req.to),
            local_seq=req.cseq[0],
            remote_seq=None,
            remote_target=target,
            route_set=list(reversed(resp.get_all("record-route"))),
            local_contact=req.get("contact") or "",
            confirmed=200 <= resp.status < 300,
        )

    @classmethod
    def from_uas(cls, req: Request, local_tag: str, local_contact: str) -> Dialog:
        """UAS dialog from the request we answer with a tag (§12.1.1)."""
        contact = req.contact
        target = contact.uri if contact is not None else ""
        return cls(
            call_id=req.call_id,
            local_tag=local_tag,
            remote_tag=req.from_tag,
            local_uri=_without_tag(req.to),
            remote_uri=_without_tag(req.from_),
            local_seq=0,
            remote_seq=req.cseq[0],
            remote_target=target,
            route_set=req.get_all("record-route"),
            local_contact=local_contact,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.local_tag)

    def _request(self, method: str, cseq: int) -> Request:
        """Build a request within the dialog (§12.2.1.1), loose and strict routing."""
        routes = list(self.route_set)
        uri = self.remote_target
        if routes and "lr" not in SipUri.parse(Address.parse(routes[0]).uri).params:
            # strict routing: first route becomes the Request-URI (§12.2.1.1)
            uri = Address.parse(routes[0]).uri
            routes = routes[1:] + [f"<{self.remote_target}>"]
        req = Request(method, uri)
        remote = self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")
        req.add("max-forwards", "70")
        req.add("from", f"{self.local_uri};tag={self.local_tag}")
        req.add("to", remote)
        req.add("call-id", self.call_id)
        req.add("cseq", f"{cseq} {method}")
        for r in routes:
            req.add("route", r)
        return req

    def create_request(self, method: str) -> Request:
        """A new in-dialog request with the next local CSeq (§12.2.1.1). Not for ACK/CANCEL."""
        self.local_seq += 1
        req = self._request(method, self.local_seq)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER") and self.local_contact:
            req.add("contact", self.local_contact)
        return req

    def create_ack(self, cseq: int) -> Request:
        """ACK for a 2xx to the INVITE with sequence number ``cseq`` (§13.2.2.4)."""
        return self._request("ACK", cseq)

    def next_hop(self) -> Peer:
        """Where in-dialog requests go: the first route, else the remote target (§8.1.2)."""
        uri = Address.parse(self.route_set[0]).uri if self.route_set else self.remote_target
        return uri_to_peer(uri)

    def check_request(self, req: Request) -> int | None:
        """Apply §12.2.2 to an in-dialog request: a lower CSeq gets 500. Returns a status or None."""
        num = req.cseq[0]
        if req.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and num <= self.remote_seq:
                return 500
            self.remote_seq = num
        if req.method in ("INVITE", "UPDATE"):
            self.refresh_target(req)
        return None

    def refresh_target(self, msg: Request | Response) -> None:
        """Target refresh from a Contact (§12.2.2, §12.2.1.2)."""
        contact = msg.contact
        if contact is not None:
            self.remote_target = contact.uri


def _without_tag(addr: Address) -> str:
    """A From/To value without its ``tag`` parameter, everything else kept (the message's parsed address,
    left as it is)."""
    if "tag" not in addr.params:
        return str(addr)
    return str(replace(addr, params={k: v for k, v in addr.params.items() if k != "tag"}))
