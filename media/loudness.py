"""The shouting cue: a caller's level measured against the caller's own baseline.

Fed the tapped 8 kHz audio of one leg (any number of 20 ms frames at a time), :class:`ShoutTracker`
computes each frame's level in dBFS as one array operation and smooths it over the last ``seconds`` of
speech (the power averaged, so syllables and their dips do not count), keeps a running baseline of the
caller's *speaking* level (mean and variance of that smoothed level, Welford's update on the batch:
per-frame levels of real speech spread over 10 dB and more, the smoothed level over a few), and reports a
:class:`ShoutCue` when the smoothed level stays loud: above both the absolute ``shout_dbfs`` and the baseline by
``margin_db`` above the caller's baseline (a voice on its way up teaches the baseline nothing). Nothing is
cued before the baseline has four seconds of speech: handsets and lines differ by 20 dB and more, so an
absolute level alone would cue every caller on a hot line, and the absolute floor alone keeps a quiet
line's merely raised voice from counting. The cue raises the abuse score of what is said at that moment and is kept
with the event; it never ends a call on its own (that is the policy's rule, not this module's).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

FRAME = 160  # 20 ms at 8 kHz
#: frames quieter than this are not speech: they neither build the baseline nor count as shouting
SPEECH_FLOOR_DBFS = -45.0
#: smoothed levels the baseline needs before it is trusted (2 s more speech after the first full window)
BASELINE_FRAMES = 100
#: a loud stretch ends when the smoothed level falls this far under the limit, or after a pause
HYSTERESIS_DB = 3.0
PAUSE_FRAMES = 25  # 0.5 s


@dataclass(frozen=True, slots=True)
class ShoutCue:
    """Loud speech from ``start`` to ``end`` (seconds into what the tracker was fed)."""

    start: float
    end: float
    level_dbfs: float  # the mean level of the loud speech
    baseline_dbfs: float  # the caller's usual speaking level then (nan before there was one)
    excess_db: float  # how far above the baseline (or the absolute limit, before a baseline)


def frame_levels(samples: np.ndarray) -> np.ndarray:
    """dBFS of each whole 20 ms frame of int16 samples (RMS; digital silence -> -120)."""
    n = len(samples) // FRAME
    frames = samples[:n * FRAME].astype(np.float32).reshape(n, FRAME) / 32768.0
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return 20.0 * np.log10(np.maximum(rms.astype(np.float64), 1e-6))  # float64: silence is -120 exactly


class ShoutTracker:
    """One leg's levels, baseline and shouting cues over a call."""

    def __init__(self, shout_dbfs: float = -8.0, seconds: float = 2.0, margin_db: float = 10.0):
        self.shout_dbfs = shout_dbfs
        self.window = max(1, round(seconds * 50))  # frames of speech that must stay loud
        self.margin_db = margin_db
        self._n = 0  # speech frames in the baseline
        self._mean = 0.0
        self._m2 = 0.0
        self._frames = 0  # frames fed so far (the time axis)
        self._loud_from: int | None = None  # first frame of the current loud stretch
        self._loud_levels: list[float] = []  # its smoothed levels
        self._window: deque[float] = deque()  # power of the last ``window`` speech frames
        self._last_loud = 0  # the last frame above the limit in the current stretch
        self._win_sum = 0.0
        self._quiet = 0  # non-speech frames in a row
        self._pending = np.zeros(0, np.int16)

    @property
    def baseline(self) -> tuple[float, float] | None:
        """(mean, standard deviation) of the caller's speaking level in dBFS, once trusted."""
        if self._n < BASELINE_FRAMES:
            return None
        return self._mean, float(np.sqrt(self._m2 / (self._n - 1)))

    def limit(self) -> float | None:
        """The level above which speech counts as shouting now (None: no baseline yet, no cue)."""
        base = self.baseline
        if base is None:
            return None
        return max(self.shout_dbfs, base[0] + self.margin_db)

    def feed(self, samples: np.ndarray) -> list[ShoutCue]:
        """Take int16 samples (any length; a partial frame waits for the next call); return the cues
        that ended in them (one per loud stretch, reported when the stretch ends)."""
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        whole = len(samples) // FRAME * FRAME
        self._pending = samples[whole:].copy()
        levels = frame_levels(samples[:whole])
        power = np.power(10.0, levels / 10.0)
        limit = self.limit()  # judged against the baseline before these frames join it
        cues: list[ShoutCue] = []
        calm: list[float] = []
        base = self.baseline
        win = self._window
        # 50 frames a second per call, in the detection worker (not the RTP path): a plain loop
        for i, (level, p) in enumerate(zip(levels.tolist(), power.tolist(), strict=True)):
            at = self._frames + i
            if level <= SPEECH_FLOOR_DBFS:
                self._quiet += 1
                if self._quiet > PAUSE_FRAMES:  # a pause ends a stretch and starts a new window
                    win.clear()
                    self._win_sum = 0.0
                    if self._loud_from is not None:
                        cues += self._close(at, base)
                continue
            self._quiet = 0
            win.append(p)
            self._win_sum += p
            if len(win) > self.window:
                self._win_sum -= win.popleft()
            smoothed = 10.0 * np.log10(max(self._win_sum / len(win), 1e-12))
            if limit is not None and len(win) == self.window and smoothed > limit:
                if self._loud_from is None:  # the stretch starts at the window's first loud frame
                    threshold = 10.0 ** (limit / 10.0)
                    first = next(k for k, q in enumerate(win) if q > threshold or k == len(win) - 1)
                    self._loud_from = at - len(win) + 1 + first
                self._loud_levels.append(smoothed)
            if self._loud_from is not None and limit is not None and level > limit:
                self._last_loud = at
            else:
                if self._loud_from is not None and limit is not None and smoothed < limit - HYSTERESIS_DB:
                    cues += self._close(at, base)
                if self._loud_from is None and len(win) == self.window and \
                        (limit is None or smoothed < self._mean + self.margin_db / 2):
                    calm.append(smoothed)  # only the usual voice teaches the baseline, not a voice rising
        self._frames += len(levels)
        self._learn(np.asarray(calm))
        return cues

    def loud_since(self) -> float | None:
        """When the loud stretch in progress began (seconds), or None when the caller is not shouting now."""
        return self._loud_from / 50.0 if self._loud_from is not None else None

    def excess_now(self) -> float | None:
        """dB above the baseline of the loud stretch in progress, or None."""
        base = self.baseline
        if self._loud_from is None or not self._loud_levels or base is None:
            return None
        return round(float(np.mean(self._loud_levels)) - base[0], 1)

    def finish(self) -> list[ShoutCue]:
        """The end of the stream: a loud stretch still open is closed."""
        return self._close(self._frames, self.baseline) if self._loud_from is not None else []

    def _close(self, at: int, base: tuple[float, float] | None) -> list[ShoutCue]:
        start, levels = self._loud_from, self._loud_levels
        self._loud_from, self._loud_levels = None, []
        if start is None or not levels:
            return []
        mean = float(np.mean(levels))
        reference = base[0] if base is not None else self.shout_dbfs
        end = min(at, max(self._last_loud + 1, start + 1))
        return [ShoutCue(start / 50.0, end / 50.0, round(mean, 1),
                         round(base[0], 1) if base is not None else float("nan"), round(mean - reference, 1))]

    def _learn(self, levels: np.ndarray) -> None:
        """Add speech frames to the baseline (Chan et al.'s parallel form of Welford's update)."""
        if not len(levels):
            return
        n_b = len(levels)
        mean_b = float(np.mean(levels))
        m2_b = float(np.sum((levels - mean_b) ** 2))
        n = self._n + n_b
        delta = mean_b - self._mean
        self._mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * self._n * n_b / n
        self._n = n


__all__ = ["ShoutCue", "ShoutTracker", "frame_levels"]
