"""The audio tap: what chosen legs send us, decoded to 8 kHz int16, for abuse detection elsewhere.

The engine copies every received payload of a tapped leg into a small per-leg deque (one attribute
test per packet on the relay path). Once per 20 ms tick, :meth:`AudioTap.collect` decodes the frames
of all tapped legs as one array (the G.711 tables, no per-sample Python), and every
:data:`BATCH_TICKS` ticks the gathered audio goes into the channel as one :class:`TapBatch`.

The channel is bounded and never waited on (``put_nowait``; a ``multiprocessing.Queue(maxsize)``
in the product, so detection runs in its own processes): when detection falls behind, the batch is
dropped and counted, and media and signalling go on as if nothing were listening.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import g711

FRAME = 160  # 20 ms at 8 kHz
#: ticks gathered into one batch (100 ms): one channel write per batch, not per frame
BATCH_TICKS = 5
#: frames a tapped leg may queue between ticks before the oldest are dropped (a burst after a stall)
LEG_BACKLOG = 8


@dataclass(frozen=True, slots=True)
class TapBatch:
    """About 100 ms of every tapped leg: (session, leg) -> int16 8 kHz samples (native byte order),
    in the order the packets arrived, and the monotonic time the batch was closed."""

    frames: dict[tuple[str, str], bytes]
    at: float


class TapChannel(Protocol):
    """Where batches go: ``put_nowait`` raises :class:`queue.Full` instead of waiting."""

    def put_nowait(self, item: TapBatch) -> None: ...


class HasCodec(Protocol):
    """A tapped leg as the tap sees it: the payload type it sends now (0 PCMU, 8 PCMA; read per tick,
    so a re-INVITE changing the codec is followed)."""

    codec: int | None


class AudioTap:
    """The tapped legs of one engine and the batch being gathered."""

    def __init__(self, channel: TapChannel | None):
        self.channel = channel
        #: key (the engine's leg id) -> (session, leg name, its payload deque, the leg)
        self._legs: dict[int, tuple[str, str, deque[bytes], HasCodec]] = {}
        self._pending: dict[tuple[str, str], list[bytes]] = {}
        self._ticks = 0
        self.counters = {"tap_frames": 0, "tap_batches": 0, "tap_dropped_frames": 0}

    @property
    def active(self) -> bool:
        return bool(self._legs)

    def add(self, key: int, session: str, leg: str, source: HasCodec) -> deque[bytes] | None:
        """Start tapping a leg; returns the deque the packet path appends its payloads to
        (None without a channel: nothing would ever read them)."""
        if self.channel is None:
            return None
        old = self._legs.get(key)
        backlog: deque[bytes] = old[2] if old is not None else deque(maxlen=LEG_BACKLOG)
        self._legs[key] = (session, leg, backlog, source)
        return backlog

    def remove(self, key: int) -> None:
        self._legs.pop(key, None)

    def collect(self, now: float | None = None) -> None:
        """One tick: decode this tick's frame of every tapped leg; hand a batch over every few ticks."""
        if not self._legs:
            return
        keys: list[tuple[str, str]] = []
        payloads: list[bytes] = []
        alaw: list[int] = []
        for session, leg, backlog, source in self._legs.values():
            codec = source.codec
            while backlog:  # everything that arrived since the last tick, in arrival order
                payload = backlog.popleft()
                if len(payload) != FRAME or codec not in (0, 8):
                    continue
                if codec == 8:
                    alaw.append(len(keys))
                keys.append((session, leg))
                payloads.append(payload)
        if keys:
            codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(keys), FRAME)
            pcm = g711.decode_rows(codes, alaw)
            for key, row in zip(keys, pcm, strict=True):
                self._pending.setdefault(key, []).append(row.tobytes())
            self.counters["tap_frames"] += len(keys)
        self._ticks += 1
        if self._ticks >= BATCH_TICKS:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Hand what was gathered to the channel now; drop and count it when the channel is full."""
        self._ticks = 0
        if not self._pending or self.channel is None:
            return
        pending, self._pending = self._pending, {}
        batch = TapBatch({key: b"".join(rows) for key, rows in pending.items()},
                         time.monotonic() if now is None else now)
        try:
            self.channel.put_nowait(batch)
            self.counters["tap_batches"] += 1
        except queue.Full:
            self.counters["tap_dropped_frames"] += sum(len(rows) for rows in pending.values())


__all__ = ["BATCH_TICKS", "AudioTap", "HasCodec", "TapBatch", "TapChannel"]
