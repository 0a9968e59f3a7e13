#!/usr/bin/env python3
"""The interpreter's cost of one call's signalling, without sockets: ``python scripts/bench/sigpath.py``.

``cps.py`` measures a whole process against SIPp over loopback, where every ``sendto`` also delivers the
datagram to SIPp and wakes it, and the same code measures 1-2.3 ms per call from one run to the next on a
shared two-core machine. This script feeds the same messages SIPp's built-in ``uac`` and ``uas`` scenarios
exchange (INVITE, 100, 180, 200, ACK, BYE, 200) straight into the process's own parts: the SIP stack, call
control, routing on the shipped config (media off, as ``cps.py --systems ours-signalling``), the CDR rows
(flushed to SQLite in the same thread every 200 calls). A fake clock moves 1/rate s per call, fires the
transaction timers (so transactions wait out 64*T1 as they do under load) and paces the cyclic GC as the
running process does (``b2bua/gc_pacer.py``). What it reports is the CPU time spent in those parts per call,
not in building the peers' messages: the part this code can change; the kernel's share is not in it.

``--code base=PATH,new=.`` runs each checkout in its own process, interleaved ``--repeat`` times, and prints
µs per call and the ratio to the first: compare changes side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB = ("127.0.0.1", 5061)  # SIPp's uac, on the lab trunk's address
STAFF_PORT = 5080  # where the lab route sends calls (cps.py's --ours-uas-port)
CRLF = "\r\n"


def _msg(lines: list[str], body: bytes = b"") -> bytes:
    return (CRLF.join([*lines, f"Content-Length: {len(body)}"]) + CRLF + CRLF).encode() + body


def _sdp(port: int) -> bytes:
    return (f"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()


def _uac(method: str, n: int, local: str, *, to_tag: str = "", cseq: int = 1, body: bytes = b"") -> bytes:
    """A request from SIPp's built-in uac scenario (call ``n``)."""
    host, port = LAB
    lines = [f"{method} sip:service@{local} SIP/2.0",
             f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{n}-{cseq}-{method}",
             f"From: sipp <sip:sipp@{host}:{port}>;tag={n}SIPpTag00{n}",
             f"To: service <sip:service@{local}>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: {n}-bench@{host}", f"CSeq: {cseq} {method}", f"Contact: sip:sipp@{host}:{port}",
             "Max-Forwards: 70", "Subject: Performance Test"]
    if body:
        lines.append("Content-Type: application/sdp")
    return _msg(lines, body)


def _uas_reply(req, status: int, reason: str, tag: str, body: bytes = b"") -> bytes:
    """SIPp's built-in uas scenario answering ``req`` (a parsed request the B2BUA sent)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for key, name, value in req.headers:
        if key == "to" and status > 100 and ";tag=" not in value:
            value = f"{value};tag={tag}"
        if key in ("via", "from", "to", "call-id", "cseq"):
            lines.append(f"{name}: {value}")
    lines.append(f"Contact: <sip:127.0.0.1:{STAFF_PORT};transport=UDP>")
    if body:
        lines.append("Content-Type: application/sdp")
    return _msg(lines, body)


def bench_folder(root: Path) -> Path:
    """``root``'s shipped config in a new folder: media off, quiet logs, storage in the folder."""
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)  # (only for this import: the folder's media.py would shadow the media package)
    try:
        from cps import copy_config, quiet_process  # noqa: PLC0415
    finally:
        sys.path.remove(here)

    def change(process: dict) -> None:
        process.update(quiet_process(folder))
        process.setdefault("media", {})["enabled"] = False

    folder = Path(tempfile.mkdtemp(prefix="sigpath-"))
    copy_config(root, folder, change)
    return folder


def child(calls: int, rate: float, warmup: int, folder: Path) -> dict[str, float]:
    """Run ``warmup`` + ``calls`` calls in this process (the checkout on sys.path, its config in ``folder``,
    as :func:`bench_folder` wrote it); CPU µs per call."""
    import logging

    here = Path(__file__).resolve().parent  # (its media.py would shadow the media package)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from b2bua.app import Application
    from b2bua.config import load_config
    from b2bua.sip.events import Peer
    from b2bua.sip.message import Request, Response, parse_message

    logging.disable(logging.WARNING)  # the two log lines a call are not written: the SIP path is what is measured
    app = Application(load_config(str(folder / "b2bua.yaml")))
    app.cdr.recover()
    stack, clock = app.stack, app.clock
    local = "127.0.0.1:5060"
    a_peer = Peer("udp", *LAB)
    sent = {"a": 0, "b": 0}
    t = 0.0

    cpu = [0.0]  # CPU seconds spent in the process's parts (not in building SIPp's messages)
    pacer = app.gc_pacer  # the cyclic GC as the running process paces it
    next_young = [pacer.young_every]

    def feed(data: bytes, peer: Peer) -> list[tuple[bytes, Peer]]:
        start = time.process_time()
        stack.receive(data, peer, clock.now)
        app.pump()
        out = list(stack.datagrams_to_send())
        cpu[0] += time.process_time() - start
        for _, p in out:
            sent["a" if p.port == LAB[1] else "b"] += 1
        return out

    def advance(to: float) -> None:
        start = time.process_time()
        while (deadline := stack.get_timer()) is not None and deadline <= to:
            clock.advance(deadline)
            stack.handle_timer(clock.now)
            app.pump()
            stack.datagrams_to_send()
        while next_young[0] <= to:
            pacer.tick(next_young[0])
            next_young[0] += pacer.young_every
        clock.advance(to)
        cpu[0] += time.process_time() - start

    def one_call(n: int) -> None:
        out = feed(_uac("INVITE", n, local, body=_sdp(6000)), a_peer)
        invite = next(parse_message(d) for d, p in out if p.port == STAFF_PORT)
        assert isinstance(invite, Request), "no INVITE to the staff side"
        b_peer = Peer("udp", "127.0.0.1", STAFF_PORT)
        feed(_uas_reply(invite, 180, "Ringing", f"b{n}"), b_peer)
        out = feed(_uas_reply(invite, 200, "OK", f"b{n}", _sdp(7000)), b_peer)
        ok = next(parse_message(d) for d, p in out if p.port == LAB[1] and d.startswith(b"SIP/2.0 200"))
        assert isinstance(ok, Response)
        tag = ok.to_tag or ""
        out = feed(_uac("ACK", n, local, to_tag=tag), a_peer)
        out = feed(_uac("BYE", n, local, to_tag=tag, cseq=2), a_peer)
        bye = next(parse_message(d) for d, p in out if p.port == STAFF_PORT)
        assert isinstance(bye, Request) and bye.method == "BYE", "no BYE to the staff side"
        feed(_uas_reply(bye, 200, "OK", f"b{n}"), b_peer)

    n = 0
    pacer.start(0.0)
    for _ in range(warmup):
        n += 1
        one_call(n)
        t += 1 / rate
        advance(t)
    app.cdr.flush()
    sent["a"] = sent["b"] = 0
    cpu[0] = 0.0
    for i in range(calls):
        n += 1
        one_call(n)
        t += 1 / rate
        advance(t)
        if i % 200 == 199:
            start = time.process_time()
            app.cdr.flush()
            cpu[0] += time.process_time() - start
    start = time.process_time()
    app.cdr.flush()
    cpu[0] += time.process_time() - start
    pacer.stop()
    ended = app.b2bua.stats["calls_ended"]
    return {"us_per_call": cpu[0] / calls * 1e6, "to_a": sent["a"] / calls, "to_b": sent["b"] / calls,
            "ended": ended, "live": len(app.b2bua.calls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1000, help="calls before the measured ones (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=200.0, help="calls/s on the fake clock (default: %(default)s)")
    ap.add_argument("--code", default="", help="checkouts to compare, label=path,... (default: this one)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each checkout, interleaved (default: %(default)s)")
    ap.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.calls, args.rate, args.warmup, Path(args.child))))
        return
    from cps import checkouts  # noqa: PLC0415 (a script run from scripts/bench; the child needs none of it)

    results: dict[str, list[dict[str, float]]] = {}
    codes = checkouts(args.code)
    for _ in range(args.repeat):
        for label, root in codes:
            env = dict(os.environ, PYTHONPATH=str(root))
            folder = bench_folder(root)
            try:
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(folder),
                                       "--calls", str(args.calls), "--warmup", str(args.warmup), "--rate",
                                       str(args.rate)], cwd=root, env=env, capture_output=True, text=True, check=False)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if proc.returncode != 0:
                raise SystemExit(f"{label or root}: failed\n{proc.stderr[-3000:]}")
            results.setdefault(label, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"signalling path in one process, {args.calls} calls after {args.warmup} (fake clock at {args.rate:g} "
          f"calls/s), {args.repeat} runs each, interleaved")
    print(f"{'code':<12} {'us/call runs':<28} {'median':>8} {'ratio':>6} {'sent/call a,b':>14} "
          f"{'ended':>6} {'live':>5}")
    first = None
    for label, runs in results.items():
        med = statistics.median(r["us_per_call"] for r in runs)
        first = first or med
        each = " ".join(f"{r['us_per_call']:.0f}" for r in runs)
        last = runs[-1]
        print(f"{label or '.':<12} {each:<28} {med:8.0f} {med / first:6.2f} "
              f"{last['to_a']:>6.1f},{last['to_b']:<7.1f} {int(last['ended']):>6} {int(last['live']):>5}")


if __name__ == "__main__":
    main()
