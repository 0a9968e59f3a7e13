"""DTMF detection: RFC 4733 telephone-events and in-band tones (vectorized Goertzel)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np

#: what the caller names its streams by (the engine: ``id()`` of a leg)
K = TypeVar("K", bound=Hashable)

EVENT_DIGITS = "0123456789*#ABCD"


@dataclass(slots=True)
class Digit:
    """A detected key press."""

    digit: str
    duration_ms: int
    source: str  # "rfc4733" | "inband" | "info"


class TelephoneEventDetector:
    """Collapses the packets of RFC 4733 events into one :class:`Digit` each (§2.5.1.4).

    An event is identified by its RTP timestamp: its updates, its three end packets
    (E bit) and late retransmissions produce nothing new. An event whose end packets
    were all lost is reported when the next event starts, or by :meth:`flush`. A
    timestamp seen again after ``memory`` seconds is a new key press (a sender that
    replays the same packets, like SIPp's DTMF pcaps), not a retransmission.
    """

    def __init__(self, clock: int = 8000, memory: float = 1.0):
        self.clock = clock
        self.memory = memory
        self._ts: int | None = None
        self._event = 0
        self._duration = 0
        self._done = False
        self._seen = 0.0  # arrival of the current event's last packet
        self._finished: dict[int, float] = {}  # recent events already reported: timestamp -> last packet

    def feed(self, ts: int, payload: bytes, now: float = 0.0) -> list[Digit]:
        if len(payload) < 4:
            return []
        last = self._finished.get(ts)
        if last is not None:
            if now - last < self.memory:
                self._finished[ts] = now  # a retransmitted end packet
                return []
            del self._finished[ts]
            if ts == self._ts:
                self._ts = None  # the same timestamp again, long after: a new press
        event, end, duration = payload[0], bool(payload[1] & 0x80), int.from_bytes(payload[2:4], "big")
        out: list[Digit] = []
        if ts != self._ts:
            if self._ts is not None and not self._done:
                out += self._report()  # the previous event's end packets were lost
            self._ts, self._event, self._duration, self._done = ts, event, duration, False
        else:
            self._duration = max(self._duration, duration)
        self._seen = now
        if end and not self._done:
            out += self._report()
        return out

    def flush(self) -> list[Digit]:
        return self._report() if self._ts is not None and not self._done else []

    def _report(self) -> list[Digit]:
        self._done = True
        assert self._ts is not None
        self._finished[self._ts] = self._seen
        if len(self._finished) > 8:
            del self._finished[next(iter(self._finished))]
        if self._event >= len(EVENT_DIGITS):
            return []  # flash and tones are not keys
        return [Digit(EVENT_DIGITS[self._event], self._duration * 1000 // self.clock, "rfc4733")]


_LOW = np.array([697.0, 770.0, 852.0, 941.0])
_HIGH = np.array([1209.0, 1336.0, 1477.0, 1633.0])
_KEYS = ["123A", "456B", "789C", "*0#D"]
_FREQS = np.concatenate([_LOW, _HIGH])


@lru_cache(maxsize=8)
def _basis(freqs: tuple[float, ...], n: int, rate: int) -> np.ndarray:
    """Cosines then sines of ``freqs`` over ``n`` samples, as one (L, 2F) float32 matrix."""
    phase = 2 * np.pi * np.outer(np.arange(n), np.asarray(freqs)) / rate
    return np.concatenate([np.cos(phase), np.sin(phase)], axis=1).astype(np.float32)


def goertzel_power(frames: np.ndarray, freqs: np.ndarray, rate: int = 8000) -> np.ndarray:
    """Power of each frequency in each frame: ``frames`` (N, L) -> (N, F), all at once.

    The Goertzel output equals |DFT at f|^2; as one real matrix product (cosine and sine parts)
    it is vectorized over all streams and frequencies.
    """
    f = len(freqs)
    parts = frames.astype(np.float32, copy=False) @ _basis(tuple(float(x) for x in freqs), frames.shape[1], rate)
    parts = parts.astype(np.float64)
    return parts[:, :f] ** 2 + parts[:, f:] ** 2


class InbandDetector(Generic[K]):
    """In-band DTMF for legs without telephone-event: one 20 ms frame per stream per tick.

    A key is reported after two consecutive frames show the same row+column pair with
    enough energy and twist within limits, and once more only after a gap.
    """

    def __init__(self) -> None:
        self._last: dict[K, str] = {}  # streams whose last frame held a tone
        self._held: dict[K, int] = {}

    def feed(self, keys: Sequence[K], frames: np.ndarray) -> list[tuple[K, Digit]]:
        """``frames`` is (N, 160) int16 for the N streams in ``keys``; returns new digits."""
        if not keys:
            return []
        x = frames.astype(np.float32)
        power = goertzel_power(x, _FREQS)
        low, high = power[:, :4], power[:, 4:]
        li, hi = low.argmax(axis=1), high.argmax(axis=1)
        lp, hp = low.max(axis=1), high.max(axis=1)
        total = np.einsum("ij,ij->i", x, x).astype(np.float64) * frames.shape[1] + 1e-9
        strong = (lp + hp) / total > 0.3
        twist = (lp / (hp + 1e-9) < 8) & (hp / (lp + 1e-9) < 8)
        found = strong & twist & (np.minimum(lp, hp) > 1e9)
        out: list[tuple[K, Digit]] = []
        seen: dict[K, str] = {}
        for i in np.flatnonzero(found).tolist():  # only streams with a tone now: usually none
            key = keys[i]
            digit = seen[key] = _KEYS[li[i]][hi[i]]
            if self._last.get(key) == digit:
                held = self._held[key] = self._held.get(key, 0) + 1
                if held == 1:
                    out.append((key, Digit(digit, 40, "inband")))
            else:
                self._held[key] = 0
        if self._last:  # streams that had a tone and, fed now, have none: the key was let go
            fed = set(keys)
            for key in [k for k in self._last if k in fed and k not in seen]:
                del self._last[key]
                self._held.pop(key, None)
        self._last.update(seen)
        return out

    def forget(self, key: K) -> None:
        self._last.pop(key, None)
        self._held.pop(key, None)
