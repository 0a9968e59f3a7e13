"""A deadline queue driven by an explicit ``now`` (no clock, no I/O).

The asyncio layer asks :meth:`TimerQueue.next_deadline`, sleeps until then
and calls :meth:`TimerQueue.run_due`; tests call ``run_due`` with a fake clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4 base values, in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        """Timers B, F, H, J, L, M: 64*T1."""
        return 64 * self.t1


class TimerHandle:
    """A scheduled callback; :meth:`cancel` makes it a no-op."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _noop
        self.args = ()

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when


def _noop(*_: Any) -> None:
    return None


class TimerQueue:
    """Min-heap of :class:`TimerHandle` with lazy cancellation."""

    def __init__(self) -> None:
        self._heap: list[TimerHandle] = []

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(when, callback, args)
        heapq.heappush(self._heap, handle)
        return handle

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].when if heap else None

    def run_due(self, now: float) -> int:
        """Run every callback whose deadline is ``<= now``; return how many ran."""
        heap = self._heap
        ran = 0
        while heap and heap[0].when <= now:
            handle = heapq.heappop(heap)
            if not handle.cancelled:
                callback, args = handle.callback, handle.args
                handle.cancel()  # drop the references: handle <-> owner would be a GC cycle
                callback(*args)
                ran += 1
        return ran

    def __len__(self) -> int:
        return sum(1 for h in self._heap if not h.cancelled)
