"""UAS request checks every request passes before the core acts on it (RFC 3261 §8.2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .message import Request, Response, token_list
from .stack import make_response

#: Methods this element understands; anything else gets 501 (§8.2.1).
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
    "MESSAGE", "NOTIFY", "SUBSCRIBE", "REFER", "PUBLISH",
})


@dataclass(slots=True)
class UasPolicy:
    """What we accept; used for Allow, Supported and Accept in answers."""

    allow: tuple[str, ...] = (
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REGISTER", "MESSAGE", "NOTIFY",
    )
    supported: tuple[str, ...] = ()
    accept: tuple[str, ...] = ("application/sdp",)
    body_types: frozenset[str] = field(default_factory=lambda: frozenset({
        "application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain",
        "message/sipfrag", "application/json",
    }))

    def add_capabilities(self, resp: Response) -> Response:
        resp.add("allow", ", ".join(self.allow))
        resp.add("accept", ", ".join(self.accept))
        if self.supported:
            resp.add("supported", ", ".join(self.supported))
        return resp


def check_request(req: Request, policy: UasPolicy, *, routed: bool, to_tag: str) -> Response | None:
    """§8.2.1–§8.2.3 and §16.3 step 3 checks; an error response or None when all pass.

    ``routed`` says the request will be forwarded on (so Max-Forwards 0 means 483).
    """
    method = req.method
    if method not in policy.allow:
        status = 405 if method in KNOWN_METHODS else 501
        return policy.add_capabilities(make_response(req, status, to_tag=to_tag))
    scheme = req.uri.split(":", 1)[0].lower()
    if scheme not in ("sip", "sips", "tel"):
        return make_response(req, 416, to_tag=to_tag)
    required = [o for o in token_list(req, "require") + token_list(req, "proxy-require") if o not in policy.supported]
    if required and method not in ("ACK", "CANCEL"):
        resp = make_response(req, 420, to_tag=to_tag)
        resp.add("unsupported", ", ".join(dict.fromkeys(required)))
        return resp
    mf = req.get("max-forwards")
    if routed and mf is not None and int(mf) == 0:
        return make_response(req, 483, to_tag=to_tag)
    if req.body:
        ctype = req.content_type
        encoding = (req.get("content-encoding") or "identity").strip().lower()
        if ctype is None or ctype not in policy.body_types or encoding not in ("identity", "gzip"):
            if ctype and ctype.startswith("multipart/") and b"application/sdp" in req.body:
                pass  # the SDP part is found by the session layer
            else:
                resp = make_response(req, 415, to_tag=to_tag)
                resp.add("accept", ", ".join(policy.accept))
                return resp
    if method == "INVITE" or method == "OPTIONS":
        accepts = [a.split(";", 1)[0].strip().lower() for a in req.get_all("accept")]
        if accepts and not any(a in ("application/sdp", "application/*", "*/*") for a in accepts):
            return make_response(req, 406, to_tag=to_tag)
    return None


def options_response(req: Request, policy: UasPolicy, to_tag: str) -> Response:
    """200 to OPTIONS with Allow/Accept/Supported (§11.2), the carrier's keep-alive ping."""
    return policy.add_capabilities(make_response(req, 200, to_tag=to_tag))
