"""The messenger notification hook against real HTTP servers on 127.0.0.1 (aiohttp, http.server)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiohttp import web
from harness import free_port, sipp_background

from b2bua.call.identity import Notice
from b2bua.config import Messenger
from b2bua.notify.messenger import MessengerHook, sign

SECRET = "s3cret-hook-key"
NOTICE = Notice("교통정책과", "서울시 교통정책과", "+82221332200", "01012345678", "교통 민원 회신")


def _verify(body: bytes, signature: str) -> bool:
    return hmac.compare_digest(signature, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())


async def _serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/notify", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/notify"


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _notify_once(handler: Callable[[web.Request], Awaitable[web.StreamResponse]], done: Callable[[MessengerHook], bool],
                 **settings: object) -> MessengerHook:
    """Serve ``handler`` on loopback, send NOTICE through a hook with ``settings``, wait for ``done``."""
    async def main() -> MessengerHook:
        runner, url = await _serve(handler)
        hook = MessengerHook(Messenger(url=url, secret=SECRET, **settings))
        await hook.start()
        try:
            hook.notify(NOTICE)
            await _until(lambda: done(hook))
        finally:
            await hook.close()
            await runner.cleanup()
        return hook

    return asyncio.run(main())


def test_notice_is_posted_as_signed_json() -> None:
    got: list[tuple[bytes, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        got.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    hook = _notify_once(handler, lambda h: h.counters["sent"] == 1)
    assert len(got) == 1
    body, headers = got[0]
    assert _verify(body, headers["X-Signature"])
    assert not _verify(body + b" ", headers["X-Signature"])
    assert headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert {k: data[k] for k in ("department", "display_name", "public_number", "public_number_national",
                                 "called_number", "purpose")} == {
        "department": "교통정책과", "display_name": "서울시 교통정책과", "public_number": "+82221332200",
        "public_number_national": "02-2133-2200", "called_number": "01012345678", "purpose": "교통 민원 회신"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", data["time"]) and len(data["id"]) == 32
    assert hook.counters["failed"] == hook.counters["dropped"] == 0


def test_a_500_is_retried_with_the_same_notice() -> None:
    got: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=500 if len(got) == 1 else 200)

    hook = _notify_once(handler, lambda h: h.counters["sent"] == 1, retries=3, backoff_s=0.05)
    assert len(got) == 2 and got[0] == got[1]  # the same id, time and signature basis
    assert hook.counters["retries"] == 1 and hook.counters["http_500"] == 1 and hook.counters["failed"] == 0


def test_a_4xx_is_not_retried_and_is_counted() -> None:
    got: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=401)

    hook = _notify_once(handler, lambda h: h.counters["failed"] == 1, retries=3, backoff_s=0.01)
    assert len(got) == 1 and hook.counters["sent"] == 0 and hook.counters["http_401"] == 1


def test_hanging_endpoint_times_out_and_the_queue_stays_bounded() -> None:
    """Nothing answers: each attempt ends at the timeout, retried, then counted failed; notices
    beyond the queue's size are dropped and counted instead of piling up."""
    release = asyncio.Event()
    seen: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.read())
        await release.wait()
        return web.Response(status=200)

    async def main() -> MessengerHook:
        runner, url = await _serve(handler)
        hook = MessengerHook(Messenger(url=url, secret=SECRET, timeout_s=0.2, retries=1, backoff_s=0.01,
                                       queue_size=2))
        await hook.start()
        try:
            for _ in range(10):
                hook.notify(NOTICE)  # returns at once: nothing is sent from here
            assert hook.counters["queued"] == 2 and hook.counters["dropped"] == 8
            await _until(lambda: hook.counters["failed"] == 2)
        finally:
            release.set()
            await hook.close()
            await runner.cleanup()
        return hook

    hook = asyncio.run(main())
    assert len(seen) == 4  # two notices, two attempts each
    assert hook.counters["errors"] == 4 and hook.counters["retries"] == 2 and hook.counters["sent"] == 0


def test_off_without_an_endpoint() -> None:
    async def main() -> MessengerHook:
        hook = MessengerHook(Messenger())
        await hook.start()
        hook.notify(NOTICE)
        await hook.close()
        return hook

    hook = asyncio.run(main())
    assert not hook.enabled and sum(hook.counters.values()) == 0


def test_signature_is_hmac_sha256_of_the_body() -> None:
    assert sign(b"key", b"{}") == "sha256=" + hmac.new(b"key", b"{}", hashlib.sha256).hexdigest()


# -- end to end: the B2BUA process, a SIPp call, an endpoint that hangs ----------------------
class _Hanging(BaseHTTPRequestHandler):
    bodies: list[tuple[bytes, str]] = []
    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).bodies.append((body, self.headers.get("X-Signature", "")))
        type(self).release.wait(10)  # hangs past the hook's timeout
        try:
            self.send_response(200)
            self.end_headers()
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.usefixtures("sipp_installed")
def test_call_completes_while_the_endpoint_hangs(tmp_path: Path) -> None:
    import yaml
    from test_e2e_caller_id import CARRIER, CARRIER_B, PBX, _config, _pbx_call, _start

    http_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", http_port), _Hanging)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cp, bp, pp = free_port(CARRIER), free_port(CARRIER_B), free_port(PBX)
    metrics = free_port()
    try:
        with sipp_background(["-sn", "uas", "-i", CARRIER, "-p", str(cp)], tmp_path):
            cfg = _config(tmp_path, cp, bp, pp, messenger={
                "url": f"http://127.0.0.1:{http_port}/notify", "secret": SECRET, "timeout_s": 0.3, "retries": 1,
                "backoff_s": 0.1})
            process = yaml.safe_load(cfg.read_text())
            process["metrics"] = {"address": f"127.0.0.1:{metrics}"}
            cfg.write_text(yaml.safe_dump(process, allow_unicode=True))
            proc, port = _start(tmp_path, cfg)
            try:
                _pbx_call(tmp_path, port, "2201", "01012345678", calls=2)  # fails the test if a call fails
                proc.settle()
                deadline = time.monotonic() + 15
                body = ""
                while time.monotonic() < deadline:
                    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
                    if 'b2bua_messenger_notices_total{result="failed"} 2.0' in body:
                        break
                    time.sleep(0.2)
            finally:
                proc.stop()
    finally:
        _Hanging.release.set()
        server.shutdown()
        server.server_close()
    assert proc.log().count("end status=200") == 2
    assert 'b2bua_messenger_notices_total{result="failed"} 2.0' in body, body[-1500:]
    assert 'b2bua_messenger_notices_total{result="sent"} 0.0' in body
    assert len(_Hanging.bodies) == 4  # two calls, two attempts each
    data, signature = _Hanging.bodies[0]
    assert _verify(data, signature)
    notice = json.loads(data)
    assert (notice["department"], notice["public_number"], notice["called_number"]) == (
        "교통정책과", "+82221332200", "01012345678")
    assert notice["purpose"] == "교통 민원 회신"
