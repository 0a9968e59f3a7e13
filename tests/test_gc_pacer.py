"""The cyclic GC's pacing (b2bua/gc_pacer.py): young passes on every tick, a full pass only when the heap grew."""

from __future__ import annotations

import gc
import logging
import sys

import pytest

from b2bua.gc_pacer import GcPacer


class FakeHeap:
    def __init__(self, size: int):
        self.size = size
        self.passes: list[int] = []
        self.freed_by_full = 0  # blocks a full pass gives back
        self.clock = 0.0  # what a full pass takes on a fake clock: 0.3 s

    def blocks(self) -> int:
        return self.size

    def collect(self, generation: int = 2) -> int:
        self.passes.append(generation)
        if generation == 2:
            self.clock += 0.3
            self.size -= self.freed_by_full
            return self.freed_by_full
        return 0


@pytest.fixture
def heap() -> FakeHeap:
    return FakeHeap(1_000_000)


def _pacer(heap: FakeHeap) -> GcPacer:
    pacer = GcPacer(blocks=heap.blocks, collect=heap.collect, perf_counter=lambda: heap.clock)
    pacer.start(0.0)
    return pacer


def test_a_steady_heap_gets_young_passes_only_however_long_it_runs(heap: FakeHeap) -> None:
    try:
        pacer = _pacer(heap)
        assert not gc.isenabled() and heap.passes == [2]  # one collection at start, then the pacer's
        heap.passes.clear()
        now = 0.0
        for _ in range(36_000):  # an hour of ticks on a fake clock
            now += pacer.young_every
            heap.size += 7 if int(now) % 2 else -7  # calls come and go
            assert not pacer.tick(now)
        assert heap.passes == [0] * 36_000 and pacer.full_passes == 0
    finally:
        pacer.stop()
    assert gc.isenabled()


def test_a_growing_heap_gets_a_full_pass_at_the_next_check_then_a_new_baseline(heap: FakeHeap, caplog) -> None:
    caplog.set_level(logging.INFO, logger="b2bua.gc")
    try:
        pacer = _pacer(heap)
        heap.freed_by_full = 300_000  # a cyclic leak, given back by the full pass
        heap.size = 1_499_999
        assert not pacer.tick(pacer.check_every)  # below 1.5 x the baseline
        heap.size = 1_500_000
        assert not pacer.tick(pacer.check_every + 5)  # grown, but not time to look yet
        assert pacer.tick(2 * pacer.check_every)
        assert heap.passes[-2:] == [0, 2] and pacer.full_passes == 1
        assert pacer.last_pause == pytest.approx(0.3)  # what the overload guard excuses
        assert pacer.baseline == 1_200_000  # what was left
        assert "the heap grew from 1000000 to 1500000 blocks; 300000 unreachable objects" in caplog.text
        heap.size = 1_700_000  # under 1.5 x the new baseline
        assert not pacer.tick(3 * pacer.check_every)
        heap.size = 1_800_000
        assert pacer.tick(4 * pacer.check_every) and pacer.full_passes == 2
    finally:
        pacer.stop()


def test_passes_that_find_live_data_wait_for_more_growth_and_one_that_frees_garbage_sets_it_back(
        heap: FakeHeap) -> None:
    """A warming-up process grows with live calls and transactions, not garbage: each fruitless pass raises
    the growth the next one waits for (1.5x, 2.25x, 3.375x, then the 4x cap); a pass that frees a tenth sets it back."""
    try:
        pacer = _pacer(heap)
        heap.size = 1_500_000
        assert pacer.tick(pacer.check_every) and pacer.baseline == 1_500_000
        assert pacer.waiting_for == pytest.approx(2.25)
        heap.size = 3_374_999  # 2.25 x 1.5 M not reached: the pass at 1.5x would have run
        assert not pacer.tick(2 * pacer.check_every)
        heap.size = 3_375_000
        assert pacer.tick(3 * pacer.check_every) and pacer.waiting_for == pytest.approx(3.375)
        heap.size = round(3_375_000 * 3.375)
        assert pacer.tick(4 * pacer.check_every) and pacer.waiting_for == 4.0  # capped
        base = pacer.baseline
        heap.size = 4 * base - 1
        assert not pacer.tick(5 * pacer.check_every)
        heap.freed_by_full = 4 * base // 10  # a leak through cycles: a tenth of the heap given back
        heap.size = 4 * base
        assert pacer.tick(6 * pacer.check_every) and pacer.waiting_for == 1.5
        assert pacer.full_passes == 4
    finally:
        pacer.stop()


def test_real_cycles_left_behind_are_freed_by_the_full_pass() -> None:
    """With the interpreter's own heap: cycles that outlive the young pass (promoted, so only a full pass
    finds them) make the heap grow, and the next check frees them."""

    class Node:
        def __init__(self) -> None:
            self.me = self

    pacer = GcPacer()
    try:
        pacer.start(0.0)
        nodes = [Node() for _ in range(max(200_000, pacer.baseline))]
        pacer.tick(0.1)  # the young pass promotes them: alive still
        del nodes  # now garbage, but in cycles: refcounting cannot free them
        grown = sys.getallocatedblocks()
        assert grown >= pacer.baseline * pacer.growth
        assert pacer.tick(pacer.check_every)
        assert pacer.full_passes == 1 and pacer.baseline < grown - 200_000  # given back
        assert not any(isinstance(o, Node) for o in gc.get_objects())
    finally:
        pacer.stop()
