"""Per-leg session timers (RFC 4028) and reliable provisional responses (RFC 3262).

Both are kept per leg: each side of the B2BUA negotiates its own interval and
refresher, and its own 100rel use. This module holds the state and the header
arithmetic; :mod:`b2bua.call.b2bua` arms the timers and sends the requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sip.grammar import parse_params
from ..sip.message import Message, Request, Response, token_list
from ..sip.timers import TimerHandle

#: RFC 4028 §4: the smallest Session-Expires anyone may ask for.
ABSOLUTE_MIN_SE = 90


@dataclass(slots=True)
class SessionTimerConfig:
    enabled: bool = True
    #: the interval we ask for on the outbound leg and grant on the inbound leg, seconds
    session_expires: int = 1800
    #: the smallest interval we accept (422 below it)
    min_se: int = ABSOLUTE_MIN_SE


def session_expires(msg: Message) -> tuple[int, str | None] | None:
    """``Session-Expires: 1800;refresher=uac`` -> (1800, "uac"); None when absent or malformed."""
    value = msg.get("session-expires")
    if not value:
        return None
    number, _, params = value.partition(";")
    number = number.strip()
    if not number.isdigit():
        return None
    try:
        refresher = parse_params(";" + params).get("refresher") if params else None
    except Exception:
        refresher = None
    return int(number), (refresher.lower() if refresher else None)


def min_se(msg: Message) -> int:
    value = (msg.get("min-se") or "").split(";", 1)[0].strip()
    return int(value) if value.isdigit() else ABSOLUTE_MIN_SE


def supports(msg: Message, option: str) -> bool:
    return option in token_list(msg, "supported") or option in token_list(msg, "require")


@dataclass(slots=True)
class LegTimer:
    """The session timer of one leg: who refreshes, how often, and the armed timer."""

    interval: int
    we_refresh: bool
    #: the peer understands the timer extension (Require: timer may be sent)
    peer_supports: bool = True
    handle: TimerHandle | None = None
    refreshes: int = 0

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    @property
    def refresh_after(self) -> float:
        """When the refresher sends its refresh: half the interval (§7.2, §9)."""
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        """When the other side gives up: the interval minus min(32 s, a third) (§10)."""
        return self.interval - min(32.0, self.interval / 3)

    def header(self, we_are_uac: bool) -> str:
        """The Session-Expires value for a request or response of ours on this leg.

        ``refresher`` names a role in *that transaction* (RFC 4028 §4), so it depends
        on whether we are its UAC.
        """
        role = "uac" if self.we_refresh == we_are_uac else "uas"
        return f"{self.interval};refresher={role}"


@dataclass(slots=True)
class ReliableProvisional:
    """Our side of RFC 3262 on the inbound leg: RSeq numbering and retransmission."""

    rseq: int = 1
    #: the unacknowledged reliable provisional (RSeq, bytes-to-resend source response)
    pending: tuple[int, Response] | None = None
    interval: float = 0.0
    handle: TimerHandle | None = None
    #: provisionals that must wait until the pending one is PRACKed (§3)
    queue: list[Response] = field(default_factory=list)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.pending = None
        self.queue.clear()


def rack(req: Request) -> tuple[int, int, str] | None:
    """``RAck: 1 314159 INVITE`` -> (1, 314159, "INVITE")."""
    parts = (req.get("rack") or "").split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2].upper()


def rseq(resp: Response) -> int | None:
    value = (resp.get("rseq") or "").strip()
    return int(value) if value.isdigit() else None
