"""The sans-I/O timer queue (b2bua/sip/timers.py): order, cancellation, and a heap that does not keep what
was cancelled long before it was due (a soak's session-refresh timers), on a fake clock."""

from __future__ import annotations

import random

from b2bua.sip.timers import COMPACT_MIN, TimerQueue


def test_callbacks_run_in_deadline_order_and_cancelled_ones_never() -> None:
    q = TimerQueue()
    ran: list[int] = []
    handles = [q.call_at(t, ran.append, t) for t in (5, 1, 4, 2, 3)]
    handles[2].cancel()  # t=4
    handles[2].cancel()  # twice is once
    assert len(q) == 4 and q.next_deadline() == 1
    assert q.run_due(3) == 3 and ran == [1, 2, 3]
    assert q.run_due(10) == 1 and ran == [1, 2, 3, 5]
    assert len(q) == 0 and q.next_deadline() is None
    handles[0].cancel()  # after it ran: nothing changes
    assert len(q) == 0 and q.heap_size == 0


def test_timers_cancelled_long_before_their_deadline_do_not_pile_up() -> None:
    """Calls of a few seconds each arm a session refresh 30 min ahead and cancel it when they end: the
    heap must stay near the number of live timers, not grow with every call ever made."""
    q = TimerQueue()
    live = []
    for call in range(20_000):
        now = call * 0.01
        live.append(q.call_at(now + 1800, lambda: None))
        if len(live) > 50:  # 50 calls in progress; the oldest ends
            live.pop(0).cancel()
        q.run_due(now)
    assert len(q) == 50
    assert q.heap_size <= 2 * COMPACT_MIN + 2 * 50


def test_a_random_mix_matches_a_plain_model() -> None:
    rng = random.Random(4)
    q = TimerQueue()
    model: dict[int, float] = {}
    handles = {}
    ran: list[int] = []
    now = 0.0
    for i in range(30_000):
        op = rng.random()
        if op < 0.5:
            when = now + rng.uniform(0, 100)
            handles[i] = q.call_at(when, ran.append, i)
            model[i] = when
        elif op < 0.85 and model:
            victim = rng.choice(list(model))
            handles.pop(victim).cancel()
            del model[victim]
        else:
            now += rng.uniform(0, 5)
            expected = sorted((w, k) for k, w in model.items() if w <= now)
            del ran[:]
            q.run_due(now)
            assert ran == [k for _, k in expected]
            for k in ran:
                del model[k]
                handles.pop(k)
        assert len(q) == len(model)
    assert q.next_deadline() == (min(model.values()) if model else None)
