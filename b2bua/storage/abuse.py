"""Abuse events and their evidence: one row per event in the CDR database, the utterance's audio beside
the call's recordings as a WAV file with its SHA-256, staff and operators' labels with who and when.

Rows and files are written on one worker thread, in order, never on the event loop: call control only
queues the event. The audio is written with PyAV (the project's audio I/O), 16-bit PCM at 8 kHz.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from media.audiofile import write_wav

from ..config import Config
from ..detection.events import AbuseEvent
from . import retention
from .cdr import open_database, resolve_url
from .recordings import sha256_file
from .schema import migrate
from .tables import abuse_events_table

log = logging.getLogger("b2bua.abuse.events")

def write_clip(path: Path, samples: np.ndarray, rate: int = 8000) -> None:
    """int16 mono samples as a WAV file, written to a temporary name and then renamed (never half a clip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    write_wav(tmp, samples, rate)
    tmp.replace(path)


class AbuseEvents:
    """The events table and the clips' folder (``<dir>/YYYY/MM/DD/<call>-abuse-<event>.wav``)."""

    def __init__(self, engine: Engine, directory: Path):
        self.engine = engine
        self.directory = directory
        migrate(engine)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="abuse-events")
        self.counts: Counter[str] = Counter()

    @classmethod
    def for_config(cls, config: Config) -> AbuseEvents:
        """The store of a configuration's database and recordings folder (for the command line; the running
        process shares the CDR writer's database engine)."""
        base = config.path.parent
        storage = config.process.storage
        return cls(open_database(resolve_url(storage.url, base)), (base / storage.recordings).resolve())

    def record(self, event: AbuseEvent) -> None:
        """Queue an event: its clip is written and hashed, then its row inserted, off the event loop."""
        self._pool.submit(self._write, event, time.time())

    def _write(self, event: AbuseEvent, when: float) -> None:
        clip_path = sha = None
        try:
            if event.clip:
                path = self._clip_path(event.call_id, event.event_id, when)
                write_clip(path, np.frombuffer(event.clip, dtype=np.int16))
                clip_path, sha = str(path), sha256_file(path)
            with self.engine.begin() as db:
                db.execute(insert(abuse_events_table).values(
                    event_id=event.event_id, call_id=event.call_id, sip_call_id=event.sip_call_id,
                    department=event.department, created=when, offset=event.offset, category=event.category,
                    score=event.score, transcript=event.transcript, asr_engine=event.asr_engine,
                    model_version=event.model_version, action=event.action, shout_excess_db=event.shout_excess_db,
                    reported_by=event.reported_by, clip_path=clip_path, clip_sha256=sha, label="unlabelled"))
            self.counts["written"] += 1
        except Exception:  # a full disk or a database outage: logged and counted, the call is unaffected
            self.counts["failures"] += 1
            log.exception("abuse event %s of call %s not stored", event.event_id, event.call_id)

    def replace_clip(self, event_id: str, clip: bytes) -> None:
        """Queue an event's whole clip (2 s after the utterance included): it replaces the file and its
        SHA-256 (after the event's own write: one thread, in order)."""
        self._pool.submit(self._replace, event_id, clip)

    def _replace(self, event_id: str, clip: bytes) -> None:
        t = abuse_events_table
        try:
            with self.engine.begin() as db:
                row = db.execute(select(t.c.call_id, t.c.created, t.c.clip_path)
                                 .where(t.c.event_id == event_id)).first()
                if row is None or not clip:
                    return
                path = Path(row.clip_path) if row.clip_path else self._clip_path(row.call_id, event_id, row.created)
                write_clip(path, np.frombuffer(clip, dtype=np.int16))
                db.execute(update(t).where(t.c.event_id == event_id).values(clip_path=str(path),
                                                                            clip_sha256=sha256_file(path)))
            self.counts["clips_completed"] += 1
        except Exception:
            self.counts["failures"] += 1
            log.exception("abuse event %s: whole clip not stored", event_id)

    def _clip_path(self, call_id: str, event_id: str, when: float) -> Path:
        return self.directory / time.strftime("%Y/%m/%d", time.localtime(when)) / f"{call_id}-abuse-{event_id}.wav"

    def flush(self) -> None:
        """Wait until every queued event is written (tests, shutdown)."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- what operators do ----------------------------------------------------------------------
    def events(self, since: float = 0.0, call_id: str | None = None) -> list[dict[str, Any]]:
        """Rows newest last, from ``since`` (Unix time) on, of one call or all."""
        query = select(abuse_events_table).where(abuse_events_table.c.created >= since)
        if call_id is not None:
            query = query.where(abuse_events_table.c.call_id == call_id)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query.order_by(abuse_events_table.c.created))]

    def event(self, event_id: str) -> dict[str, Any] | None:
        """One event's row (None: no such event)."""
        with self.engine.connect() as db:
            row = db.execute(select(abuse_events_table).where(abuse_events_table.c.event_id == event_id)).first()
        return dict(row._mapping) if row is not None else None

    def label(self, event_id: str, confirmed: bool, who: str) -> bool:
        """A staff member's or operator's verdict on an event; False when there is no such event."""
        with self.engine.begin() as db:
            done = db.execute(update(abuse_events_table).where(abuse_events_table.c.event_id == event_id).values(
                label="confirmed" if confirmed else "rejected", labelled_by=who, labelled_at=time.time()))
        return bool(done.rowcount)

    def purge_all(self, retention_days: Mapping[str, float | None], now: float | None = None) -> int:
        """:meth:`purge` every department by its retention (see :mod:`.retention`); how many went."""
        return retention.purge_all(self.engine, abuse_events_table, retention_days, when="created",
                                   path="clip_path", now=now)

    def purge(self, department: str, older_than_days: float, now: float | None = None) -> int:
        """Delete a department's events (rows and clips) past its retention; how many went."""
        return retention.purge(self.engine, abuse_events_table, department, older_than_days, when="created",
                               path="clip_path", now=now)


__all__ = ["AbuseEvents", "write_clip"]
