"""The index of call recordings: one row per file, in the CDR database.

A row is written when a recording starts (status ``recording``) and completed when the media
engine reports the file closed: its end, audio duration, size and the SHA-256 of the final file
(status ``complete``, or ``failed`` with the error when the disk refused it). After a crash,
:meth:`RecordingIndex.recover` repairs every file still marked ``recording`` and every WAV file in
the directory that no row knows, hashes it and marks it ``repaired``.

All database and file work runs on one worker thread, in order, never on the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from ..routing.schedule import SEOUL
from . import retention
from .schema import migrate
from .tables import recordings_table

log = logging.getLogger("b2bua.recordings")

#: repairs a recording cut short and returns its audio seconds and final size (media.recorder.repair)
Repair = Callable[[Path], tuple[float, int]]

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class RecordingIndex:
    """Rows for recordings; also names their files (``<dir>/YYYY/MM/DD/<call>-<n>.wav``)."""

    def __init__(self, engine: Engine, directory: Path, *, fmt: str = "wav",
                 convert: Callable[[str, str], str] | None = None):
        self.engine = engine
        self.directory = directory
        #: post-call conversion: ``convert(wav_path, fmt) -> new path``, run in a worker process
        self.fmt = fmt
        self.convert = convert
        self._converter: ProcessPoolExecutor | None = None
        migrate(engine)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="recording-index")
        self._stops: dict[str, float] = {}
        self.counts: Counter[str] = Counter()

    # -- what call control says ------------------------------------------------------------
    def path_for(self, call_id: str, segment: int) -> str:
        """``<dir>/YYYY/MM/DD/<call>-<n>.wav``, the date in Seoul time (the day the city's staff know)."""
        return str(self._day_folder(datetime.now(SEOUL)) / f"{call_id}-{segment}.wav")

    def _day_folder(self, when: datetime) -> Path:
        return self.directory / when.strftime("%Y/%m/%d")

    def purge_all(self, retention_days: Mapping[str, float | None], now: float | None = None) -> int:
        """Recordings (rows and files) past their department's ``recording_retention_days``; how many went."""
        n = retention.purge_all(self.engine, recordings_table, retention_days, when="start", path="path", now=now)
        self.counts["purged"] += n
        return n

    def started(self, rec: Any) -> None:
        self.counts["started"] += 1
        row = {"call_id": rec.call_id, "department": rec.department, "direction": rec.direction,
               "reason": rec.reason, "path": rec.path, "start": rec.start, "status": "recording"}
        self._submit(self._insert, row)

    def stopped(self, path: str, when: float) -> None:
        self._stops[path] = when

    def finished(self, path: str, seconds: float, size: int, error: str | None) -> Future:
        """The engine closed the file (``RecordingDone``): hash it and complete its row."""
        end = self._stops.pop(path, time.time())
        return self._submit(self._complete, path, end, seconds, error)

    # -- worker thread ---------------------------------------------------------------------
    def _submit(self, fn: Callable[..., None], *args: Any) -> Future:
        fut = self._pool.submit(fn, *args)
        fut.add_done_callback(self._report)
        return fut

    def _report(self, fut: Future) -> None:
        exc = fut.exception()
        if exc is not None:
            self.counts["index_errors"] += 1
            log.error("recording index: %s", exc)

    def _insert(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(recordings_table), [row])

    def _complete(self, path: str, end: float, seconds: float, error: str | None) -> None:
        p = Path(path)
        values: dict[str, Any] = {"end": end, "duration": round(seconds, 3)}
        if error is None and p.is_file():
            values["format"] = "wav"
            if self.fmt != "wav" and self.convert is not None:
                try:
                    if self._converter is None:
                        self._converter = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                    p = Path(self._converter.submit(self.convert, path, self.fmt).result(timeout=600))
                    values.update(path=str(p), format=self.fmt)
                except Exception as exc:  # the WAV stays, indexed as it is
                    self.counts["conversion_failures"] += 1
                    log.error("converting %s to %s failed: %s; keeping the WAV", path, self.fmt, exc)
            values.update(size=p.stat().st_size, sha256=sha256_file(p), status="complete")
            self.counts["complete"] += 1
        else:
            values.update(status="failed", error=(error or "file missing")[:255], size=0)
            self.counts["failed"] += 1
        with self.engine.begin() as conn:
            found = conn.execute(update(recordings_table).where(recordings_table.c.path == path).values(**values))
            if found.rowcount == 0:  # the start row was lost: keep the file findable anyway
                conn.execute(insert(recordings_table), [{"call_id": p.stem.rsplit("-", 1)[0], "path": path,
                                                         "reason": "unknown", "start": end - seconds, **values}])

    # -- start-up ----------------------------------------------------------------------------
    def recover(self, repair: Repair) -> int:
        """Repair and index what a crash left behind (blocking: run before serving calls).

        Only the files that can have been cut short are looked at: those whose rows still say
        ``recording``, and the unindexed WAV files of the folders they are in and of today's and
        yesterday's folders (a file is named when its recording starts, its row follows within
        moments): a start-up never walks years of recordings.
        """
        fixed = 0
        t = recordings_table
        with self.engine.begin() as conn:
            open_rows = {r.path: r for r in conn.execute(select(t).where(t.c.status == "recording"))}
        today = datetime.now(SEOUL)
        folders = {Path(p).parent for p in open_rows} | {self._day_folder(today - timedelta(days=n)) for n in (0, 1)}
        found = [p for folder in sorted(folders) if folder.is_dir() for p in sorted(folder.glob("*.wav"))]
        with self.engine.begin() as conn:
            indexed = {r.path for r in conn.execute(select(t.c.path).where(t.c.path.in_([str(p) for p in found])))}
        with self.engine.begin() as conn:
            for path, row in open_rows.items():
                values = self._repaired(Path(path), repair)
                values.setdefault("end", row.start + values.get("duration", 0.0))
                values["format"] = "wav"
                conn.execute(update(recordings_table).where(recordings_table.c.id == row.id).values(**values))
                fixed += 1
            for p in found:
                if str(p) in indexed or str(p) in open_rows:
                    continue
                values = self._repaired(p, repair)
                start = p.stat().st_mtime - values.get("duration", 0.0)
                conn.execute(insert(recordings_table), [{
                    "call_id": p.stem.rsplit("-", 1)[0], "path": str(p), "reason": "unknown", "start": start,
                    "end": p.stat().st_mtime, "format": "wav", **values}])
                fixed += 1
        self.counts["repaired"] += fixed
        if fixed:
            log.warning("repaired and indexed %d recordings left by an unclean stop", fixed)
        return fixed

    @staticmethod
    def _repaired(path: Path, repair: Repair) -> dict[str, Any]:
        if not path.is_file():
            return {"status": "failed", "error": "file missing after an unclean stop", "size": 0}
        try:
            seconds, size = repair(path)
        except OSError as exc:
            return {"status": "failed", "error": f"repair failed: {exc}"[:255], "size": 0}
        return {"status": "repaired", "duration": round(seconds, 3), "size": size, "sha256": sha256_file(path)}

    def rows(self, call_id: str | None = None, row_id: int | None = None) -> list[dict[str, Any]]:
        """Rows oldest first: all, a call's, or one by id."""
        t = recordings_table
        query = select(t).order_by(t.c.id)
        if call_id is not None:
            query = query.where(t.c.call_id == call_id)
        if row_id is not None:
            query = query.where(t.c.id == row_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._converter is not None:
            self._converter.shutdown(wait=True)
