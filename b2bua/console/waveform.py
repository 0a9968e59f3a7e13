"""A recording's waveform as an SVG picture: one band per channel (left above, right below), each column the
peak level of its slice of audio, so an auditor sees who spoke when before pressing play.

Decoding goes through PyAV (any format the archive wrote: WAV, Opus, MP3); the peaks are one numpy
reduction over a (columns, samples) view; the SVG is a single path per channel (small, scales to any width).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from media.audiofile import decode_stereo

RATE = 8000  # recordings are telephone audio
COLUMNS = 600
BAND = 60  # pixels per channel band


def peaks(samples: np.ndarray, columns: int = COLUMNS) -> np.ndarray:
    """``samples`` of shape (channels, n), float in [-1, 1] -> (channels, columns) peak levels in [0, 1]."""
    channels, n = samples.shape
    if n == 0:
        return np.zeros((channels, columns), np.float32)
    width = max(1, -(-n // columns))  # ceil: every sample in some column
    padded = np.zeros((channels, width * columns), np.float32)
    padded[:, :n] = np.abs(samples[:, : width * columns])
    return padded.reshape(channels, columns, width).max(axis=2).clip(0.0, 1.0)


def svg(levels: np.ndarray, labels: tuple[str, str], seconds: float) -> str:
    """Two bands of mirrored bars, left channel above; the channel names and the length in its title (the page
    writes them beside the picture: text inside would stretch with it)."""
    channels, columns = levels.shape
    height = BAND * 2
    title = f"{_esc(labels[0])} / {_esc(labels[1])} ({int(seconds) // 60}:{int(seconds) % 60:02d})"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {columns} {height}" '
             f'preserveAspectRatio="none" role="img" aria-label="{title}"><title>{title}</title>',
             f'<rect width="{columns}" height="{height}" fill="#f7f7f9"/>']
    colours = ("#1f6feb", "#d9480f")
    for ch in range(2):
        row = levels[min(ch, channels - 1)]
        mid = BAND * ch + BAND / 2
        half = (row * (BAND / 2 - 2)).round(1)
        d = " ".join(f"M{x} {mid - h:.1f}V{mid + h:.1f}" for x, h in enumerate(half.tolist()) if h > 0)
        parts.append(f'<path d="{d}" stroke="{colours[ch]}" stroke-width="1"/>')
        parts.append(f'<line x1="0" x2="{columns}" y1="{mid}" y2="{mid}" stroke="#ccc" stroke-width="0.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def render(path: Path, labels: tuple[str, str]) -> str:
    """The SVG of the recording at ``path`` (raises ValueError when it cannot be decoded). Blocking."""
    samples = decode_stereo(path, rate=RATE)
    return svg(peaks(samples), labels, samples.shape[1] / RATE)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


__all__ = ["peaks", "render", "svg"]
