"""Audio for the recogniser: decode any file to 16 kHz mono float32, and 8 kHz -> 16 kHz.

:class:`Upsampler` doubles the rate of a stream chunk by chunk (a 41-tap Kaiser-windowed low-pass,
the filter ``scipy.signal.resample_poly(x, 2, 1)`` designs, applied with ``np.convolve`` over the
zero-stuffed signal and the previous chunk's tail): the output of a stream fed in 20 ms frames is
identical to the output of the whole signal at once, and aligned (the filter's delay is removed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audiofile import decode
from .engine import SAMPLE_RATE

TELEPHONE_RATE = 8000
_TAPS = 41  # 2 * 10 * max(up, down) + 1, as resample_poly
_DELAY = (_TAPS - 1) // 2  # output samples


class AudioError(ValueError):
    """A file that cannot be read or holds no audio."""


def _lowpass() -> np.ndarray:
    n = np.arange(_TAPS) - _DELAY
    h = np.sinc(n / 2.0) * np.kaiser(_TAPS, 5.0)
    taps: np.ndarray = (2.0 * h / h.sum()).astype(np.float32)  # gain 2: half the zero-stuffed samples are zeros
    return taps


_H = _lowpass()


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1)."""
    return np.asarray(samples, dtype=np.int16).astype(np.float32) * np.float32(1 / 32768)


class Upsampler:
    """Streaming 2x upsampler (8 kHz -> 16 kHz) with the filter delay compensated.

    ``process`` takes int16 or float32 chunks of any length and returns float32 at twice the rate;
    ``flush`` returns the last samples held back by the filter. The total output is exactly twice the
    input, sample ``2k`` aligned with input sample ``k``.
    """

    def __init__(self) -> None:
        self._history = np.zeros(_TAPS - 1, dtype=np.float32)
        self._skip = _DELAY

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = pcm16_to_float(chunk) if chunk.dtype == np.int16 else np.asarray(chunk, dtype=np.float32)
        if x.size == 0:
            return np.zeros(0, dtype=np.float32)
        stuffed = np.zeros(2 * x.size, dtype=np.float32)
        stuffed[0::2] = x
        extended = np.concatenate([self._history, stuffed])
        self._history = extended[-(_TAPS - 1):]
        out = np.convolve(extended, _H, mode="valid").astype(np.float32)
        if self._skip:
            cut = min(self._skip, out.size)
            out, self._skip = out[cut:], self._skip - cut
        return out

    def flush(self) -> np.ndarray:
        """The filter's tail: feed the zeros that push the delayed samples out."""
        return self.process(np.zeros(_DELAY // 2, dtype=np.float32))


def upsample_8k(samples: np.ndarray) -> np.ndarray:
    """A whole 8 kHz signal (int16 or float32) -> 16 kHz float32, same duration."""
    up = Upsampler()
    return np.concatenate([up.process(np.asarray(samples)), up.flush()])


def decode_file(path: Path | str, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio file PyAV (FFmpeg) reads, any rate and channel count, to mono float32 at ``rate``."""
    return decode(path, rate=rate, sample_format="flt", error=AudioError).astype(np.float32, copy=False)
