"""Utterance segmentation with the Silero VAD model faster-whisper ships (ONNX, ``faster_whisper.vad``).

faster-whisper exposes the model as ``get_vad_model()`` (one cached onnxruntime session, one thread)
and the segmentation as ``get_speech_timestamps(audio, VadOptions(...))``, which needs the whole signal.
:class:`Segmenter` applies the same rules to a stream, 32 ms window by window, keeping the model's LSTM
state (``h``, ``c``) and the 64-sample context between calls, so its speech probabilities are exactly
those of the whole-signal call:

* speech starts at a window with probability >= ``threshold``; it goes on through windows above
  ``neg_threshold`` (hysteresis) and ends after ``min_silence_ms`` below it (400 ms: a phrase pause
  of read or conversational Korean is shorter, an utterance boundary longer);
* an utterance never exceeds ``max_utterance_s`` (10 s): it is cut at the last pause of at least
  ``split_silence_ms`` inside it when that pause is in its second half, else hard at the limit (a cut
  at an early pause would leave a scrap and hit the limit again soon after), and speech goes on in the
  next utterance;
* utterances get ``speech_pad_ms`` of audio before and after the detected speech (never overlapping the
  previous one); ones with less than ``min_speech_ms`` of speech (clicks, coughs) are dropped.

Input is 8 kHz int16 (the caller's decoded G.711), fed in 20 ms frames or any other length, upsampled to
16 kHz by :class:`~media.speech.audio.Upsampler`; :func:`segment` runs the same class over a whole 16 kHz
signal, so files and streams are cut identically. Window decisions are a small Python step per 32 ms
window; the audio itself is handled only by numpy and onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import Upsampler
from .engine import SAMPLE_RATE

WINDOW = 512  # samples at 16 kHz (32 ms), what Silero v5/v6 takes
CONTEXT = 64  # samples of the previous window prepended to each window
_FILE_CHUNK = 30 * SAMPLE_RATE


@dataclass(frozen=True)
class SegmenterOptions:
    """Segmentation thresholds (faster-whisper's ``VadOptions`` names where they exist)."""

    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_silence_ms: int = 400
    max_utterance_s: float = 10.0
    speech_pad_ms: int = 200
    min_speech_ms: int = 250
    split_silence_ms: int = 100


@dataclass(frozen=True, eq=False)
class Utterance:
    """One stretch of speech: offsets in seconds from the start of the stream, 16 kHz float32 samples.

    ``forced``: cut at the length limit rather than ended by silence.
    """

    start: float
    end: float
    samples: np.ndarray = field(repr=False)
    forced: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start


def _vad_model() -> Any:
    from faster_whisper.vad import get_vad_model  # noqa: PLC0415  (onnxruntime loads on first use)

    return get_vad_model()


def _ms(ms: float) -> int:
    return int(round(ms * SAMPLE_RATE / 1000))


class Segmenter:
    """Streaming utterance segmenter: ``feed`` 8 kHz int16 frames, get :class:`Utterance` objects back.

    ``flush`` ends the stream (returns the utterance in progress, if any) and resets the segmenter for
    a new stream starting at offset 0.
    """

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        self.options = options or SegmenterOptions()
        self._session = _vad_model().session
        o = self.options
        self._pad, self._min_silence = _ms(o.speech_pad_ms), _ms(o.min_silence_ms)
        self._min_speech, self._split_silence = _ms(o.min_speech_ms), _ms(o.split_silence_ms)
        self._max = int(o.max_utterance_s * SAMPLE_RATE)
        self._reset()

    def _reset(self) -> None:
        self._up = Upsampler()
        self._upsampling = False
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet in a window
        self._buf = _Retained(SAMPLE_RATE + 4 * self._pad + 4 * WINDOW)  # grows to an utterance's length if needed
        self._pos = 0  # absolute sample of the next window
        self._last_end = 0
        self._start: int | None = None  # utterance in progress
        self._speech_start = 0
        self._speech_end = 0
        self._silence_start: int | None = None
        self._split: tuple[int, int] | None = None  # (pause start, speech resumed) inside the utterance

    # -- input -----------------------------------------------------------------------------------
    def feed(self, frame_8k: np.ndarray) -> list[Utterance]:
        """Feed 8 kHz int16 samples (a 20 ms frame is 160); returns the utterances that ended."""
        self._upsampling = True
        return self.feed_16k(self._up.process(np.asarray(frame_8k)))

    def feed_16k(self, samples: np.ndarray) -> list[Utterance]:
        """Feed 16 kHz float32 samples directly (files); returns the utterances that ended."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._buf.append(samples)
        self._pending = np.concatenate([self._pending, samples])
        n = self._pending.size // WINDOW
        if n == 0:
            return []
        windows = self._pending[: n * WINDOW].reshape(n, WINDOW)
        self._pending = self._pending[n * WINDOW:]
        probs = self._probabilities(windows)
        out: list[Utterance] = []
        for prob in probs.tolist():
            u = self._step(self._pos, prob)
            self._pos += WINDOW
            out.extend(u)
        self._trim()
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: the utterance in progress (if long enough); then start over."""
        out = self.feed_16k(self._up.flush()) if self._upsampling else []
        if self._start is not None:
            total = self._buf.end
            if self._silence_start is not None:
                end = min(self._silence_start + self._pad, total)
            else:
                end = min(self._speech_end + self._pad, total)
            out.extend(self._emit(min(end, self._start + self._max), forced=False))
        self._reset()
        return out

    # -- the model -------------------------------------------------------------------------------
    def _probabilities(self, windows: np.ndarray) -> np.ndarray:
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)

    # -- the rules -------------------------------------------------------------------------------
    def _step(self, p: int, prob: float) -> list[Utterance]:
        o, w_end = self.options, p + WINDOW
        if self._start is None:
            if prob >= o.threshold:
                self._start = max(p - self._pad, self._last_end, self._buf.start)
                self._speech_start, self._speech_end = p, w_end
                self._silence_start, self._split = None, None
            return []
        if prob >= o.threshold:
            if self._silence_start is not None:
                if p - self._silence_start >= self._split_silence:
                    self._split = (self._silence_start, p)
                self._silence_start = None
            self._speech_end = w_end
        elif prob < o.neg_threshold:
            if self._silence_start is None:
                self._silence_start = p
            if w_end - self._silence_start >= self._min_silence:
                return self._emit(min(self._silence_start + self._pad, w_end), forced=False)
        elif self._silence_start is None:
            self._speech_end = w_end
        if w_end - self._start >= self._max:
            return self._cut(w_end)
        return []

    def _cut(self, w_end: int) -> list[Utterance]:
        """The utterance reached the length limit: cut at a pause if there is one."""
        assert self._start is not None
        limit = self._start + self._max
        silence = self._silence_start
        if silence is not None and w_end - silence >= self._split_silence:
            return self._emit(min(silence + min(self._pad, (w_end - silence) // 2), limit), forced=True)
        if self._split is not None and self._split[0] - self._start >= self._max // 2:
            s0, s1 = self._split
            cut = min(s0 + min(self._pad, (s1 - s0) // 2), limit)
            out = self._emit(cut, forced=True)
            self._start, self._speech_start = max(cut, s1 - self._pad), s1
        else:
            out = self._emit(limit, forced=True)
            self._start = self._speech_start = limit
        self._speech_end = max(self._speech_end, self._start)
        if silence is not None:  # a short pause in progress goes on in the next utterance
            self._silence_start = max(silence, self._start)
        return out

    def _emit(self, end: int, forced: bool) -> list[Utterance]:
        start = self._start
        assert start is not None
        self._start, self._silence_start, self._split = None, None, None
        self._last_end = end
        speech = min(self._speech_end, end) - self._speech_start
        if speech < self._min_speech and not forced:
            return []
        samples = self._buf.get(start, end)
        return [Utterance(start / SAMPLE_RATE, end / SAMPLE_RATE, samples, forced)]

    def _trim(self) -> None:
        keep = self._start if self._start is not None else max(self._pos - self._pad, self._last_end)
        self._buf.drop_before(keep)


class _Retained:
    """The audio an utterance may still need, by absolute sample number, in one preallocated array.

    Appending copies only the new samples; dropping old ones moves a start index; the kept tail is moved
    to the front only when the array is full (amortised O(1) per sample, no per-frame reallocation).
    """

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._head = self._tail = 0  # valid samples are _data[_head:_tail]
        self.start = 0  # absolute sample number of _data[_head]

    @property
    def end(self) -> int:
        return self.start + self._tail - self._head

    def append(self, samples: np.ndarray) -> None:
        n = samples.size
        if self._tail + n > self._data.size:
            kept = self._tail - self._head
            if kept + n > self._data.size:
                grown = np.zeros(2 * (kept + n), dtype=np.float32)
                grown[:kept] = self._data[self._head:self._tail]
                self._data = grown
            else:
                self._data[:kept] = self._data[self._head:self._tail]
            self._head, self._tail = 0, kept
        self._data[self._tail:self._tail + n] = samples
        self._tail += n

    def get(self, start: int, end: int) -> np.ndarray:
        """A copy of absolute samples [start, end)."""
        return self._data[self._head + start - self.start: self._head + end - self.start].copy()

    def drop_before(self, sample: int) -> None:
        drop = min(sample - self.start, self._tail - self._head)
        if drop > 0:
            self._head += drop
            self.start += drop


def segment(samples_16k: np.ndarray, options: SegmenterOptions | None = None) -> list[Utterance]:
    """Cut a whole 16 kHz float32 signal (a decoded file) into utterances, as the stream would be."""
    seg = Segmenter(options)
    out: list[Utterance] = []
    for i in range(0, len(samples_16k), _FILE_CHUNK):  # bounded memory for long files
        out.extend(seg.feed_16k(samples_16k[i:i + _FILE_CHUNK]))
    return out + seg.flush()


def segment_8k(samples_8k: np.ndarray, options: SegmenterOptions | None = None, frame: int = 160) -> list[Utterance]:
    """Feed a whole 8 kHz int16 signal through :class:`Segmenter` in ``frame``-sample frames (tests, tools)."""
    seg = Segmenter(options)
    out: list[Utterance] = []
    for i in range(0, len(samples_8k), frame):
        out.extend(seg.feed(samples_8k[i:i + frame]))
    return out + seg.flush()
