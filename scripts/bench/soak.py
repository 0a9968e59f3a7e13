#!/usr/bin/env python3
"""Soak: a long steady load with media anchored and a share of the calls recorded; does anything pile up?

Two SIPp callers place citizens' calls from the carrier trunk (127.0.0.1) for ``--minutes``: ``--rate`` calls/s
in all, ``--recorded`` of them (default 10 %) to a department whose calls are recorded in full (a 40 ms notice,
then a stereo file of both legs), the rest to a department that does not record. Every call's RTP is anchored
(ports allocated, SDP rewritten, the engine relaying). Each call is held ``--hold-ms``; SIPp's UAS answers.

Read from the process (``/proc``) and its ``/metrics``: before the load (idle), after the warm-up
(``--warmup-s``, when caches and pools have grown to their working size), at the end of the load, and again
once the calls and their transactions are over (Timer J/K: 32 s after the last message). Printed: calls placed /
completed / failed, RSS (idle, warm, end: growth from warm to end is the leak figure, target < 5 %), file
descriptors, live transactions, calls, media ports in use and recordings written.

    python scripts/bench/soak.py --rate 240 --minutes 10

The rate is meant as 80 % of the highest rate ``cps.py --systems ours`` sustains on the same machine that day.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from cps import bench_config, last_stat_row, stat_int, stop_all  # noqa: E402
from flood import _metrics, _rss, free_port, start_lab  # noqa: E402

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
RECORDED, PLAIN = "0221332200", "0221332300"


def soak_routing(cfg: Path, uas_port: int) -> None:
    """Two departments on SIPp's UAS: one recording every call in full, one not."""
    with wave.open(str(cfg.parent / "notice.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(640))
    routing = yaml.safe_load((cfg.parent / "routing.yaml").read_text())
    routing["trunks"] = [
        {"name": "carrier", "kind": "carrier", "addresses": ["127.0.0.1/32"],
         "gateways": [{"uri": "sip:127.0.0.1:9"}], "max_calls": 100_000, "max_cps": 10_000},
        {"name": "pbx", "kind": "pbx", "addresses": ["127.0.0.9/32"],
         "gateways": [{"uri": f"sip:127.0.0.1:{uas_port}"}], "codecs": ["PCMU", "PCMA"],
         "max_calls": 100_000, "max_cps": 10_000}]
    routing["routes"] = [{"name": "out", "prefix": "", "trunks": ["carrier"]}]
    routing["departments"] = [
        {"name": name, "display_name": name, "numbers": [did], "trunk": "pbx", "extension": ext,
         "policy": {"recording": record, "recording_notice": "notice.wav", "ringback": {}, "closed": {},
                    "abuse": {"enabled": False}}}
        for name, did, ext, record in (("recorded", RECORDED, "2200", "full"), ("plain", PLAIN, "2300", "off"))]
    routing["devices"] = []
    routing["schedules"] = []
    (cfg.parent / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))


def gauge(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def snapshot(pid: int, metrics: int, recordings: Path) -> dict[str, float]:
    # the descriptors first: the scrape's own connection, still open on the server side for a moment
    # after the response, was counted as a socket now and then (idle 8, after 9, with nothing left over)
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    sockets = sum(t.startswith("socket:") for t in targets)
    text = _metrics(metrics) or ""
    return {"rss_mb": _rss(pid), "sockets": sockets, "other_fds": len(targets) - sockets,
            "transactions": gauge(text, "b2bua_sip_transactions"), "calls": gauge(text, "b2bua_active_calls"),
            "free_ports": gauge(text, "b2bua_rtp_free_port_pairs"),
            "recordings": sum(1 for _ in recordings.rglob("*.wav")) if recordings.exists() else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=240.0, help="calls/s in all (default: %(default)s)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--recorded", type=float, default=0.1, help="share of calls recorded (default: %(default)s)")
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--warmup-s", type=float, default=60.0)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    uas_port, port, metrics = free_port(), free_port(), free_port()
    cfg = bench_config(folder, uas_port, f"127.0.0.1:{metrics}", process={"security": {"max_new_calls_per_s": None}})
    soak_routing(cfg, uas_port)
    procs: list[subprocess.Popen] = []
    seconds = args.minutes * 60
    try:
        b2b = start_lab(procs, folder, cfg, uas_port, port, metrics)
        recordings = folder / "recordings"
        idle = snapshot(b2b.pid, metrics, recordings)
        callers = []
        for did, share, name in ((RECORDED, args.recorded, "recorded"), (PLAIN, 1 - args.recorded, "plain")):
            rate = args.rate * share
            calls = int(rate * seconds)
            callers.append((name, calls, subprocess.Popen(
                [SIPP, "-sn", "uac", f"127.0.0.1:{port}", "-s", did, "-i", "127.0.0.1", "-p", str(free_port()),
                 "-r", f"{rate:g}", "-m", str(calls), "-d", str(args.hold_ms), "-trace_stat", "-stf",
                 f"{name}_stat.csv", "-timeout", f"{int(seconds + 120)}s", "-recv_timeout", "10000", "-trace_err",
                 "-nostdin"],
                cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        procs.extend(p for _, _, p in callers)
        time.sleep(args.warmup_s)
        warm = snapshot(b2b.pid, metrics, recordings)
        cpu0 = _cpu(b2b.pid)
        trend = []  # RSS and calls once a minute while the load runs
        load_over = time.monotonic() - args.warmup_s + seconds + 240  # SIPp's own time-outs at the latest
        while any(p.poll() is None for _, _, p in callers) and time.monotonic() < load_over:
            time.sleep(min(60.0, seconds))
            now = snapshot(b2b.pid, metrics, recordings)
            trend.append(f"{now['rss_mb']:.0f} MB/{now['calls']:.0f} calls")
        end = snapshot(b2b.pid, metrics, recordings)
        cpu1 = _cpu(b2b.pid)
        time.sleep(40)  # the last calls' transactions: Timer J/K (64*T1 = 32 s)
        after = snapshot(b2b.pid, metrics, recordings)
        placed = completed = failed = 0
        why: dict[str, int] = {}  # SIPp's failure counters: what the failed calls met
        for name, calls, _ in callers:
            row = last_stat_row(folder / f"{name}_stat.csv")
            placed += calls
            completed += stat_int(row, "SuccessfulCall(C)") or 0
            failed += stat_int(row, "FailedCall(C)") or 0
            for key in row or {}:
                if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
                    why[key[6:-3]] = why.get(key[6:-3], 0) + (stat_int(row, key) or 0)
    finally:
        stop_all(procs)
    load_s = seconds - args.warmup_s
    print(f"soak: {args.rate:g} calls/s for {args.minutes:g} min, {100 * args.recorded:.0f} % recorded, "
          f"hold {args.hold_ms} ms, media anchored")
    print(f"calls placed {placed}, completed {completed}, failed {failed}; B2BUA CPU "
          f"{100 * (cpu1 - cpu0) / load_s:.0f} % of a core after the warm-up")
    reasons = ", ".join(f"{k} {n}" for k, n in sorted(why.items()) if n)
    if reasons:
        print(f"failed calls by what SIPp met: {reasons} (messages: {folder}/*_errors.log, B2BUA log in {folder})")
    print("once a minute: " + ", ".join(trend))
    print(f"{'':14} {'idle':>8} {'warm':>8} {'end':>8} {'after':>8}")
    for key in ("rss_mb", "sockets", "other_fds", "transactions", "calls", "free_ports", "recordings"):
        print(f"{key:14} " + " ".join(f"{s[key]:>8.0f}" for s in (idle, warm, end, after)))
    growth = 100 * (end["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"]
    print(f"RSS growth warm -> end: {growth:+.1f} %")
    # files may stay open that the first calls opened (the CDR database's -wal and -shm): sockets may not
    back = after["sockets"] == idle["sockets"] and after["other_fds"] <= idle["other_fds"] + 2 and \
        after["transactions"] == 0 and after["calls"] == 0 and \
        after["free_ports"] == idle["free_ports"]
    print("back to idle: " + ("yes" if back else "NO"))
    return 0 if failed == 0 and completed == placed and growth < 5 and back else 1


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
