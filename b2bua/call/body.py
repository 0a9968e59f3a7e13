"""Message bodies across the two legs: copied as they are, or through offer/answer (RFC 3264)
when the media is anchored, so each leg only ever sees our addresses."""

from __future__ import annotations

from ..sip.message import Request, Response
from ..sip.sdp import find_sdp
from .identity import scrub_sdp
from .model import Call

#: Headers copied with a body from one leg's request or response to the other. Everything
#: else (Via, Route, Record-Route, Contact, Call-ID, CSeq, tags) is per leg.
BODY_HEADERS = ("content-type", "content-disposition", "content-language")


def copy_body(src: Request | Response, dst: Request | Response) -> None:
    if src.body:
        for key in BODY_HEADERS:
            v = src.get(key)
            if v is not None:
                dst.add(key, v)
        dst.body = src.body


def carry_body(call: Call, from_leg: str, src: Request | Response, dst: Request | Response, role: str | None,
               *, final: bool = False, ours: str = "") -> None:
    """Copy ``src``'s body to ``dst``; with media anchored an SDP is an ``offer`` or an ``answer``
    (``role``) to :class:`~b2bua.call.media.MediaSession`, whose own SDP goes out instead (SdpError
    on a bad one). Without anchoring an SDP towards a carrier is scrubbed to ``ours`` (our host)."""
    media = call.media
    if media is None or not src.body:
        copy_body(src, dst)
        if src.body and src.content_type == "application/sdp":
            if from_leg == "a" and call.protected:
                dst.body = scrub_sdp(dst.body, ours)  # passed through: not its owner
            call.sdp_sent["b" if from_leg == "a" else "a"] = dst.body  # for session refreshes
        return
    sdp = find_sdp(src.get("content-type"), src.body)
    if sdp is None:
        if src.content_type != "application/sdp" and not (src.content_type or "").startswith("multipart/"):
            copy_body(src, dst)  # INFO dtmf-relay, MESSAGE text, ...
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


def copy_request(req: Request) -> Request:
    """A fresh copy without Via (the stack inserts a Via into what it sends)."""
    return Request(req.method, req.uri, [h for h in req.headers if h[0] != "via"], req.body)


__all__ = ["BODY_HEADERS", "carry_body", "copy_body", "copy_request"]
