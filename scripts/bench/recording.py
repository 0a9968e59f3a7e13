#!/usr/bin/env python3
"""Recording cost without the network: N recorded calls in one engine, driven in real time.

Every 20 ms the script places one G.711 frame per direction of every call on its recording track (what
``_on_rtp`` does for a recorded call's packets), while the engine's own tick gathers the frames and its
writer thread writes real files to a temporary directory. No sockets are read or written, so what is
measured is what recording adds to a call and nothing else: the process CPU with recording on, minus
the same loop with recording off (the engine's tick still running), per call and as a share of a core,
the writer thread's share of it, and the bytes written per call and minute.

    python scripts/bench/recording.py --calls 250,500 --seconds 10 --repeat 2

``media.py --record`` measures the same end to end, relay included, where the shared machine's noise is
several points of a core from one run to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from media.engine import EngineConfig, MediaEngine  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_cpu(native_id: int) -> float:
    """CPU seconds of one thread of this process (another thread's, so not ``time.thread_time``)."""
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


async def run(calls: int, seconds: float, record: bool, port: int) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="recbench-")
    engine = MediaEngine(EngineConfig(port_min=port, port_max=port + 4 * calls + 10))
    engine.start(asyncio.get_running_loop())
    sessions = []
    began = time.monotonic()
    for i in range(calls):
        sid = f"c{i}"
        engine.allocate(sid, "a")
        engine.allocate(sid, "b")
        engine.update(sid, "a", remote=("127.0.0.1", 9), codec=0, dtmf_pt=101)
        engine.update(sid, "b", remote=("127.0.0.1", 9), codec=0, dtmf_pt=101)
        if record:
            engine.record(sid, f"{directory}/{sid}.wav")
        sessions.append(engine.sessions[sid])
    payload = np.random.default_rng(1).integers(0, 255, 160, dtype=np.uint8).tobytes()
    engine._ensure_tick()  # the tick runs in both cases (in a real call: in-band DTMF, prompts)
    await asyncio.sleep(0.5)
    writer = engine._writer
    writer_tid = writer._thread.native_id if writer is not None else None
    w0 = thread_cpu(writer_tid) if writer_tid else 0.0
    c0, t0 = process_cpu(), time.monotonic()
    ts, deadline = 0, t0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        ts += 160
        if record:
            for s in sessions:
                s.rec_in.put(ts, payload, now)
                s.rec_out.put(ts, payload, now)
        deadline += 0.02
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - t0
    cpu = (process_cpu() - c0) / elapsed
    writer_cpu = ((thread_cpu(writer_tid) - w0) / elapsed) if writer_tid else 0.0
    engine.close()  # (writes what the jitter buffers still hold: the files last until now)
    lasted = time.monotonic() - began
    size = sum(p.stat().st_size for p in Path(directory).glob("*.wav"))
    for p in Path(directory).glob("*.wav"):
        p.unlink()
    os.rmdir(directory)
    return {"cpu": cpu * 100, "writer": writer_cpu * 100,
            "kib_min": size / 1024 / calls / (lasted / 60) if record else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="250,500")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print(f"{'calls':>6} {'off cpu %':>10} {'on cpu %':>9} {'cost %core':>11} {'writer %':>9} "
          f"{'us/call/s':>10} {'KiB/call/min':>13}")
    port = 41000
    for calls in (int(c) for c in args.calls.split(",")):
        for _ in range(args.repeat):
            off = asyncio.run(run(calls, args.seconds, False, port))
            on = asyncio.run(run(calls, args.seconds, True, port))
            cost = on["cpu"] - off["cpu"]
            print(f"{calls:6d} {off['cpu']:10.1f} {on['cpu']:9.1f} {cost:11.1f} {on['writer']:9.1f} "
                  f"{cost / 100 / calls * 1e6:10.1f} {on['kib_min']:13.0f}", flush=True)
    print("cost: CPU with recording on minus off, % of one core; writer: the writer thread's share of 'on';\n"
          "us/call/s: CPU microseconds per recorded call per second of call (relaying a call costs about\n"
          "1,000-1,200 us/s in one process at 250-500 calls: see media.py)")


if __name__ == "__main__":
    main()
