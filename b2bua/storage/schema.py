"""The database schema, brought up to date by Alembic migrations (``b2bua/storage/migrations``) before any
store uses it: CDRs, the calls in progress, the recordings index and abuse events, on SQLite or PostgreSQL.

A database made before migrations existed (its tables from ``metadata.create_all``, no ``alembic_version``)
is taken as the first revision once its missing tables are created, then upgraded like any other.
A new table or column is a new revision in ``migrations/versions`` (``alembic revision`` with
``script_location`` pointing there), never an edit of an old one.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from .tables import metadata

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
#: the tables of the baseline revision (a database older than migrations has some of them)
BASELINE_TABLES = ("cdr", "live_calls", "recordings", "abuse_events")
_done: set[int] = set()
_lock = threading.Lock()


def _config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Upgrade the database of ``engine`` to the newest revision (once per engine and process)."""
    with _lock:
        if id(engine) in _done:
            return
        cfg = _config()
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            cfg.attributes["connection"] = conn
            if tables and "alembic_version" not in tables:  # made by create_all before migrations
                metadata.create_all(conn, tables=[metadata.tables[t] for t in BASELINE_TABLES])
                command.stamp(cfg, BASELINE)
            command.upgrade(cfg, "head")
        _done.add(id(engine))


def revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


__all__ = ["migrate", "revision"]
