"""The messenger notification hook: one signed HTTP POST per outbound call to a department's citizen.

Phones that cannot show branded-call data (RFC 9796) get a message from a messaging gateway
instead (the city uses a KakaoTalk business message for iPhones). For each outbound call to a
carrier with a known department, :meth:`MessengerHook.notify` queues a JSON body::

    {"id": "...", "department": "교통정책과", "display_name": "서울시 교통정책과",
     "public_number": "+82221332200", "public_number_national": "02-2133-2200",
     "called_number": "01012345678", "time": "2026-11-28T17:02:11+09:00", "purpose": "..."}

posted with ``X-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``. The call
never waits for it: ``notify`` only puts the notice on a bounded queue (full -> dropped and
counted); sender tasks post it with a timeout, and retry connection errors, timeouts, 408, 429
and 5xx with exponential backoff. Off when no ``url`` is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import uuid
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..call.identity import Notice
from ..config import Messenger
from ..routing.numbers import format_national

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("b2bua.messenger")

SEOUL = ZoneInfo("Asia/Seoul")
#: concurrent POSTs: a hanging endpoint holds at most this many notices in flight
SENDERS = 4


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` + hex HMAC-SHA256 (RFC 2104) of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def payload(notice: Notice, purpose: str, now: datetime | None = None) -> dict[str, str]:
    when = (now or datetime.now(SEOUL)).astimezone(SEOUL)
    return {
        "id": uuid.uuid4().hex,
        "department": notice.department,
        "display_name": notice.display_name,
        "public_number": notice.public_number,
        "public_number_national": format_national(notice.public_number),
        "called_number": notice.called,
        "time": when.isoformat(timespec="seconds"),
        "purpose": notice.purpose or purpose,
    }


class MessengerHook:
    """A bounded queue of notices and a few sender tasks on the event loop."""

    def __init__(self, config: Messenger):
        self.config = config
        self.counters: Counter[str] = Counter()  # queued, sent, failed, dropped, retries
        self._queue: asyncio.Queue[dict[str, str]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.url)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def configure(self, config: Messenger) -> None:
        """A reloaded config: the new URL, secret and limits apply to notices sent from now on."""
        self.config = config

    def _secret(self) -> bytes:
        c = self.config
        secret = c.secret if c.secret is not None else os.environ.get(c.secret_env or "", "")
        return secret.encode()

    async def start(self) -> None:
        if self.enabled and not self._secret():
            log.warning("messenger hook on, but its secret is empty (is %s set?)", self.config.secret_env or "secret")
        self._queue = asyncio.Queue(maxsize=self.config.queue_size)
        self._tasks = [asyncio.get_running_loop().create_task(self._sender()) for _ in range(SENDERS)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def notify(self, notice: Notice) -> None:
        """Queue a notice; never blocks, never raises (a full queue drops it, counted)."""
        if not self.enabled or self._queue is None:
            return
        try:
            self._queue.put_nowait(payload(notice, self.config.purpose))
            self.counters["queued"] += 1
        except asyncio.QueueFull:
            self.counters["dropped"] += 1
            log.warning("messenger queue full (%d): notice for %s dropped", self.config.queue_size, notice.department)
        except Exception:  # the call goes on whatever happens here
            self.counters["dropped"] += 1
            log.exception("messenger notice not queued")

    async def _sender(self) -> None:
        assert self._queue is not None
        while True:
            body = await self._queue.get()
            try:
                await self._deliver(body)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["failed"] += 1
                log.exception("messenger notice failed")

    async def _deliver(self, data: dict[str, str]) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        attempt = 0
        while True:
            c = self.config
            if not c.url:
                self.counters["dropped"] += 1  # switched off by a reload while queued
                return
            outcome = await self._post(c, body)
            if outcome == "ok":
                self.counters["sent"] += 1
                return
            if outcome == "final" or attempt >= c.retries:
                self.counters["failed"] += 1
                log.warning("messenger notice %s not delivered after %d attempts", data["id"], attempt + 1)
                return
            self.counters["retries"] += 1
            await asyncio.sleep(min(c.backoff_s * (2 ** attempt), c.backoff_max_s))
            attempt += 1

    async def _post(self, c: Messenger, body: bytes) -> str:
        """One attempt: "ok", "retry" (timeout, connection error, 408/429/5xx) or "final" (other 4xx)."""
        import aiohttp  # only when the hook is on: start-up stays light

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json; charset=utf-8", c.signature_header: sign(self._secret(), body)}
        try:
            async with self._session.post(c.url, data=body, headers=headers,  # type: ignore[arg-type]
                                          timeout=aiohttp.ClientTimeout(total=c.timeout_s)) as resp:
                await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.counters["errors"] += 1
            log.info("messenger POST failed: %s", exc.__class__.__name__)
            return "retry"
        if 200 <= status < 300:
            return "ok"
        self.counters[f"http_{status}"] += 1
        log.info("messenger endpoint answered %d", status)
        return "retry" if status in (408, 429) or status >= 500 else "final"
