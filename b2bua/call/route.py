"""Where a new call goes: the router's answer to call control (a leaf: nothing of call control imported)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..sip.events import Peer

if TYPE_CHECKING:
    from .identity import Presentation


@dataclass(slots=True)
class Route:
    """Where a new call goes: a list of targets tried in order."""

    targets: list[str]
    name: str = "default"
    #: Send to this address instead of resolving the target (a registered device's source).
    peer: Peer | None = None
    #: Digest credentials for the far end's 401/407 (username, password).
    credentials: tuple[str, str] | None = None
    #: final statuses after which the next target is tried (no provisional seen yet)
    failover: tuple[int, ...] = ()
    #: the trunk the call came in on (for per-trunk call counting)
    source: str | None = None
    #: the department a citizen's call is for (inbound) or a staff call comes from (outbound)
    department: str | None = None
    #: "inbound": a citizen calls a department (staff on leg b); "outbound": staff call out (leg a)
    direction: str = "outbound"
    #: no target: play this prompt as early media, then refuse the call with ``release_status``
    announcement: str | None = None
    release_status: int = 404
    #: move on to the next target when one has not answered after this long (seconds)
    no_answer_timeout: float | None = None
    #: the destination trunk's codec preference (offer order, only these)
    codecs: tuple[str, ...] = ()
    #: latch RTP per leg (None: the global media setting)
    symmetric_a: bool | None = None
    symmetric_b: bool | None = None
    #: SDES-SRTP per leg (MediaSession): "off", "accept", "require", or "needs_tls" (the trunk takes SRTP,
    #: but this leg's signalling is not TLS, so no key is taken or given on it)
    srtp_a: str = "off"
    srtp_b: str = "off"
    #: per target: the caller identity that leg presents (``identity.py``); None keeps From/To
    presentation: tuple[Presentation | None, ...] = ()


__all__ = ["Route"]
