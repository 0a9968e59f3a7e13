"""The speech-to-text contract: the :class:`Transcriber` protocol and its answer, :class:`Transcript`.

Every engine (the embedded Whisper of :mod:`.whisper`, the HTTP client of :mod:`.external`) takes one
utterance as 16 kHz mono float32 samples in [-1, 1] and returns a :class:`Transcript`. Engines are
blocking: they run in worker processes, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

#: the sample rate every engine takes
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    """What an engine heard in one stretch of audio.

    ``text`` is empty when nothing was kept (silence, noise, or every segment dropped by the
    no-speech / log-probability filter; ``dropped`` counts those). ``avg_logprob`` and
    ``no_speech_prob`` describe the kept segments (all decoded segments when none was kept;
    ``nan`` when the engine does not report them). ``seconds`` is the wall time spent,
    ``audio_seconds`` the length of the audio.
    """

    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float
    engine: str
    model_version: str
    seconds: float
    audio_seconds: float
    dropped: int = 0

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (below 1: faster than real time)."""
        return self.seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0


@runtime_checkable
class Transcriber(Protocol):
    """A speech-to-text engine for one utterance at a time."""

    @property
    def name(self) -> str:
        """A short engine name (``"whisper"``, ``"external"``) for logs and metrics."""
        ...

    def transcribe(self, samples_16k: np.ndarray) -> Transcript:
        """Transcribe 16 kHz mono float32 samples (one utterance, up to ~30 s)."""
        ...


def as_float32_16k(samples: np.ndarray) -> np.ndarray:
    """Validate an engine's input: 1-D, float32 (int16 is scaled to [-1, 1])."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {a.shape}")
    if a.dtype == np.int16:
        return (a.astype(np.float32) / 32768.0).astype(np.float32)
    return a.astype(np.float32, copy=False)
