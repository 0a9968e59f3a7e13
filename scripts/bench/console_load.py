#!/usr/bin/env python3
"""The load of people watching the operator console, for the benchmarks (``console.py``, ``media.py --console``).

Each of ``--viewers`` logs in (as an auditor, who may see every page) and, for ``--seconds``, does what an
open browser tab does, and a little more: keeps the live calls' event stream open (one JSON snapshot a
second), polls ``/api/system`` every 2 s (the system page's charts), and reloads ``/live``, ``/history``
and ``/departments`` every 5 s. Prints one JSON line: requests made, failures, stream events received.

    python scripts/bench/console_load.py --address 127.0.0.1:9090 --user park --password ... --viewers 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import aiohttp


async def viewer(base: str, user: str, password: str, until: float, counts: dict[str, int]) -> None:
    # unsafe: keep cookies from an IP address (the admin listener on 127.0.0.1)
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post("/api/login", json={"name": user, "password": password}) as resp:
            if resp.status != 200:
                counts["login_failures"] += 1
                return

        async def stream() -> None:
            async with http.get("/api/calls/stream", timeout=aiohttp.ClientTimeout(total=None)) as resp:
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        counts["stream_events"] += 1
                    if time.monotonic() >= until:
                        return

        async def every(period: float, paths: tuple[str, ...]) -> None:
            while time.monotonic() < until:
                for path in paths:
                    try:
                        async with http.get(path, allow_redirects=False) as resp:
                            await resp.read()
                            counts["requests"] += 1
                            counts["failures"] += resp.status != 200
                    except aiohttp.ClientError:
                        counts["failures"] += 1
                await asyncio.sleep(period)

        only = os.environ.get("CONSOLE_LOAD_ONLY", "stream,system,pages").split(",")
        tasks = [asyncio.create_task(c) for name, c in (
            ("stream", stream()), ("system", every(2.0, ("/api/system",))),
            ("pages", every(5.0, ("/live", "/history", "/departments")))) if name in only or c.close()]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=until - time.monotonic() + 5)
        except (TimeoutError, aiohttp.ClientError):
            counts["failures"] += 1
        finally:
            for t in tasks:
                t.cancel()


async def main_async(args: argparse.Namespace) -> dict[str, int]:
    counts = {"requests": 0, "failures": 0, "stream_events": 0, "login_failures": 0}
    until = time.monotonic() + args.seconds
    await asyncio.gather(*(viewer(f"http://{args.address}", args.user, args.password, until, counts)
                           for _ in range(args.viewers)))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", required=True, help="HOST:PORT of the admin listener")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--viewers", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    counts = asyncio.run(main_async(args))
    print(json.dumps(counts), flush=True)
    return 0 if counts["login_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
