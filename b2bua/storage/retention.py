"""Retention: a department's rows (and the files they name) older than its number of days go.

Shared by the recordings index and the abuse evidence store. Rows of a department no longer configured keep
the longest retention configured, so renaming a department never loses its history early; a department
whose retention is None keeps everything.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine


def purge(engine: Engine, table: Table, department: str | None, older_than_days: float, *, when: str,
          path: str, now: float | None = None) -> int:
    """Delete ``department``'s rows whose ``when`` column (Unix time) is older than the days given, and
    their files (column ``path``); how many went."""
    cutoff = (time.time() if now is None else now) - older_than_days * 86400
    t = table
    with engine.begin() as db:
        old = db.execute(select(t.c.id, t.c[path]).where(t.c.department == department, t.c[when] < cutoff)).all()
        for _, file in old:
            if file:
                Path(file).unlink(missing_ok=True)
        if old:
            db.execute(t.delete().where(t.c.id.in_([row_id for row_id, _ in old])))
    return len(old)


def purge_all(engine: Engine, table: Table, retention_days: Mapping[str, float | None], *, when: str, path: str,
              now: float | None = None) -> int:
    """:func:`purge` every department of the table by its retention; how many rows went."""
    kept = [d for d in retention_days.values() if d is not None]
    if any(d is None for d in retention_days.values()):
        longest: float | None = None  # someone keeps everything: so do the unconfigured
    else:
        longest = max(kept, default=None)
    with engine.connect() as db:
        departments = [row[0] for row in db.execute(select(table.c.department).distinct())]
    total = 0
    for d in departments:
        days = retention_days[d] if d in retention_days else longest
        if days is not None:
            total += purge(engine, table, d, days, when=when, path=path, now=now)
    return total


__all__ = ["purge", "purge_all"]
