"""Stereo call recording written off the media path, playable at every moment.

:class:`RecordingWriter` owns one thread and a queue bounded by how far behind the thread may fall: the
tick hands it interleaved
stereo frames (caller left, what the caller hears right) and never waits. Every half second each
open WAV file gets its RIFF and data sizes rewritten and flushed, so a killed process leaves a file
that standard readers open and that lasts to within a second of the kill (with the engine's 0.3 s
jitter delay and 0.1 s batches); :func:`repair` fixes the sizes of
such a file from its length at the next start.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("media.recorder")

RATE = 8000
CHANNELS = 2
WIDTH = 2
HEADER = 44


def wav_header(data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header for ``data_bytes`` of 8 kHz 16-bit stereo."""
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * CHANNELS * WIDTH, CHANNELS * WIDTH,
                                    8 * WIDTH)
            + b"data" + struct.pack("<I", data_bytes))


def repair(path: Path) -> int:
    """Rewrite the header sizes of a WAV file cut short (a crash); returns its audio bytes."""
    size = path.stat().st_size
    data = max(0, size - HEADER)
    data -= data % (CHANNELS * WIDTH)
    with open(path, "r+b") as f:
        f.write(wav_header(data))
        f.truncate(HEADER + data)
    return data


@dataclass
class Finished:
    """A recording closed: its path, audio seconds and bytes, or the error that stopped it."""

    key: str
    path: str
    seconds: float
    size: int
    error: str | None = None


class _Open:
    __slots__ = ("path", "file", "data", "synced", "error")

    def __init__(self, path: Path):
        self.path = path
        self.file = None
        self.data = 0
        self.synced = 0.0
        self.error: str | None = None


class RecordingWriter:
    """The writer thread. ``put_many`` never blocks: once the writer is more than ``max_lag`` seconds
    behind (a stalled disk; the engine allows 10 s) new frames are dropped, counted and logged. The
    bound is the writer's lag, not a number of entries, so many calls ending at once (each handing over
    the last of its audio) never lose frames to it."""

    def __init__(self, on_finished: Callable[[Finished], None] | None = None, max_lag: float = 10.0,
                 sync_every: float = 0.5):
        self.on_finished = on_finished
        self.sync_every = sync_every
        self._q: queue.Queue = queue.Queue()  # control entries always fit; data is bounded below
        self.max_lag = max_lag
        #: when the entry the writer is on (or was last on) was queued; None once it waited for work
        self._behind_since: float | None = None
        self._warned = -1e9
        self.dropped = 0
        self.failures = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    def open(self, key: str, path: str) -> None:
        self._q.put(("open", key, path, time.monotonic()))

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Frames of every recorded call in one queue entry (one lock, not one per call)."""
        now = time.monotonic()
        behind = self._behind_since
        if behind is not None and now - behind > self.max_lag:
            self.dropped += len(items)
            if now - self._warned >= 10.0:  # a stalled disk: say so, but not 50 times a second
                self._warned = now
                log.warning("recording disk too slow: %d frames dropped so far (calls go on)", self.dropped)
            return
        self._q.put_nowait(("batch", "", items, now))

    def close(self, key: str) -> None:
        self._q.put(("close", key, None, time.monotonic()))

    def stop(self) -> None:
        self._q.put(("stop", "", None, time.monotonic()))
        self._thread.join(10)

    def _run(self) -> None:
        files: dict[str, _Open] = {}
        while True:
            try:
                if not self._step(files):
                    return
            except Exception:  # the writer must outlive any one file's trouble
                log.exception("recording writer")

    def _step(self, files: dict[str, "_Open"]) -> bool:
        """One queue entry (or a timeout); False once stopped."""
        try:
            kind, key, arg, queued = self._q.get(timeout=self.sync_every)
            self._behind_since = queued  # how far behind the writer is while it is on this entry
        except queue.Empty:
            kind, key, arg = "tick", "", None
            self._behind_since = None
        now = time.monotonic()
        if kind == "open":
            rec = files[key] = _Open(Path(arg))
            try:
                rec.path.parent.mkdir(parents=True, exist_ok=True)
                rec.file = open(rec.path, "wb")
                rec.file.write(wav_header(0))
                rec.synced = now
            except OSError as exc:
                self._fail(rec, exc)
        elif kind == "batch":
            for k, frames in arg:
                rec = files.get(k)
                if rec is not None and rec.file is not None:
                    try:
                        rec.file.write(frames)
                        rec.data += len(frames)
                    except OSError as exc:
                        self._fail(rec, exc)
        elif kind in ("close", "stop"):
            for k in ([key] if kind == "close" else list(files)):
                rec = files.pop(k, None)
                if rec is not None:
                    self._finish(k, rec)
            if kind == "stop":
                return False
        for rec in files.values():  # keep every file playable: sizes rewritten every sync_every
            if rec.file is not None and now - rec.synced >= self.sync_every:
                self._sync(rec)
                rec.synced = now
        return True

    def _sync(self, rec: _Open) -> None:
        """The audio so far to the kernel (a killed process loses none of it), then the header's sizes
        rewritten in place (``pwrite``: the file position stays at the end)."""
        try:
            assert rec.file is not None
            rec.file.flush()
            os.pwrite(rec.file.fileno(), wav_header(rec.data), 0)
        except OSError as exc:
            self._fail(rec, exc)

    def _fail(self, rec: _Open, exc: OSError) -> None:
        self.failures += 1
        rec.error = str(exc)
        log.error("recording %s failed: %s (the call goes on)", rec.path, exc)
        if rec.file is not None:
            try:
                rec.file.close()
            except OSError:
                pass
        rec.file = None

    def _finish(self, key: str, rec: _Open) -> None:
        if rec.file is not None:
            self._sync(rec)
        if rec.file is not None:  # (a failed sync has closed it)
            try:
                rec.file.close()
            except OSError as exc:
                self._fail(rec, exc)
        if rec.error is None:
            self.written += 1
        if self.on_finished is not None:
            self.on_finished(Finished(key, str(rec.path), rec.data / (RATE * CHANNELS * WIDTH),
                                      HEADER + rec.data if rec.error is None else 0, rec.error))

