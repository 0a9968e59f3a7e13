"""Call history for the operator console: CDRs searched by time, department, number and end cause, and one
call's detail with its recordings and abuse events. Read-only and blocking (call it off the event loop)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from .tables import abuse_events_table, cdr_table, recordings_table

#: the most rows one search returns (a page of history; narrow the search for more)
MAX_ROWS = 500
#: the search form offers the end causes of this many days
CAUSES_DAYS = 90


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What a search asks for; every field optional (None: no condition)."""

    since: float | None = None  # Unix time: calls that started at or after
    until: float | None = None  # ... and before
    department: str | None = None
    number: str | None = None  # digits found in the caller's or the callee's URI
    cause: str | None = None  # the CDR's end cause (normal, no_answer, operator_hangup, ...)
    limit: int = 100


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


class CallHistory:
    def __init__(self, engine: Engine):
        self.engine = engine

    def search(self, q: HistoryQuery) -> list[dict[str, Any]]:
        """The newest calls first that match every condition of ``q`` (at most :data:`MAX_ROWS`)."""
        c = cdr_table.c
        query = select(cdr_table).order_by(c.start.desc(), c.id.desc()).limit(max(1, min(q.limit, MAX_ROWS)))
        if q.since is not None:
            query = query.where(c.start >= q.since)
        if q.until is not None:
            query = query.where(c.start < q.until)
        if q.department:
            query = query.where(c.department == q.department)
        if q.cause:
            query = query.where(c.end_cause == q.cause)
        if q.number and (digits := _digits(q.number)):
            pattern = f"%{digits}%"  # digits only: no LIKE wildcard can come from the form
            query = query.where(or_(c.from_uri.like(pattern), c.to_uri.like(pattern)))
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query)]

    def call(self, cdr_id: int) -> dict[str, Any] | None:
        """One CDR with ``recordings`` and ``abuse_events`` of its call (None: no such row)."""
        with self.engine.connect() as db:
            row = db.execute(select(cdr_table).where(cdr_table.c.id == cdr_id)).first()
            if row is None:
                return None
            out = dict(row._mapping)
            call_id = out["call_id"]
            recs = select(recordings_table).where(recordings_table.c.call_id == call_id).order_by(
                recordings_table.c.start)
            events = select(abuse_events_table).where(abuse_events_table.c.call_id == call_id).order_by(
                abuse_events_table.c.created)
            out["recordings"] = [dict(r._mapping) for r in db.execute(recs)]
            out["abuse_events"] = [dict(r._mapping) for r in db.execute(events)]
            return out

    def causes(self, since: float | None = None) -> list[str]:
        """The end causes of the calls since ``since`` (default: the last 90 days; the search form's choices,
        read through the index on ``start`` rather than the whole table)."""
        since = time.time() - CAUSES_DAYS * 86400 if since is None else since
        with self.engine.connect() as db:
            query = select(cdr_table.c.end_cause).distinct().where(cdr_table.c.start >= since,
                                                                   cdr_table.c.end_cause.is_not(None))
            return sorted(str(r[0]) for r in db.execute(query))


__all__ = ["MAX_ROWS", "CallHistory", "HistoryQuery"]
