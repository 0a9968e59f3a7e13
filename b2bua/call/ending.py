"""Ending an answered call after an announcement both parties hear: long-call termination, abuse termination,
an operator's hangup. Sans-I/O: the prompt plays through the call's :class:`~.media.MediaSession`, the
deadline is a call-control timer.

The BYEs (with the Reason header, RFC 3326) follow as soon as one leg's copy has played (both started on
the same tick and are as long), and at the
latest the announcement's length plus :data:`GRACE_S` after it started: an engine that cannot play it
must not keep the call up. Without audio (a missing prompt, media not anchored) the call ends at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..sip.timers import TimerHandle
from .state import LIVE

if TYPE_CHECKING:
    from .b2bua import B2BUA
    from .model import Call

RATE = 8000
#: the BYE follows the announcement at the latest this long after it should have ended
GRACE_S = 2.0


@dataclass(slots=True)
class _Ending:
    prompt: str
    cause: str
    reason: str
    timer: TimerHandle | None = None


class AnnouncedEndings:
    """The calls ending after an announcement, by call id."""

    def __init__(self, b2bua: B2BUA):
        self.b2bua = b2bua
        self._pending: dict[str, _Ending] = {}

    def ending(self, call: Call) -> bool:
        return call.id in self._pending

    def start(self, call: Call, samples: Any | None, prompt: str, cause: str, reason: str) -> None:
        """Play ``samples`` (mixed over the conversation) to both legs, then end the call with ``cause`` and
        ``reason``; at once when there is nothing to play. A call already ending keeps its first cause."""
        if call.state not in LIVE or call.id in self._pending:
            return
        ending = self._pending[call.id] = _Ending(prompt, cause, reason)
        if samples is None or call.media is None:
            self._end(call)
            return
        for leg in ("a", "b"):
            call.media.play(leg, samples, prompt=prompt, mix=True)
        ending.timer = self.b2bua.call_at(self.b2bua.clock.now + len(samples) / RATE + GRACE_S, self._end, call)

    def on_play_done(self, call: Call, leg: str, prompt: str) -> None:
        ending = self._pending.get(call.id)
        if ending is not None and prompt == ending.prompt:
            self._end(call)

    def on_end(self, call: Call) -> None:
        ending = self._pending.pop(call.id, None)
        if ending is not None and ending.timer is not None:
            ending.timer.cancel()

    def _end(self, call: Call) -> None:
        ending = self._pending.get(call.id)
        if ending is None:
            return
        if ending.timer is not None:
            ending.timer.cancel()
            ending.timer = None
        if call.state in LIVE:
            self.b2bua.end_call(call, ending.cause, ending.reason)


__all__ = ["GRACE_S", "AnnouncedEndings"]
