#!/usr/bin/env python3
"""Media relay benchmark: N concurrent calls, each streaming 50 packets/s each way through the B2BUA.

Topology (loopback, UDP)::

    load generator (this script)  --RTP-->  B2BUA leg a | leg b  --RTP-->  SIPp UAS (-rtp_echo)
          N sockets, 50 pps each  <--RTP--  (relay, header rewrite)  <--RTP--  echoes every packet

SIPp places the N calls (``uac_rtp.xml``: each call's SDP names one of our sockets) and its UAS
echoes the RTP it receives, so every packet crosses the B2BUA twice: caller->callee and back. The
generator stamps each payload with its send time and reports, per run:

* calls, packets/s through the B2BUA (both directions), B2BUA CPU % (utime+stime over the window, the
  media worker processes included; 100 % = one core),
* loss (sent vs echoed back), added delay p50/p99 for one traversal (round trip / 2),
* B2BUA RSS per call (RSS during the run minus RSS before the calls, divided by N),
* with ``--flood``: one stranger sends ``--flood-pps`` packets/s at one call's port for the whole
  window, to show a flood does not slow the other calls (its packets are dropped and counted).

    python scripts/bench/media.py --calls 100,250,500 --seconds 20 --workers 0,2
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = REPO / "scripts" / "sipp"
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the media workers)."""
    total = cpu_seconds(pid)
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                fields = (child / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    total += cpu_seconds(int(child.name))
            except (OSError, ValueError, IndexError):
                continue
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Result:
    workers: int
    calls: int
    flood: bool
    pps: float
    cpu: float
    loss: float
    p50: float
    p99: float
    rss_per_call: float
    sent: int
    received: int


def run(calls: int, seconds: float, flood_pps: int, workdir: Path, workers: int = 0) -> Result:
    port, uas_port = free_port(), free_port()
    cfgdir = workdir / f"cfg-{calls}-{flood_pps}-{workers}"
    cfgdir.mkdir()
    import yaml

    proc_cfg = yaml.safe_load((REPO / "config" / "b2bua.yaml").read_text())
    proc_cfg["media"].update({"port_min": 32000, "port_max": 32000 + 8 * calls + 64, "rtp_timeout_s": 600,
                              "workers": workers})
    proc_cfg["logging"] = {"level": "warning", "format": "text"}
    proc_cfg["storage"] = {"url": f"sqlite:///{cfgdir / 'cdr.sqlite3'}"}
    routing = yaml.safe_load((REPO / "config" / "routing.yaml").read_text())
    routing["routes"] = [{"name": "bench", "prefix": "", "targets": [f"sip:127.0.0.1:{uas_port}"]}]
    (cfgdir / "b2bua.yaml").write_text(yaml.safe_dump(proc_cfg))
    (cfgdir / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    shutil.copy(REPO / "config" / "holidays.yaml", cfgdir / "holidays.yaml")

    socks = []
    for _ in range(calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks.append(s)
    csv = cfgdir / "calls.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{s.getsockname()[1]};0;PCMU;\n" for s in socks))

    procs: list[subprocess.Popen] = []
    try:
        b2b = subprocess.Popen([sys.executable, "-m", "b2bua", "run", "--config", str(cfgdir / "b2bua.yaml"),
                                "--listen", f"udp:127.0.0.1:{port}"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=open(cfgdir / "b2bua.log", "wb"))
        procs.append(b2b)
        uas = subprocess.Popen([SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-rtp_echo",
                                "-mp", str(free_port()), "-nostdin"], cwd=cfgdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(uas)
        time.sleep(1.5)
        rss0 = rss_kib(b2b.pid)
        hold_ms = int((seconds + 8 + calls / 100) * 1000)
        uac = subprocess.Popen([SIPP, "-sf", str(SCENARIOS / "uac_rtp.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                                "-p", str(free_port()), "-m", str(calls), "-r", "100", "-l", str(calls),
                                "-d", str(hold_ms), "-inf", str(csv), "-trace_msg", "-message_file",
                                str(cfgdir / "uac.log"), "-nostdin"], cwd=cfgdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(uac)
        targets: dict[int, tuple[str, int]] = {}
        deadline = time.monotonic() + 30 + calls / 50
        pattern = re.compile(r"SIP/2.0 200 OK.*?Call-ID: (\d+)-\d+@.*?m=audio (\d+)", re.S)
        while len(targets) < calls and time.monotonic() < deadline:
            time.sleep(0.5)
            text = (cfgdir / "uac.log").read_text(errors="replace") if (cfgdir / "uac.log").exists() else ""
            for block in text.split("-----"):
                if "received" in block[:120]:
                    m = pattern.search(block)
                    if m:
                        targets[int(m.group(1)) - 1] = ("127.0.0.1", int(m.group(2)))
        if len(targets) < calls:
            raise RuntimeError(f"only {len(targets)} of {calls} calls came up")
        flood = None
        if flood_pps:
            flood = subprocess.Popen([sys.executable, __file__, "--flood-worker", f"{targets[0][1]}",
                                      str(flood_pps), str(seconds + 2)])
            procs.append(flood)
        time.sleep(0.5)
        # stream for `seconds`, 50 pps per call, stamping payloads with the send time
        sent = received = 0
        delays: list[float] = []
        header = struct.Struct("!BBHII")
        payload_pad = b"\xff" * 152
        cpu0, t0 = tree_cpu(b2b.pid), time.monotonic()
        by_fd = {s.fileno(): s for s in socks}
        poller = select.epoll()
        for s in socks:
            poller.register(s.fileno(), select.EPOLLIN)
        seq = 0
        next_tick = time.monotonic()
        end = next_tick + seconds
        rss_mid = 0
        while True:
            now = time.monotonic()
            if now >= next_tick:
                if now >= end:
                    break
                seq += 1
                stamp = time.perf_counter_ns()
                for i, s in enumerate(socks):
                    pkt = header.pack(0x80, 0, seq & 0xFFFF, seq * 160, 0x5000 + i) + struct.pack("!Q", stamp) + payload_pad
                    try:
                        s.sendto(pkt, targets[i])
                        sent += 1
                    except BlockingIOError:
                        pass
                next_tick += 0.02
                if seq == int(seconds * 25):
                    rss_mid = rss_kib(b2b.pid)
            for fd, _ in poller.poll(max(0.0, next_tick - time.monotonic())):
                received += _drain(by_fd[fd], delays)
        cpu1, t1 = tree_cpu(b2b.pid), time.monotonic()
        # collect stragglers for 200 ms
        stop = time.monotonic() + 0.2
        while time.monotonic() < stop:
            for fd, _ in poller.poll(0.05):
                received += _drain(by_fd[fd], delays)
        delays.sort()
        elapsed = t1 - t0
        return Result(workers, calls, bool(flood_pps), received * 2 * 2 / elapsed, (cpu1 - cpu0) / elapsed * 100,
                      max(0.0, (sent - received) / max(sent, 1) * 100),
                      delays[len(delays) // 2] if delays else float("nan"),
                      delays[int(len(delays) * 0.99)] if delays else float("nan"),
                      (rss_mid - rss0) / calls, sent, received)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in socks:
            s.close()


def _drain(sock: socket.socket, delays: list[float]) -> int:
    """Read every echoed packet waiting on ``sock``; record its one-way delay (round trip / 2)."""
    got = 0
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return got
        if len(data) >= 20:
            got += 1
            delays.append((time.perf_counter_ns() - struct.unpack_from("!Q", data, 12)[0]) / 2e6)


def flood_worker(port: int, pps: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pkt = struct.pack("!BBHII", 0x80, 0, 1, 1, 0xBAD) + b"\xff" * 160
    end = time.monotonic() + seconds
    batch = max(1, pps // 100)
    while time.monotonic() < end:
        for _ in range(batch):
            s.sendto(pkt, ("127.0.0.1", port))
        time.sleep(0.01)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--flood-worker":
        flood_worker(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="50,100,250,500")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--flood", action="store_true", help="also run the largest N with a stranger flooding one port")
    ap.add_argument("--flood-pps", type=int, default=20000)
    ap.add_argument("--workers", default="0", help="media worker processes to compare, e.g. 0,2")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="media-bench-"))
    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for n in [int(x) for x in args.calls.split(",")]:
            results.append(run(n, args.seconds, 0, workdir, workers))
            print(f"[media] {workers} workers, {n} calls done", file=sys.stderr)
        if args.flood:
            n = int(args.calls.split(",")[-1])
            results.append(run(n, args.seconds, args.flood_pps, workdir, workers))
    print(f"{'workers':>7} {'calls':>6} {'flood':>6} {'pkts/s':>8} {'cpu %':>6} {'loss %':>7} {'delay p50 ms':>13} "
          f"{'delay p99 ms':>13} {'RSS/call KiB':>13}")
    for r in results:
        print(f"{r.workers:>7} {r.calls:>6} {'yes' if r.flood else 'no':>6} {r.pps:>8.0f} {r.cpu:>6.1f} "
              f"{r.loss:>7.3f} {r.p50:>13.2f} {r.p99:>13.2f} {r.rss_per_call:>13.1f}")
    print("pkts/s counts every packet the B2BUA received and sent (caller->callee and the echo back);")
    print("delay is one traversal (round trip through B2BUA -> SIPp echo -> B2BUA, halved).")


if __name__ == "__main__":
    main()
