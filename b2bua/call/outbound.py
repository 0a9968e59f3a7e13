"""The outbound INVITE, built from scratch (RFC 7092 §3.1, RFC 3261 §8.1.1): pure functions.

New Call-ID, tags, CSeq, Via and Contact; identities keep their user part and display name but
take our host / the target's host, so nothing of the caller's topology reaches the callee
(:class:`~b2bua.call.identity.Presentation` then rewrites them for carriers and departments).
"""

from __future__ import annotations

from ..sip.auth import answer_challenge
from ..sip.errors import SipError
from ..sip.events import Peer
from ..sip.message import Request, Response
from ..sip.uri import Address, SipUri
from .session import SessionTimerConfig, min_se, session_expires


def local_host(local: dict[str, tuple[str, int]], peer: Peer) -> str:
    """Our address towards ``peer`` (IPv6 in brackets), from the stack's listeners."""
    host = (local.get(peer.transport) or local.get("udp", ("127.0.0.1", 0)))[0]
    return f"[{host}]" if ":" in host else host


def contact(local: dict[str, tuple[str, int]], peer: Peer) -> str:
    """Our Contact towards ``peer`` (with ``;transport=`` for anything but UDP)."""
    host, port = local.get(peer.transport) or local.get("udp", ("127.0.0.1", 5060))
    if ":" in host:
        host = f"[{host}]"
    t = "" if peer.transport == "udp" else f";transport={peer.transport}"
    return f"<sip:{host}:{port}{t}>"


def rehost(uri: str, hostport: str) -> str:
    """``sip:user@anything`` -> ``sip:user@hostport``; tel: URIs are kept as they are."""
    try:
        u = SipUri.parse(uri)
    except SipError:
        return f"sip:anonymous@{hostport}"
    if u.scheme not in ("sip", "sips"):
        return uri
    user = f"{u.user}@" if u.user else ""
    return f"{u.scheme}:{user}{hostport}"


def target_uri(a_req: Request, target: str) -> SipUri:
    """The route's target, with the dialled user part of the caller's Request-URI when it has none."""
    uri = SipUri.parse(target)
    ruri = SipUri.parse(a_req.uri) if a_req.uri[:4].lower() in ("sip:", "sips") else None
    if ruri is not None and ruri.user and not uri.user:
        uri.user = ruri.user
    return uri


def build_invite(a_req: Request, target: SipUri, *, from_tag: str, call_id: str, contact: str, host: str,
                 allow: tuple[str, ...], session_timer: SessionTimerConfig) -> Request:
    """The outbound INVITE for ``a_req`` towards ``target``, without a body (§8.1.1)."""
    req = Request("INVITE", str(target))
    mf = a_req.get("max-forwards")
    req.add("max-forwards", str(max(int(mf) - 1, 0)) if mf is not None else "70")
    from_addr = a_req.from_
    req.add("from", str(Address(rehost(from_addr.uri, host), from_addr.display, {"tag": from_tag})))
    to_addr = a_req.to
    to_uri = rehost(to_addr.uri, target.host + (f":{target.port}" if target.port else ""))
    req.add("to", str(Address(to_uri, to_addr.display, {})))
    req.add("call-id", call_id)
    req.add("cseq", "1 INVITE")
    req.add("contact", contact)
    req.add("allow", ", ".join(allow))
    req.add("supported", "100rel, timer" if session_timer.enabled else "100rel")
    if session_timer.enabled:
        req.add("session-expires", str(session_timer.session_expires))
        req.add("min-se", str(session_timer.min_se))
    return req


def next_invite(old: Request, drop: tuple[str, ...]) -> Request:
    """The same INVITE again with the next CSeq (same Call-ID and tags), minus ``drop`` headers."""
    retry = Request("INVITE", old.uri, [h for h in old.headers if h[0] not in drop], old.body)
    retry.set("cseq", f"{old.cseq[0] + 1} INVITE")
    return retry


def with_larger_interval(old: Request, resp: Response, our_min_se: int) -> Request:
    """The INVITE again after a 422, asking for the far end's Min-SE (RFC 4028 §7.4)."""
    retry = next_invite(old, drop=("via",))
    wanted = max(min_se(resp), our_min_se)
    asked = session_expires(old)
    retry.set("session-expires", str(max(wanted, asked[0] if asked else 0)))
    retry.set("min-se", str(wanted))
    return retry


def with_credentials(old: Request, resp: Response, credentials: tuple[str, str]) -> Request | None:
    """The INVITE again answering a 401/407 digest challenge (§22.2), or None when it cannot be answered."""
    retry = next_invite(old, drop=("via", "authorization", "proxy-authorization"))
    answer = answer_challenge(retry, resp, *credentials)
    if answer is None:
        return None
    retry.add(answer[0], answer[1])
    return retry


__all__ = ["build_invite", "contact", "local_host", "next_invite", "rehost", "target_uri", "with_credentials",
           "with_larger_interval"]
