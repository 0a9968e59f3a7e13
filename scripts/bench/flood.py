#!/usr/bin/env python3
"""A SIP flood against the B2BUA while a carrier places real calls: does it keep serving citizens?

SIPp places ``--rate`` calls/s (``--calls`` in all, each held 1 s) from the lab trunk (127.0.0.1) to SIPp's UAS;
meanwhile ``--flood-pps`` requests a second (INVITE, REGISTER and OPTIONS in turn, each a new transaction,
a third of them with a scanner's User-Agent) arrive from two outsiders (127.0.0.8 and 127.0.0.9: the shipped
config narrowed so that only 127.0.0.1 is the lab trunk). The same run without the flood comes first. Per
run: calls completed of those placed, setup time (INVITE -> 200 at SIPp) p50/p95, what the flooders got
back, the B2BUA's RSS and open media ports after, and the gate's refusals from /metrics.

    python scripts/bench/flood.py --rate 20 --calls 400 --flood-pps 5000 --without-gate
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from cps import bench_config, last_stat_row, percentile, read_rtts, stat_int, stop_all  # noqa: E402

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
OUTSIDERS = ("127.0.0.8", "127.0.0.9")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def flood_worker(source: str, target: int, pps: float, seconds: float) -> None:
    """Send ``pps`` new requests a second from ``source`` for ``seconds``; print how many answers came back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    lport = sock.getsockname()[1]
    methods = ("INVITE", "REGISTER", "OPTIONS")
    agents = ("friendly-scanner", "Z 5.6.1", "sipcli/v1.8")
    sent = answers = 0
    end = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < end:
        for _ in range(50):
            m, n = methods[sent % 3], sent
            body = ""
            msg = (f"{m} sip:0221332200@127.0.0.1:{target} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {source}:{lport};branch=z9hG4bKfl{os.getpid()}x{n}\r\nMax-Forwards: 70\r\n"
                   f"From: <sip:{n}@{source}>;tag=f{n}\r\nTo: <sip:0221332200@127.0.0.1>\r\n"
                   f"Call-ID: fl{os.getpid()}-{n}@{source}\r\nCSeq: 1 {m}\r\nContact: <sip:x@{source}:{lport}>\r\n"
                   f"User-Agent: {agents[n // 3 % 3]}\r\nContent-Length: {len(body)}\r\n\r\n{body}")
            try:
                sock.sendto(msg.encode(), ("127.0.0.1", target))
                sent += 1
            except BlockingIOError:
                pass
        while select.select([sock], [], [], 0)[0]:
            try:
                sock.recv(65535)
                answers += 1
            except BlockingIOError:
                break
        time.sleep(max(0.0, start + sent / pps - time.monotonic()))
    print(f"{sent} {answers}", flush=True)


def run(rate: int, calls: int, flood_pps: int, work: Path, gate: bool = True) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix=f"flood-{flood_pps}-", dir=work))
    uas_port, port, metrics = free_port(), free_port(), free_port()
    wide = {"INVITE": 1e6, "REGISTER": 1e6, "OPTIONS": 1e6, "other": 1e6}  # the front gate opened wide
    cfg = bench_config(folder, uas_port, f"127.0.0.1:{metrics}", lab_only=True, process=None if gate else {
        "security": {"scanner_user_agents": [], "untrusted_rates": wide, "trusted_rates": wide}})
    procs: list[subprocess.Popen] = []
    try:
        b2b = start_lab(procs, folder, cfg, uas_port, port, metrics)
        rss0 = _rss(b2b.pid)
        seconds = calls / rate + 2
        flooders = [subprocess.Popen([sys.executable, __file__, "--flood-worker", src, str(port),
                                      str(flood_pps / len(OUTSIDERS)), str(seconds)], stdout=subprocess.PIPE)
                    for src in OUTSIDERS] if flood_pps else []
        procs.extend(flooders)
        time.sleep(1.0 if flood_pps else 0)
        subprocess.run([SIPP, "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
                        "-r", str(rate), "-m", str(calls), "-d", "1000", "-trace_rtt", "-rtt_freq", "1",
                        "-trace_stat", "-stf", "uac_stat.csv", "-timeout", f"{int(seconds + 60)}s", "-nostdin"],
                       cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 90)
        flood_sent = flood_answers = 0
        for f in flooders:
            out, _ = f.communicate(timeout=seconds + 30)
            a, b = out.decode().split()
            flood_sent, flood_answers = flood_sent + int(a), flood_answers + int(b)
        time.sleep(2)
        text = _metrics(metrics) or ""
        row = last_stat_row(folder / "uac_stat.csv")
        rtts = sorted(r for _, r in read_rtts(folder))
        refused = {k: float(v) for k, v in re.findall(r'^b2bua_gate_total\{what="([^"]+)"\} (\S+)$', text, re.M)}
        return {"flood": flood_pps, "gate": "on" if gate else "off", "calls": calls,
                "ok": stat_int(row, "SuccessfulCall(C)") or 0,
                "p50": percentile(rtts, 50), "p95": percentile(rtts, 95), "flood_sent": flood_sent,
                "flood_answered": flood_answers, "rss0": rss0, "rss1": _rss(b2b.pid),
                "ports": _media_sockets(b2b.pid), "refused": refused}
    finally:
        stop_all(procs)


def start_lab(procs: list[subprocess.Popen], folder: Path, cfg: Path, uas_port: int, port: int,
              metrics: int) -> subprocess.Popen:
    """SIPp's UAS on ``uas_port`` and the B2BUA on ``cfg`` (UDP ``port``), both added to ``procs``; returns the
    B2BUA once its /metrics answers."""
    procs.append(subprocess.Popen([SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-nostdin"],
                                  cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    b2b = subprocess.Popen([sys.executable, "-m", "b2bua", "run", "--config", str(cfg),
                            "--listen", f"udp:127.0.0.1:{port}"], cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=open(folder / "b2bua.log", "wb"))
    procs.append(b2b)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _metrics(metrics) is None:
        time.sleep(0.2)
    return b2b


def _metrics(port: int) -> str | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except OSError:
        return None


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def _media_sockets(pid: int) -> int:
    """UDP sockets the process holds beyond its SIP listener (media ports)."""
    try:
        return max(0, sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if "socket" in os.readlink(fd)) - 4)
    except OSError:
        return -1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--flood-worker":
        flood_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=20)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--flood-pps", type=int, default=5000)
    ap.add_argument("--without-gate", action="store_true", help="also run the flood with the front gate opened wide")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    results = [run(args.rate, args.calls, 0, work), run(args.rate, args.calls, args.flood_pps, work)]
    if args.without_gate:
        results.append(run(args.rate, args.calls, args.flood_pps, work, gate=False))
    print(f"{'flood/s':>8} {'gate':>4} {'calls':>6} {'completed':>9} {'%':>6} {'setup p50 ms':>12} {'p95 ms':>7} "
          f"{'flood sent':>10} {'answered':>8} {'RSS MB':>11} {'sockets':>7}  gate refusals")
    for r in results:
        refused = ", ".join(f"{k.removeprefix('refused:')} {v:.0f}"
                            for k, v in sorted(r["refused"].items())  # type: ignore[attr-defined]
                            if k.startswith("refused:"))
        print(f"{r['flood']:>8} {r['gate']:>4} {r['calls']:>6} {r['ok']:>9} {100 * r['ok'] / r['calls']:>6.1f} "  # type: ignore[operator]
              f"{_ms(r['p50']):>12} {_ms(r['p95']):>7} {r['flood_sent']:>10} {r['flood_answered']:>8} "
              f"{r['rss0']:>4} -> {r['rss1']:<4} {r['ports']:>7}  {refused}")
    return 0


def _ms(v: object) -> str:
    return "-" if v is None else f"{v:.0f}"


if __name__ == "__main__":
    sys.exit(main())
