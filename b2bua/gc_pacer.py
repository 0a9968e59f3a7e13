"""When the cyclic garbage collector runs: paced by the process, not by allocation counts.

Call state has no reference cycles, so reference counting frees it; the cyclic GC is a safety net.
Left automatic, it scanned every live transaction and stalled signalling for 200-400 ms every ~6 s at
400 calls/s (``scripts/bench/cps.py``). So automatic collection is off, and:

- the youngest generation (what was allocated since the last pass, where short-lived cycles such as a
  caught exception's traceback live) is collected every :attr:`GcPacer.young_every` seconds;
- a full pass runs only when the heap has grown by :attr:`GcPacer.growth` since the last one (Python's
  count of allocated memory blocks, checked every :attr:`GcPacer.check_every` seconds). A full pass
  scans everything alive: at 150 calls/s with 15,000 transactions in their wait states it stopped the
  loop for 556 ms, and when it ran on a clock (every 10 minutes) the calls arriving meanwhile were
  refused 503 by the overload guard (``scripts/bench/soak.py``: 6 of 90,000). A process whose heap is
  steady has nothing a full pass would free, and one that leaks through cycles grows until a pass
  frees it; a few passes run while a busy process warms up, none once it is steady. The pause of
  each (:attr:`GcPacer.last_pause`) is excused by the overload guard: lateness, not overload.
- a pass that gives back little (under :attr:`GcPacer.fruitful` of the heap: the growth was live data,
  calls and transactions, not garbage) raises the growth the next one waits for, by the same factor, up
  to :attr:`GcPacer.max_growth`; a pass that gives back more sets it back. A warming-up process at
  300 calls/s (1 -> 2 million blocks) paid two or three passes of 100-340 ms each; now one or two.

Sans-I/O: :meth:`GcPacer.tick` takes the time; the application's task only sleeps and calls it.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("b2bua.gc")


@dataclass
class GcPacer:
    young_every: float = 0.1
    growth: float = 1.5
    max_growth: float = 4.0
    #: a full pass that gives back at least this share of the heap found garbage, not live data
    fruitful: float = 0.1
    check_every: float = 10.0
    #: the heap's size: memory blocks the interpreter has allocated (cheap to read)
    blocks: Callable[[], int] = sys.getallocatedblocks
    collect: Callable[[int], int] = gc.collect
    #: what the pause of a full pass is measured with (seconds)
    perf_counter: Callable[[], float] = time.perf_counter
    #: full passes so far, and the heap size after the last one
    full_passes: int = 0
    baseline: int = 0
    #: how long the last full pass held the loop, seconds
    last_pause: float = 0.0
    #: the growth the next full pass waits for
    waiting_for: float = 0.0
    _next_check: float = field(default=0.0, repr=False)

    def start(self, now: float) -> None:
        """Collect once, freeze what start-up made (never scanned again) and take over from the automatic GC."""
        self.collect(2)
        gc.freeze()
        gc.disable()
        self.baseline = self.blocks()
        self.waiting_for = self.growth
        self._next_check = now + self.check_every

    def stop(self) -> None:
        gc.unfreeze()
        gc.enable()

    def tick(self, now: float) -> bool:
        """Called every :attr:`young_every` seconds: the young pass, and a full one when the heap has grown
        enough. True when a full pass ran."""
        self.collect(0)
        if now < self._next_check:
            return False
        self._next_check = now + self.check_every
        size = self.blocks()
        if size < self.baseline * self.waiting_for:
            return False
        start = self.perf_counter()
        found = self.collect(2)
        self.last_pause = self.perf_counter() - start
        took = self.last_pause * 1000
        before, self.baseline = self.baseline, self.blocks()
        self.full_passes += 1
        if size - self.baseline < self.fruitful * size:  # live data grew, not garbage: wait longer next time
            self.waiting_for = min(self.waiting_for * self.growth, self.max_growth)
        else:
            self.waiting_for = self.growth
        log.log(logging.WARNING if took >= 100 else logging.INFO,
                "full GC: the heap grew from %d to %d blocks; %d unreachable objects, %.0f ms, %d blocks left; "
                "the next pass at %.2fx", before, size, found, took, self.baseline, self.waiting_for)
        return True
