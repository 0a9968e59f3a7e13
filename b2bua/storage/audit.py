"""The audit trail of the admin API: one row per login, hangup, label, playback, download, drain, reload
(who, with which role, what, on what, from where, when). Rows are written at once (they are few), on a
worker thread, never on the event loop; they are themselves readable by auditors."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from .schema import migrate
from .tables import audit_table

log = logging.getLogger("b2bua.audit")


class AuditLog:
    def __init__(self, engine: Engine):
        self.engine = engine
        migrate(engine)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="audit")

    def record(self, user: str, role: str | None, action: str, target: str | None = None, remote: str | None = None,
               detail: str | None = None) -> None:
        row = {"at": time.time(), "user": user[:128], "role": role, "action": action, "target": (target or "")[:255],
               "remote": (remote or "")[:64], "detail": (detail or "")[:255]}
        self._pool.submit(self._write, row)

    def _write(self, row: dict[str, Any]) -> None:
        try:
            with self.engine.begin() as db:
                db.execute(insert(audit_table).values(**row))
        except Exception:  # logged loudly: an audit row must not be lost quietly
            log.exception("audit row not written: %s", row)

    def flush(self) -> None:
        self._pool.submit(lambda: None).result()

    def rows(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The rows from ``since`` on, oldest first; after every row recorded before the call (same thread,
        in order: an auditor sees the access they just made). Blocking: call off the event loop."""
        return self._pool.submit(self._rows, since).result()

    def _rows(self, since: float) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            query = select(audit_table).where(audit_table.c.at >= since).order_by(audit_table.c.id)
            return [dict(r._mapping) for r in db.execute(query)]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


__all__ = ["AuditLog"]
