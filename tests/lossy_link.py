"""A lossy, jittery link between two network namespaces, in user space: what ``tc netem delay 50ms 50ms loss 5%``
does, for kernels built without ``sch_netem`` (this sandbox's refuses it: "Specified qdisc kind is unknown").

Run as a program (root): it opens a TUN device named ``lossy0`` in each of the two namespaces and forwards every
IP packet from one to the other, dropping each with probability ``loss`` and delaying the others by a uniform
``delay +- jitter`` (so, as with netem, packets can overtake each other). It prints ``ready`` once both devices
exist, and at SIGTERM the packets it forwarded and dropped. The test gives the devices their addresses.

    python tests/lossy_link.py NS_A NS_B --loss 0.05 --delay-ms 50 --jitter-ms 50 --seed 1
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000


def enter(namespace: str) -> None:
    """Move this (single-threaded) process into a named network namespace (``ip netns add``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
    finally:
        os.close(fd)


def open_tun(name: str) -> int:
    """A TUN device (IP packets, no extra header) in the current namespace; it lives while the fd is open."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ns_a")
    ap.add_argument("ns_b")
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--jitter-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    enter(args.ns_a)
    side_a = open_tun("lossy0")
    enter(args.ns_b)
    side_b = open_tun("lossy0")
    other = {side_a: side_b, side_b: side_a}
    rng = random.Random(args.seed)
    low, high = max(0.0, args.delay_ms - args.jitter_ms) / 1000, (args.delay_ms + args.jitter_ms) / 1000
    queue: list[tuple[float, int, int, bytes]] = []  # (due, order, out fd, packet)
    counts = {"forwarded": 0, "dropped": 0}
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    order = 0
    while running:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        try:
            readable, _, _ = select.select([side_a, side_b], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in readable:
            packet = os.read(fd, 65535)
            if rng.random() < args.loss:
                counts["dropped"] += 1
                continue
            heapq.heappush(queue, (now + rng.uniform(low, high), order, other[fd], packet))
            order += 1
        while queue and queue[0][0] <= now:
            _, _, out, packet = heapq.heappop(queue)
            try:
                os.write(out, packet)
                counts["forwarded"] += 1
            except OSError:
                counts["dropped"] += 1
    print(f"forwarded {counts['forwarded']} dropped {counts['dropped']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
