#!/usr/bin/env python3
"""A mutation fuzzer for the B2BUA's wire: SIP datagrams seeded from the RFC 4475 torture messages and
well-formed calls, RTP, RTCP and RFC 4733 packets sent to the ports of a call in progress.

Each case is a seed with a few mutations (bytes flipped, inserted, deleted, runs duplicated, header lines
swapped, repeated or cut, numbers replaced by extreme ones, the message truncated). Cases are made from a
seed number, so a run is repeatable: ``--seed`` and ``--cases`` say which.

Against a running B2BUA (``--target HOST:PORT``), every case is sent over UDP; the report says how many were
sent, whether the process is still alive, its RSS before and after, and the lines of its log that show an
unhandled exception. ``tests/test_fuzz.py`` runs a bounded version of this on every test run (the stack in
process, then a live B2BUA with a call up that must still complete a call afterwards).

    python scripts/bench/fuzz.py --cases 20000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RFC4475 = REPO / "tests" / "data" / "rfc4475"

#: numbers a parser meets rarely: zero, signs, the edges of 31, 32 and 64 bits, very long digit runs
EXTREMES = (b"0", b"-1", b"2147483647", b"2147483648", b"4294967295", b"4294967296", b"18446744073709551616",
            b"9" * 40, b"-0", b"+1", b"1e9", b"0x10", b"")


def sip_seeds() -> list[bytes]:
    """The RFC 4475 messages and a well-formed INVITE, OPTIONS, REGISTER and BYE."""
    seeds = [p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))]
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    for method in (b"INVITE", b"OPTIONS", b"REGISTER", b"BYE"):
        body = sdp if method == b"INVITE" else b""
        seeds.append(b"%s sip:0221332200@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKf;rport\r\n"
                     b"Max-Forwards: 70\r\nFrom: <sip:01012345678@127.0.0.1>;tag=f\r\nTo: <sip:0221332200@127.0.0.1>"
                     b"\r\nCall-ID: fuzz@127.0.0.1\r\nCSeq: 1 %s\r\nContact: <sip:f@127.0.0.1:5999>\r\n"
                     b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s"
                     % (method, method, len(body), body))
    return seeds


def media_seeds() -> list[bytes]:
    """An RTP packet of G.711, an RFC 4733 event, an RTCP sender report with a receiver block, and a BYE."""
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + b"\xff" * 160
    event = struct.pack("!BBHII", 0x80, 101 | 0x80, 2, 320, 0x1234) + struct.pack("!BBH", 5, 0x8A, 800)
    sr = struct.pack("!BBHI", 0x81, 200, 12, 0x1234) + struct.pack("!IIIII", 1, 2, 160, 10, 1600) + \
        struct.pack("!IIIIII", 0x5678, 0x01000002, 10, 20, 30, 40)
    bye = struct.pack("!BBHI", 0x81, 203, 1, 0x1234)
    return [rtp, event, sr, sr + bye]


def mutate(data: bytes, rng: random.Random, sip: bool) -> bytes:
    """One to four mutations of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(9 if sip else 6)
        pos = rng.randrange(len(out) + 1)
        if choice == 0 and out:  # flip a byte
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:  # insert random bytes
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 2 and out:  # delete a run
            del out[pos:pos + rng.randint(1, 16)]
        elif choice == 3 and out:  # duplicate a run
            run = out[pos:pos + rng.randint(1, 64)]
            out[pos:pos] = run * rng.randint(1, 20)
        elif choice == 4:  # truncate
            del out[pos:]
        elif choice == 5 and out:  # a byte set to an interesting value
            out[min(pos, len(out) - 1)] = rng.choice((0, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x20, 0x3A))
        elif choice == 6:  # SIP: header lines repeated, dropped or swapped
            lines = bytes(out).split(b"\r\n")
            if len(lines) > 2:
                i, j = rng.randrange(1, len(lines)), rng.randrange(1, len(lines))
                op = rng.randrange(3)
                if op == 0:
                    lines.insert(i, lines[j])
                elif op == 1:
                    del lines[i]
                else:
                    lines[i], lines[j] = lines[j], lines[i]
                out = bytearray(b"\r\n".join(lines))
        elif choice == 7:  # SIP: a number replaced by an extreme one
            numbers = [m.span() for m in re.finditer(rb"\d+", bytes(out))]
            if numbers:
                a, b = rng.choice(numbers)
                out[a:b] = rng.choice(EXTREMES)
        elif choice == 8:  # SIP: line ends changed (bare LF, bare CR, folding)
            out = bytearray(bytes(out).replace(b"\r\n", rng.choice((b"\n", b"\r", b"\r\n ", b"\r\n\t")), 3))
    return bytes(out[:65000])


def cases(n: int, seed: int, sip: bool) -> Iterator[bytes]:
    rng = random.Random(seed)
    seeds = sip_seeds() if sip else media_seeds()
    for _ in range(n):
        yield mutate(rng.choice(seeds), rng, sip)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def send_all(target: tuple[str, int], packets: Iterator[bytes], pps: float = 5000.0) -> int:
    """Send every packet over UDP from a fresh socket (answers are read and thrown away); how many went."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent, start = 0, time.monotonic()
    for data in packets:
        try:
            sock.sendto(data, target)
            sent += 1
        except OSError:  # e.g. an empty datagram refused by nothing: counted as not sent
            pass
        try:
            while True:
                sock.recv(65535)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        if sent % 100 == 0:  # paced: a fuzzer, not a flood
            time.sleep(max(0.0, start + sent / pps - time.monotonic()))
    sock.close()
    return sent


def unhandled(log: str) -> list[str]:
    """Log lines that show an exception nobody handled (a traceback, or an error logged with one)."""
    return [line for line in log.splitlines() if "Traceback" in line or "Unhandled" in line or " CRITICAL " in line]


def fuzz_live(work: Path, n: int, seed: int) -> dict[str, object]:
    """The B2BUA on the shipped config with a SIPp call up through it; ``n`` SIP cases to its SIP port and ``n``
    media cases to the call's RTP and RTCP ports; then a new call. What happened, as a dict."""
    sys.path.insert(0, str(REPO / "tests"))
    from harness import SIPP, B2BUAProcess, free_port, sipp, sipp_background, write_config  # noqa: PLC0415
    from rtp_peer import sdp_port  # noqa: PLC0415

    uas_port, port = free_port(), free_port()
    cfg = write_config(work / "config", routing={"routes": [{"name": "lab", "prefix": "",
                                                             "targets": [f"sip:127.0.0.1:{uas_port}"]}]})
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], work):
        proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], work / "b2bua.log").start()
        try:
            held = subprocess.Popen([str(SIPP), "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p",
                                     str(free_port()), "-m", "1", "-d", "600000", "-nostdin", "-trace_msg",
                                     "-message_file", str(work / "held.log")], cwd=work,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rtp = sdp_port(work / "held.log", "SIP/2.0 200", timeout=20)
            pid = proc.proc.pid  # type: ignore[union-attr]
            rss0 = rss_kib(pid)
            t0 = time.monotonic()
            sent_sip = send_all(("127.0.0.1", port), cases(n, seed, True))
            media = list(cases(n, seed, False))
            sent_media = send_all(("127.0.0.1", rtp), iter(media[::2])) + \
                send_all(("127.0.0.1", rtp + 1), iter(media[1::2]))
            elapsed = time.monotonic() - t0
            time.sleep(1.0)
            alive = proc.alive()
            rss1 = rss_kib(pid) if alive else 0
            after = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1",
                          "-d", "200"], work) if alive else None
            held.kill()
            held.wait()
            return {"sip": sent_sip, "media": sent_media, "seconds": elapsed, "alive": alive, "rss0": rss0,
                    "rss1": rss1, "unhandled": unhandled(proc.log()),
                    "call_after": after is not None and after.returncode == 0,
                    "parse_errors": proc.log().count("parse error")}
        finally:
            proc.stop()


def main() -> int:
    here = Path(__file__).resolve().parent  # this folder's media.py must not hide the media package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20000, help="SIP cases (as many media cases again)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    r = fuzz_live(Path(tempfile.mkdtemp(prefix="fuzz-")), args.cases, args.seed)
    print(f"{'SIP cases':>10} {'media cases':>11} {'seconds':>7} {'alive':>5} {'RSS KiB before':>14} {'after':>8} "
          f"{'unhandled':>9} {'call after':>10}")
    print(f"{r['sip']:>10} {r['media']:>11} {r['seconds']:>7.1f} {'yes' if r['alive'] else 'NO':>5} "
          f"{r['rss0']:>14} {r['rss1']:>8} {len(r['unhandled']):>9} "  # type: ignore[arg-type]
          f"{'ok' if r['call_after'] else 'FAILED':>10}")
    return 0 if r["alive"] and r["call_after"] and not r["unhandled"] else 1


if __name__ == "__main__":
    sys.exit(main())
