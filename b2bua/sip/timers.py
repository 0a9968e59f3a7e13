"""A deadline queue driven by an explicit ``now`` (no clock, no I/O).

The asyncio layer asks :meth:`TimerQueue.next_deadline`, sleeps until then
and calls :meth:`TimerQueue.run_due`; tests call ``run_due`` with a fake clock.
"""

from __future__ import annotations

import heapq
import itertools
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
    """A scheduled callback; :meth:`cancel` makes it a no-op. (Its deadline is in the queue's heap entry.)"""

    __slots__ = ("callback", "args", "cancelled", "queue")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...], queue: TimerQueue | None = None):
        self.callback = callback
        self.args = args
        self.cancelled = False
        #: the queue whose heap still holds this handle (told when it is cancelled there)
        self.queue = queue

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _noop
        self.args = ()
        queue, self.queue = self.queue, None
        if queue is not None:
            queue._cancelled_in_heap()


def _noop(*_: Any) -> None:
    return None


#: a heap this large whose entries are mostly cancelled is rebuilt without them
COMPACT_MIN = 256


class TimerQueue:
    """Min-heap of :class:`TimerHandle` with lazy cancellation, compacted when most of it is cancelled.

    Cancelling is O(1) (the handle stays in the heap as a no-op until its deadline), but a timer that is
    cancelled long before it is due (a session refresh 15-30 min ahead, a call that ended after seconds)
    would hold its slot until then: at 150 calls/s that is a heap of hundreds of thousands of dead
    handles. As asyncio does, once more than half of the heap is cancelled it is rebuilt without them.

    The heap holds ``(when, order, handle)`` entries, so ``heapq`` compares them in C (a float, then a
    counter that keeps timers due at the same time in the order they were set), not through a Python
    ``__lt__`` some 15 times per push and pop.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._cancelled = 0  # cancelled handles still in the heap
        self._order = itertools.count()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(callback, args, self)
        heapq.heappush(self._heap, (when, next(self._order), handle))
        return handle

    def _cancelled_in_heap(self) -> None:
        self._cancelled += 1
        if self._cancelled > COMPACT_MIN and 2 * self._cancelled > len(self._heap):
            self._heap = [e for e in self._heap if not e[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Run every callback whose deadline is ``<= now``; return how many ran."""
        heap = self._heap
        ran = 0
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if handle.cancelled:
                self._cancelled -= 1
                continue
            callback, args = handle.callback, handle.args
            handle.queue = None  # out of the heap: not one of its cancelled entries
            handle.cancel()  # drop the references: handle <-> owner would be a GC cycle
            callback(*args)
            ran += 1
            heap = self._heap  # (a callback's cancel may have compacted the heap into a new list)
        return ran

    @property
    def heap_size(self) -> int:
        """Entries in the heap, cancelled ones included (what the compaction bounds)."""
        return len(self._heap)

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled
