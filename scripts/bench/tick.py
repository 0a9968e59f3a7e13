#!/usr/bin/env python3
"""Microbenchmark of the media tick: one 20 ms frame for N calls, vectorized vs per call.

Work per call, both ways: decode the caller's and the callee's G.711 frame, mix one
prompt frame into each direction at -6 dB, encode both back (the shape of the work
prompts and announcements add to every call). Three implementations, checked to give
identical bytes before they are timed:

* "fused LUT": decode+mix+encode as one 64 Ki-entry table lookup per direction for all
  calls at once (``g711.mix_codes``),
* "numpy linear": the same as arrays in the linear domain (decode, add, clip, encode),
  what recording and level metering use,
* "audioop loop": one call at a time with the C audioop module, the obvious per-call code.

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


def tick_linear(caller: np.ndarray, callee: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """caller/callee: (N, 160) uint8 PCMU; prompt: (160,) int16. Decode, mix, encode as arrays."""
    p = (prompt.astype(np.int32) >> 1)[None, :]
    out = []
    for codes in (caller, callee):
        mixed = np.add(g711.decode(codes, 0), p, dtype=np.int32)
        np.clip(mixed, -32768, 32767, out=mixed)
        out.append(g711.encode(mixed.astype(np.int16), 0))
    return out[0], out[1]


def tick_fused(caller: np.ndarray, callee: np.ndarray, prompt_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same work as one 64 Ki-entry table lookup per direction (g711.mix_table)."""
    return g711.mix_codes(caller, prompt_codes, 0), g711.mix_codes(callee, prompt_codes, 0)


def tick_audioop(caller: list[bytes], callee: list[bytes], prompt: bytes) -> list[tuple[bytes, bytes]]:
    half = audioop.mul(prompt, 2, 0.5)
    out = []
    for a, b in zip(caller, callee, strict=True):
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
    # the prompt as it is stored: G.711 frames (so the linear path decodes it too)
    prompt_codes = g711.encode((8000 * np.sin(np.arange(FRAME) * 2 * np.pi * 440 / 8000)).astype(np.int16), 0)
    prompt = g711.decode(prompt_codes, 0)
    rows = []
    for n in [int(x) for x in args.calls.split(",")]:
        caller = rng.integers(0, 256, (n, FRAME), dtype=np.uint8)
        callee = rng.integers(0, 256, (n, FRAME), dtype=np.uint8)
        # all implementations must agree bit for bit before they are timed
        ref = tick_audioop([r.tobytes() for r in caller[:8]], [r.tobytes() for r in callee[:8]], prompt.tobytes())
        lin = tick_linear(caller[:8], callee[:8], prompt)
        fused = tick_fused(caller[:8], callee[:8], prompt_codes)
        for i in range(min(n, 8)):
            assert ref[i][0] == lin[0][i].tobytes() == fused[0][i].tobytes()
            assert ref[i][1] == lin[1][i].tobytes() == fused[1][i].tobytes()
        fu = measure(lambda caller=caller, callee=callee: tick_fused(caller, callee, prompt_codes), args.repeat)
        li = measure(lambda caller=caller, callee=callee: tick_linear(caller, callee, prompt), args.repeat)
        cl, ce, pb = [r.tobytes() for r in caller], [r.tobytes() for r in callee], prompt.tobytes()
        ao = measure(lambda cl=cl, ce=ce, pb=pb: tick_audioop(cl, ce, pb), max(10, args.repeat // (1 + n // 500)))
        rows.append((n, fu, li, ao))
    print(f"{'calls':>6} {'fused LUT p50/p99 ms':>21} {'numpy linear p50/p99 ms':>24} "
          f"{'audioop loop p50/p99 ms':>24} {'fused vs loop':>14}")
    for n, fu, li, ao in rows:
        print(f"{n:>6} {fu[0]:>10.3f}/{fu[1]:<10.3f} {li[0]:>11.3f}/{li[1]:<12.3f} {ao[0]:>11.3f}/{ao[1]:<12.3f} "
              f"{ao[0] / fu[0]:>12.1f}x")
    print("(one tick = 20 ms of audio for every call; the budget is 20 ms per tick on one core)")


if __name__ == "__main__":
    main()
