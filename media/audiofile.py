"""Audio files in and out: any format PyAV (FFmpeg) decodes, to mono at a chosen rate; mono 16-bit WAV out.

One decoder for the prompts (:mod:`media.prompts_lib`, 8 kHz int16) and for speech recognition
(:mod:`media.speech.audio`, 16 kHz float32); one writer for prompts and abuse evidence clips.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Literal

import numpy as np


def decode(path: Path | str, *, rate: int, sample_format: Literal["s16", "flt"],
           error: type[Exception] = ValueError, layout: Literal["mono", "stereo"] = "mono") -> np.ndarray:
    """Decode any audio file PyAV reads, any rate and channel count, to mono ``sample_format`` at ``rate``
    (``layout="stereo"``: interleaved left, right); ``error`` (the caller's exception class) names the file
    when it has no audio or cannot be decoded."""
    import av  # noqa: PLC0415  (PyAV is only needed when files are read)

    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                raise error(f"{path}: no audio stream")
            resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.error.FFmpegError, OSError) as exc:
        raise error(f"{path}: cannot decode: {exc}") from None
    if not chunks:
        raise error(f"{path}: no audio")
    return np.concatenate(chunks)


def decode_stereo(path: Path | str, *, rate: int, error: type[Exception] = ValueError) -> np.ndarray:
    """Decode to float32 in [-1, 1], shape ``(2, samples)``: row 0 the left channel, row 1 the right (a mono
    file gives the same samples on both)."""
    return decode(path, rate=rate, sample_format="flt", error=error, layout="stereo").reshape(-1, 2).T


def write_wav(path: Path | str, samples: np.ndarray, rate: int = 8000) -> None:
    """int16 mono samples as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples).astype("<i2").tobytes())


__all__ = ["decode", "decode_stereo", "write_wav"]
