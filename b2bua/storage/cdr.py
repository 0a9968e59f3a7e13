"""Call detail records in a real database (SQLite file by default, PostgreSQL by URL).

Records are queued by call control and written in batches from a worker thread,
so a slow disk never stalls signalling.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, insert, select, update
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger("b2bua.cdr")

metadata = MetaData()

_LEG_COLUMNS = ("codec", "packets_received", "packets_sent", "packets_lost", "jitter_ms")

cdr_table = Table(
    "cdr", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False, index=True),
    Column("a_call_id", String(255)),
    Column("b_call_id", String(255)),
    Column("from_uri", String(255)),
    Column("to_uri", String(255)),
    Column("route", String(64)),
    Column("start", Float, nullable=False, index=True),  # Unix time, seconds
    Column("answer", Float),
    Column("end", Float, nullable=False),
    Column("duration", Float),  # answered seconds
    Column("status", Integer),
    Column("end_cause", String(64)),
    Column("ended_by", String(16)),
    *[Column(f"{leg}_{name}", Float if name == "jitter_ms" else Integer)
      for leg in ("a", "b") for name in _LEG_COLUMNS],
)


@dataclass(slots=True)
class CdrRow:
    values: dict[str, Any]


def resolve_url(url: str, base: Path) -> str:
    """Make a relative SQLite path relative to ``base`` (the config directory) and create its folder."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        path = Path(u.database)
        if not path.is_absolute():
            path = (base / path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(u.set(database=str(path)))
    return url


class CdrStore:
    """Batched CDR writer."""

    def __init__(self, url: str, *, batch_seconds: float = 1.0):
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        metadata.create_all(self.engine)
        self._pending: list[dict[str, Any]] = []
        self._amends: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.batch_seconds = batch_seconds
        self.written = 0
        self.failures = 0
        self._task: asyncio.Task | None = None

    def add(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(values)

    def amend(self, call_id: str, values: dict[str, Any]) -> None:
        """Correct a call's row (media figures that arrived after the call ended), written or not."""
        with self._lock:
            for row in reversed(self._pending):
                if row.get("call_id") == call_id:
                    row.update(values)
                    return
            self._amends.append((call_id, values))

    def flush(self) -> int:
        """Write everything queued; returns rows written (blocking: call from a worker thread)."""
        with self._lock:
            batch, self._pending = self._pending, []
            amends, self._amends = self._amends, []
        if not batch and not amends:
            return 0
        try:
            with self.engine.begin() as conn:
                if batch:
                    conn.execute(insert(cdr_table), batch)
                for call_id, values in amends:
                    conn.execute(update(cdr_table).where(cdr_table.c.call_id == call_id).values(**values))
        except Exception:
            self.failures += 1
            log.exception("writing %d CDRs failed; keeping them for the next try", len(batch))
            with self._lock:
                self._pending[:0] = batch[-10_000:]
                self._amends[:0] = amends[-10_000:]
            return 0
        self.written += len(batch)
        return len(batch)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.batch_seconds)
            await asyncio.to_thread(self.flush)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await asyncio.to_thread(self.flush)
        self.engine.dispose()

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(cdr_table).order_by(cdr_table.c.id))]
