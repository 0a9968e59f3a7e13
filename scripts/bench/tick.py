#!/usr/bin/env python3
"""Microbenchmark of the media tick: one 20 ms frame for N calls, vectorized vs per call.

Work per call, both ways: decode the caller's and the callee's G.711 frame, mix one
prompt frame into each direction at -6 dB, encode both back (the shape of the work
prompts, announcements and recording add to every call). "numpy" does it for all calls
at once with lookup tables (media/g711.py); "audioop loop" is the same work one call
at a time with the C audioop module, the obvious per-call implementation.

    python scripts/bench/tick.py            # 1, 100, 1000, 5000 calls
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from media import g711  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # noqa: E402  (removed in Python 3.13; present on 3.11)

FRAME = 160


def tick_numpy(caller: np.ndarray, callee: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """caller/callee: (N, 160) uint8 PCMU; prompt: (160,) int16. Returns both encoded directions."""
    a = g711.ULAW_DECODE[caller].astype(np.int32)
    b = g711.ULAW_DECODE[callee].astype(np.int32)
    p = (prompt.astype(np.int32) >> 1)[None, :]
    to_callee = np.clip(a + p, -32768, 32767).astype(np.int16)
    to_caller = np.clip(b + p, -32768, 32767).astype(np.int16)
    return g711.ULAW_ENCODE[to_callee.view(np.uint16)], g711.ULAW_ENCODE[to_caller.view(np.uint16)]


def tick_audioop(caller: list[bytes], callee: list[bytes], prompt: bytes) -> list[tuple[bytes, bytes]]:
    half = audioop.mul(prompt, 2, 0.5)
    out = []
    for a, b in zip(caller, callee):
        la, lb = audioop.ulaw2lin(a, 2), audioop.ulaw2lin(b, 2)
        out.append((audioop.lin2ulaw(audioop.add(la, half, 2), 2), audioop.lin2ulaw(audioop.add(lb, half, 2), 2)))
    return out


def measure(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1 if len(times) > 1 else 0] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="1,100,1000,5000")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    prompt = (8000 * np.sin(np.arange(FRAME) * 2 * np.pi * 440 / 8000)).astype(np.int16)
    rows = []
    for n in [int(x) for x in args.calls.split(",")]:
        caller = rng.integers(0, 256, (n, FRAME), dtype=np.uint8)
        callee = rng.integers(0, 256, (n, FRAME), dtype=np.uint8)
        # the two implementations must agree bit for bit before they are timed
        ref = tick_audioop([r.tobytes() for r in caller[:8]], [r.tobytes() for r in callee[:8]], prompt.tobytes())
        got = tick_numpy(caller[:8], callee[:8], prompt)
        assert all(ref[i][0] == got[0][i].tobytes() and ref[i][1] == got[1][i].tobytes() for i in range(min(n, 8)))
        np_p50, np_p99 = measure(lambda: tick_numpy(caller, callee, prompt), args.repeat)
        cl, ce, pb = [r.tobytes() for r in caller], [r.tobytes() for r in callee], prompt.tobytes()
        ao_p50, ao_p99 = measure(lambda: tick_audioop(cl, ce, pb), max(10, args.repeat // (1 + n // 500)))
        rows.append((n, np_p50, np_p99, ao_p50, ao_p99, ao_p50 / np_p50))
    print(f"{'calls':>6} {'numpy p50 ms':>13} {'numpy p99 ms':>13} {'audioop p50 ms':>15} {'audioop p99 ms':>15} {'speed-up':>9}")
    for n, a, b, c, d, e in rows:
        print(f"{n:>6} {a:>13.3f} {b:>13.3f} {c:>15.3f} {d:>15.3f} {e:>8.1f}x")
    print("(one tick = 20 ms of audio for every call; the budget is 20 ms per tick on one core)")


if __name__ == "__main__":
    main()
