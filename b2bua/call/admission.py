"""Whether a new INVITE may become a call, before it is routed: a pure function."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..sip.message import Request, Response
from ..sip.stack import make_response, with_tag
from ..sip.uas import check_request
from .session import session_expires
from .settings import B2BUAConfig

#: seconds a caller refused for overload is asked to wait (Retry-After, RFC 3261 §20.33)
RETRY_AFTER_S = 5


def refusal(req: Request, a_tag: str, config: B2BUAConfig, *, busy: bool, stats: Counter[str],
            authorize: Callable[[Request], Response | None] | None) -> Response | None:
    """The response refusing a new INVITE, or None to go on: the UAS checks (§8.2: 400, 416, 420,
    483, ...), overload or the call limit (503 + Retry-After), digest auth of staff devices (407,
    §22.3), a Session-Expires below our Min-SE (422, RFC 4028 §9)."""
    err = check_request(req, config.policy, routed=True, to_tag=a_tag)
    if err is not None:
        return err
    if busy:
        stats["overload_rejects"] += 1
        return unavailable(req, a_tag)
    if authorize is not None:
        challenge = authorize(req)
        if challenge is not None:
            tag_to(challenge, a_tag)
            return challenge
    st = config.session_timer
    se = session_expires(req)
    if st.enabled and se is not None and se[0] < st.min_se:
        resp = make_response(req, 422, to_tag=a_tag)
        resp.add("min-se", str(st.min_se))
        return resp
    return None


def unavailable(req: Request, to_tag: str) -> Response:
    """503 with Retry-After (RFC 3261 §21.5.4): overloaded, at the call limit, or draining."""
    resp = make_response(req, 503, to_tag=to_tag)
    resp.add("retry-after", str(RETRY_AFTER_S))
    return resp


def tag_to(resp: Response, tag: str) -> None:
    """Give a response built elsewhere (a router's refusal, a challenge) our To tag."""
    to = resp.get("to")
    if to is not None and (tagged := with_tag(to, tag)) != to:
        resp.set("to", tagged)  # (set also drops the parsed To a reader may have cached)


__all__ = ["RETRY_AFTER_S", "refusal", "tag_to", "unavailable"]
