#!/usr/bin/env python3
"""Does an open operator console slow the SIP or the media path? Each measurement twice, in one run: with
no console, then with ``--viewers`` consoles open (``console_load.py``: the live calls' event stream, the
system page's charts polled every 2 s, pages reloaded every 5 s), interleaved ``--repeat`` times.

* **Signalling**: SIPp places ``--rate`` calls/s for ``--seconds`` through the B2BUA (the shipped config,
  media anchored) to SIPp's UAS: calls completed and failed, setup time (INVITE sent -> 200 received, per
  call, SIPp's ``-trace_rtt``) p50/p99, the B2BUA's CPU milliseconds per call.
* **Media**: ``media.py``'s relay measurement (``--calls`` calls, 50 packets/s each way, SIPp echoing):
  added delay p50/p99 per traversal, loss, the B2BUA's CPU.

    python scripts/bench/console.py --rate 100 --seconds 30 --calls 100 --viewers 5 --repeat 2

Ratios between the two columns of one run are what to read: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cps import bench_config, last_stat_row, percentile, read_rtts, stat_int, stop_all, tree_cpu_seconds  # noqa: E402

import media  # noqa: E402  (this directory's benchmarks: the relay measurement, the console's viewers)

REPO = HERE.parents[1]
SIPP = shutil.which("sipp") or "/usr/bin/sipp"


def _config(folder: Path, uas_port: int, admin: str) -> Path:
    """The benchmark config with the console's auditor on the admin listener."""
    users = [{"name": media.CONSOLE_USER, "password_hash": media.console_hash(), "role": "auditor"}]
    return bench_config(folder, uas_port, admin, process={"admin": {"socket": None, "users": users}})


def _healthy(admin: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/healthz", timeout=2):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def signalling(rate: int, seconds: float, viewers: int, workdir: Path) -> dict[str, float | int | None]:
    folder = Path(tempfile.mkdtemp(prefix=f"cps-{viewers}-", dir=workdir))
    port, uas_port, admin = media.free_port(), media.free_port(), f"127.0.0.1:{media.free_port()}"
    cfg = _config(folder, uas_port, admin)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-nostdin"],
                                      cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        b2b = subprocess.Popen([sys.executable, "-m", "b2bua", "run", "--config", str(cfg), "--listen",
                                f"udp:127.0.0.1:{port}"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=open(folder / "b2bua.log", "wb"))
        procs.append(b2b)
        if not _healthy(admin):
            raise RuntimeError("the B2BUA did not start")
        load = media.start_console(admin, viewers, seconds + 3) if viewers else None
        if load is not None:
            procs.append(load)
            time.sleep(1.0)  # logged in, streams open
        cpu0 = tree_cpu_seconds(b2b.pid)
        calls = int(rate * seconds)
        uac = subprocess.run([SIPP, "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(media.free_port()),
                              "-r", str(rate), "-m", str(calls), "-d", "1000", "-trace_rtt", "-rtt_freq", "1",
                              "-trace_stat", "-stf", "uac_stat.csv", "-timeout", f"{int(seconds + 60)}s",
                              "-recv_timeout", "10000", "-nostdin"], cwd=folder, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, timeout=seconds + 90)
        cpu1 = tree_cpu_seconds(b2b.pid)
        row = last_stat_row(folder / "uac_stat.csv")
        rtts = sorted(r for _, r in read_rtts(folder))
        ok = stat_int(row, "SuccessfulCall(C)") or 0
        counts = media.console_counts(load)
        return {"viewers": viewers, "calls": calls, "ok": ok, "failed": stat_int(row, "FailedCall(C)"),
                "p50": percentile(rtts, 50), "p99": percentile(rtts, 99),
                "cpu_ms": (cpu1 - cpu0) * 1000 / max(ok, 1), "requests": counts["requests"],
                "console_failures": counts["failures"], "uac_exit": uac.returncode}
    finally:
        stop_all(procs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=100, help="calls per second for the signalling runs")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    ap.add_argument("--calls", type=int, default=100, help="concurrent calls for the media runs (0: none)")
    ap.add_argument("--viewers", type=int, default=5, help="open consoles in the 'open' runs")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="console-bench-"))
    sig, med = [], []
    for _ in range(args.repeat):
        for viewers in (0, args.viewers):
            sig.append(signalling(args.rate, args.seconds, viewers, workdir))
            print(f"[console] signalling, {viewers} viewers: done", file=sys.stderr)
            if args.calls:
                med.append(media.run(args.calls, args.seconds, 0, workdir, console=viewers))
                print(f"[console] media, {viewers} viewers: done", file=sys.stderr)
    print(f"signalling: {args.rate} calls/s for {args.seconds:.0f} s, each call held 1 s")
    print(f"{'console':>8} {'calls':>6} {'ok':>6} {'failed':>6} {'setup p50 ms':>12} {'setup p99 ms':>12} "
          f"{'CPU ms/call':>11} {'console requests':>16}")
    for r in sig:
        print(f"{r['viewers'] or 'closed':>8} {r['calls']:>6} {r['ok']:>6} {r['failed']:>6} {_ms(r['p50']):>12} "
              f"{_ms(r['p99']):>12} {r['cpu_ms']:>11.2f} {r['requests']:>16}")
    if med:
        print(f"\nmedia: {args.calls} calls, 50 packets/s each way, for {args.seconds:.0f} s")
        print(f"{'console':>8} {'pkts/s':>8} {'loss %':>7} {'p50 ms':>7} {'p99 ms':>7} {'B2BUA CPU %':>11} "
              f"{'console requests':>16}")
        for m in med:
            print(f"{m.console or 'closed':>8} {m.pps:>8.0f} {m.loss:>7.3f} {m.p50:>7.2f} {m.p99:>7.2f} {m.cpu:>11.1f} "
                  f"{m.console_requests:>16}")
    print("\nconsole requests: what the viewers fetched besides their live streams (pages, the charts' figures);")
    print("setup: INVITE sent -> 200 received at SIPp's caller (4 ms resolution); media delay: one traversal.")
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
