"""Call detail records in a real database (SQLite file by default, PostgreSQL by URL).

Records are queued by call control and written in batches from a worker thread,
so a slow disk never stalls signalling.

The calls in progress are kept in ``live_calls`` too (by node: several B2BUAs may share one database),
with the moment this node was last seen alive (updated with every batch, once a second): after a crash
the next start (:meth:`CdrStore.recover`) writes their CDRs with cause ``process_restart``, ending when
the node was last seen, and forgets them. A call that starts and ends within one batch is never written
there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, delete, event, insert, select, update
from sqlalchemy.engine import Connection, Engine, make_url

from .schema import migrate
from .tables import LIVE_COLUMNS, cdr_table, live_calls_table

log = logging.getLogger("b2bua.cdr")

@dataclass(slots=True)
class CdrRow:
    values: dict[str, Any]


def open_database(url: str) -> Engine:
    """The SQLAlchemy engine of ``storage.url``. SQLite runs in WAL mode with a busy timeout: readers
    (``b2bua abuse events``, an operator's sqlite3) never see "database is locked" while the writer thread
    commits, and the writer waits for them instead of failing."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            if engine.url.database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
    return engine


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


#: what a CDR row has (all but the row id)
CDR_COLUMNS = tuple(c.name for c in cdr_table.columns if c.name != "id")


def _storable(values: dict[str, Any]) -> dict[str, Any]:
    """Text as the database takes it: the parser keeps bytes that are not UTF-8 as surrogates (a peer's
    URI may hold any byte), which no driver encodes; they become U+FFFD. Without this one such call's row
    failed its whole batch, every second, for good (found by scripts/bench/fuzz.py)."""
    return {k: v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(v, str) else v
            for k, v in values.items()}


class _BulkInsert:
    """An INSERT of ``columns`` into ``table``, compiled once for the engine's dialect and run with the
    driver's own executemany.

    Hand-made because SQLAlchemy's ``conn.execute(insert(t), rows)`` builds and type-processes a parameter
    dict per row on every batch: at 300 calls/s that was 6 % of the process's CPU (py-spy, on the CDR
    thread), a third of what Kamailio spends on a whole call. Every row gets every column (absent = NULL):
    an executemany takes its columns from the first row, and a call refused before media (no media
    columns) once dropped the next calls' figures."""

    def __init__(self, engine: Engine, table: Table, columns: tuple[str, ...]):
        compiled = insert(table).compile(dialect=engine.dialect, column_keys=list(columns))
        self.sql = str(compiled)
        #: positional drivers (SQLite's qmark) take tuples in this order, named ones (psycopg) dicts
        self.order: tuple[str, ...] | None = tuple(compiled.positiontup or ()) if compiled.positional else None
        self.columns = columns

    def __call__(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.order is not None:
            order = self.order
            conn.exec_driver_sql(self.sql, [tuple(row.get(c) for c in order) for row in rows])
        else:
            cols = self.columns
            conn.exec_driver_sql(self.sql, [{c: row.get(c) for c in cols} for row in rows])


def _amend(conn: Connection, call_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(cdr_table).where(cdr_table.c.call_id == call_id).values(**values))


class CdrStore:
    """Batched CDR writer."""

    def __init__(self, url: str, *, batch_seconds: float = 1.0, node: str = ""):
        self.url = url
        self.engine: Engine = open_database(url)
        migrate(self.engine)
        self._insert_cdrs = _BulkInsert(self.engine, cdr_table, CDR_COLUMNS)
        self._insert_live = _BulkInsert(self.engine, live_calls_table, (*LIVE_COLUMNS, "node", "seen"))
        self.node = node or socket.gethostname()
        self._pending: list[dict[str, Any]] = []
        self._amends: list[tuple[str, dict[str, Any]]] = []
        #: live_calls changes not written yet: rows to write (new or answered), calls to forget
        self._live: dict[str, dict[str, Any]] = {}
        self._gone: set[str] = set()
        self._written_live: set[str] = set()  # calls with a live_calls row
        self._lock = threading.Lock()
        self.batch_seconds = batch_seconds
        self.written = 0
        self.failures = 0
        #: CDRs and amendments the database refused on their own while others were written (dropped, logged)
        self.dropped = 0
        self._task: asyncio.Task | None = None

    def add(self, values: dict[str, Any]) -> None:
        values = _storable(values)
        with self._lock:
            self._pending.append(values)

    def amend(self, call_id: str, values: dict[str, Any]) -> None:
        """Correct a call's row (media figures that arrived after the call ended), written or not.

        Nothing to correct is nothing queued: a session that never had a leg (a call refused for want of
        media ports) reports empty figures, and an UPDATE without a column is no SQL at all (it failed the
        whole batch, at every retry)."""
        if not values:
            return
        with self._lock:
            for row in reversed(self._pending):
                if row.get("call_id") == call_id:
                    row.update(values)
                    return
            self._amends.append((call_id, values))

    def live(self, values: dict[str, Any]) -> None:
        """A call in progress (new, or answered since): its row in ``live_calls`` at the next batch."""
        row = _storable({k: values.get(k) for k in LIVE_COLUMNS})
        with self._lock:
            self._live[str(row["call_id"])] = row

    def gone(self, call_id: str) -> None:
        """The call ended (its CDR is queued): its ``live_calls`` row goes."""
        with self._lock:
            if self._live.pop(call_id, None) is None or call_id in self._written_live:
                self._gone.add(call_id)

    def _one_by_one(self, batch: list[dict[str, Any]], amends: list[tuple[str, dict[str, Any]]]
                    ) -> tuple[int, list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
        """After a failed batch: each CDR and amendment in a transaction of its own. One the database
        refuses while others go in is what broke the batch (a value it will never take): it is logged and
        dropped, or it would fail every later batch too (twice found so, by fuzzing and by a soak). When
        the first few all fail, the database itself is the trouble: everything is kept for the next try.
        Returns the CDRs written, and the CDRs and amendments to keep."""
        items: list[tuple[dict[str, Any] | None, tuple[str, dict[str, Any]] | None]] = \
            [(row, None) for row in batch] + [(None, a) for a in amends]
        written = progress = 0
        refused: list[tuple[dict[str, Any] | None, tuple[str, dict[str, Any]] | None]] = []
        for i, (row, amend) in enumerate(items):
            if progress == 0 and len(refused) >= 3:  # nothing goes in: keep it all, the rest unread
                refused += items[i:]
                break
            try:
                with self.engine.begin() as conn:
                    if row is not None:
                        self._insert_cdrs(conn, [row])
                    elif amend is not None:
                        _amend(conn, *amend)
            except Exception:
                refused.append((row, amend))
                continue
            progress += 1
            written += row is not None
        if progress == 0:
            return 0, [r for r, _ in refused if r is not None], [a for _, a in refused if a is not None]
        for row, amend in refused:
            self.dropped += 1
            log.error("the database refuses the %s of call %s on its own: dropped",
                      "CDR" if row is not None else "media figures",
                      row.get("call_id") if row is not None else amend[0] if amend is not None else "?")
        return written, [], []

    def flush(self, now: float | None = None) -> int:
        """Write everything queued; returns CDR rows written (blocking: call from a worker thread)."""
        now = time.time() if now is None else now
        with self._lock:
            batch, self._pending = self._pending, []
            amends, self._amends = self._amends, []
            live, self._live = self._live, {}
            gone, self._gone = self._gone, set()
        t = live_calls_table
        try:
            with self.engine.begin() as conn:
                if batch:
                    self._insert_cdrs(conn, batch)
                for call_id, values in amends:
                    _amend(conn, call_id, values)
                if gone:
                    conn.execute(delete(t).where(t.c.call_id.in_(list(gone))))
                if live:
                    conn.execute(delete(t).where(t.c.call_id.in_(list(live))))  # new, or answered since
                    self._insert_live(conn, [{**row, "node": self.node, "seen": now} for row in live.values()])
                conn.execute(update(t).where(t.c.node == self.node).values(seen=now))
        except Exception:
            self.failures += 1
            log.exception("writing %d CDRs failed; writing them one by one", len(batch))
            written, batch, amends = self._one_by_one(batch, amends)
            self.written += written
            with self._lock:
                self._pending[:0] = batch[-10_000:]
                self._amends[:0] = amends[-10_000:]
                for call_id, row in live.items():
                    if call_id not in self._gone:
                        self._live.setdefault(call_id, row)
                self._gone |= gone
            return written
        with self._lock:
            self._written_live |= set(live)
            self._written_live -= gone
        self.written += len(batch)
        return len(batch)

    def recover(self) -> int:
        """The CDRs of this node's calls a crash cut short (cause ``process_restart``, ended when the node
        was last seen); their ``live_calls`` rows go. How many (call at start, before new calls)."""
        t = live_calls_table
        with self.engine.begin() as conn:
            left = [dict(r._mapping) for r in conn.execute(select(t).where(t.c.node == self.node))]
            if not left:
                return 0
            rows = [{**{k: r[k] for k in LIVE_COLUMNS}, "end": r["seen"],
                     "duration": r["seen"] - r["answer"] if r["answer"] is not None else 0.0,
                     "status": 200 if r["answer"] is not None else 0, "end_cause": "process_restart",
                     "ended_by": "b2bua"} for r in left]
            conn.execute(insert(cdr_table), rows)
            conn.execute(delete(t).where(t.c.node == self.node))
        log.warning("%d call(s) in progress when the last run stopped: CDRs written (process_restart)", len(rows))
        return len(rows)

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

