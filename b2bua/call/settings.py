"""Call control's settings and the B-leg -> A-leg status mapping."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sip.uas import UasPolicy
from .session import SessionTimerConfig

#: Final responses we do not forward as they are (§16.7 step 6 reasoning applies to a B2BUA
#: too: a downstream 503 must not make the carrier think *we* are down).
DEFAULT_RESPONSE_MAP: dict[int, int] = {401: 403, 407: 403, 503: 500}

ALLOW = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK", "REGISTER", "MESSAGE", "NOTIFY")


def map_status(status: int, table: dict[int, int]) -> int:
    """Map a B-leg final status to what the A leg receives (3xx become 480)."""
    if status in table:
        return table[status]
    if 300 <= status < 400:
        return 480
    return status


def _policy() -> UasPolicy:
    return UasPolicy(allow=ALLOW, supported=("100rel", "timer"))


@dataclass(slots=True)
class B2BUAConfig:
    policy: UasPolicy = field(default_factory=_policy)
    session_timer: SessionTimerConfig = field(default_factory=SessionTimerConfig)
    response_map: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_RESPONSE_MAP))
    ring_timeout: float = 180.0
    max_calls: int = 100_000
    #: latch to the source of the first RTP packet (RFC 4961 symmetric RTP)
    symmetric_rtp: bool = True
    #: end every answered call after this many seconds (0: no limit)
    max_duration: float = 0.0


__all__ = ["ALLOW", "DEFAULT_RESPONSE_MAP", "B2BUAConfig", "map_status"]
