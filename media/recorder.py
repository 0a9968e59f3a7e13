"""Stereo call recording written off the media path, playable at every moment.

Files are G.711 WAV (``WAVE_FORMAT_MULAW`` or ``WAVE_FORMAT_ALAW``, 8 kHz, 8 bits, two channels): the
caller's own law, so the codes on the wire are stored as they are, bit-exact, at 16 kB/s (half of
16-bit PCM, with nothing decoded on the media path). Standard readers (FFmpeg/PyAV, sox, players) play it.

:class:`RecordingWriter` owns one thread and a queue bounded by how far behind the thread may fall: the
tick hands it interleaved stereo frames (caller left, what the caller hears right) in batches and never
waits. Each batch goes to its file with one ``write`` (files are unbuffered), followed by a ``pwrite`` of the
header's RIFF and data sizes, so the file on disk is complete and playable after every batch: a killed
process leaves a file that standard readers open and that lasts to within a second of the kill (with the
engine's 0.3 s jitter delay and 0.4 s batches); :func:`repair` fixes the sizes of a file cut inside a
write at the next start.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("media.recorder")

RATE = 8000
CHANNELS = 2
#: WAVE format tags (RFC 2361): linear PCM, and the two G.711 laws by RTP payload type
PCM, ALAW, MULAW = 1, 6, 7
LAW_FORMAT = {0: MULAW, 8: ALAW}
#: header bytes: RIFF, ``fmt `` (18 bytes: with cbSize, as non-PCM formats need), ``fact``, ``data``
HEADER = 58
_PCM_HEADER = 44  # the canonical 16-bit PCM header (files from earlier versions)


def wav_header(data_bytes: int, fmt: int = MULAW) -> bytes:
    """The 58-byte header of an 8 kHz stereo G.711 WAV file holding ``data_bytes`` of codes (one byte a
    sample, channels interleaved); the ``fact`` chunk counts sample frames, as the format requires of
    non-PCM data."""
    frames = data_bytes // CHANNELS
    return (b"RIFF" + struct.pack("<I", HEADER - 8 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHHH", 18, fmt, CHANNELS, RATE, RATE * CHANNELS, CHANNELS, 8, 0)
            + b"fact" + struct.pack("<II", 4, frames)
            + b"data" + struct.pack("<I", data_bytes))


def _pcm_header(data_bytes: int) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, PCM, CHANNELS, RATE, RATE * CHANNELS * 2, CHANNELS * 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


def repair(path: Path) -> tuple[float, int]:
    """Rewrite the header sizes of a recording cut short (a crash) from the file's length, dropping a
    partial sample frame; returns its audio seconds and its size. Reads the format from the header
    written at the start (a G.711 file, or a 16-bit PCM one from an earlier version)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        head = f.read(HEADER)
        fmt = struct.unpack_from("<H", head, 20)[0] if len(head) >= 22 and head[12:16] == b"fmt " else MULAW
        header, width = (_PCM_HEADER, 2) if fmt == PCM else (HEADER, 1)
        data = max(0, size - header)
        data -= data % (CHANNELS * width)
        f.seek(0)
        f.write(_pcm_header(data) if fmt == PCM else wav_header(data, fmt if fmt in (ALAW, MULAW) else MULAW))
        f.truncate(header + data)
    return data / (RATE * CHANNELS * width), header + data


@dataclass
class Finished:
    """A recording closed: its path, audio seconds and bytes, or the error that stopped it."""

    key: str
    path: str
    seconds: float
    size: int
    error: str | None = None


class _Open:
    __slots__ = ("path", "fmt", "file", "data", "error")

    def __init__(self, path: Path, fmt: int):
        self.path = path
        self.fmt = fmt
        self.file: BinaryIO | None = None
        self.data = 0
        self.error: str | None = None


class RecordingWriter:
    """The writer thread. ``put_many`` never blocks: once the writer is more than ``max_lag`` seconds
    behind (a stalled disk; the engine allows 10 s) new frames are dropped, counted and logged. The
    bound is the writer's lag, not a number of entries, so many calls ending at once (each handing over
    the last of its audio) never lose frames to it."""

    def __init__(self, on_finished: Callable[[Finished], None] | None = None, max_lag: float = 10.0):
        self.on_finished = on_finished
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

    def open(self, key: str, path: str, fmt: int = MULAW) -> None:
        """Start ``path``, a stereo WAV of G.711 codes in ``fmt`` (:data:`MULAW` or :data:`ALAW`)."""
        self._q.put(("open", key, (path, fmt), time.monotonic()))

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> None:
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

    def _step(self, files: dict[str, _Open]) -> bool:
        """One queue entry (or a timeout); False once stopped."""
        try:
            kind, key, arg, queued = self._q.get(timeout=0.5)
            self._behind_since = queued  # how far behind the writer is while it is on this entry
        except queue.Empty:
            self._behind_since = None  # idle: caught up
            return True
        if kind == "open":
            new = files[key] = _Open(Path(arg[0]), arg[1])
            try:
                new.path.parent.mkdir(parents=True, exist_ok=True)
                new.file = open(new.path, "wb", buffering=0)
                new.file.write(wav_header(0, new.fmt))
            except OSError as exc:
                self._fail(new, exc)
        elif kind == "batch":
            for k, frames in arg:
                rec = files.get(k)
                if rec is not None and rec.file is not None:
                    try:
                        written = rec.file.write(frames)
                        if written != len(frames):
                            raise OSError(f"short write: {written} of {len(frames)} bytes")
                        rec.data += written
                        os.pwrite(rec.file.fileno(), wav_header(rec.data, rec.fmt), 0)
                    except OSError as exc:
                        self._fail(rec, exc)
        elif kind in ("close", "stop"):
            for k in ([key] if kind == "close" else list(files)):
                rec = files.pop(k, None)
                if rec is not None:
                    self._finish(k, rec)
            if kind == "stop":
                return False
        return True

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
            try:
                rec.file.close()
            except OSError as exc:
                self._fail(rec, exc)
        if rec.error is None:
            self.written += 1
        if self.on_finished is not None:
            self.on_finished(Finished(key, str(rec.path), rec.data / (RATE * CHANNELS),
                                      HEADER + rec.data if rec.error is None else 0, rec.error))

