"""The process's one clock (monotonic seconds), passed to every sans-I/O component.

Only its owner moves it: the asyncio driver (:class:`~b2bua.transport.server.SipServer`, from the
event loop's time) in the running process, a test's harness (a fake clock) in the tests. Everything
else (call control, staff protection, gateway health, the application's wiring) only reads
:attr:`Clock.now`, and hands that ``now`` to the SIP stack with every input, the way aioquic's
``QuicConnection.receive_datagram(data, addr, now)`` is driven. (The stack keeps the time of its
latest input in a private :class:`Clock` of its own, which only its inputs move.)
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

log = logging.getLogger("b2bua.clock")


class Clock:
    """Monotonic seconds that never go back."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    @property
    def now(self) -> float:
        return self._now

    def advance(self, to: float) -> float:
        """Move to ``to`` (an earlier time is ignored: the clock never goes back); return :attr:`now`."""
        if to > self._now:
            self._now = to
        return self._now

    def __repr__(self) -> str:
        return f"Clock(now={self._now:.6f})"


def wall_clock() -> datetime:
    """Now, or the frozen time in ``B2BUA_FAKE_NOW`` (ISO 8601 with a zone) for lab tests of schedules."""
    fake = os.environ.get("B2BUA_FAKE_NOW")
    if fake:
        try:
            when = datetime.fromisoformat(fake)
            if when.tzinfo is not None:
                return when
        except ValueError:
            pass
        log.warning("B2BUA_FAKE_NOW=%r is not an ISO 8601 time with a zone; using the real clock", fake)
    return datetime.now(UTC)


__all__ = ["Clock", "wall_clock"]
