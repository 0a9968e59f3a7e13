"""Prompts: audio files decoded once with PyAV to 8 kHz mono int16 and cached for the engine.

Names refer to the shipped prompts in ``media/prompts/`` (``city_notice``, ``lunch_break``, ...);
anything with a file suffix or a path separator is an operator's own WAV/MP3/OGG file.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from .audiofile import decode

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
RATE = 8000


class PromptError(ValueError):
    """A prompt that does not exist or cannot be decoded."""


def decode_file(path: Path) -> np.ndarray:
    """Decode any audio file PyAV (FFmpeg) reads into 8 kHz mono int16 samples."""
    return decode(path, rate=RATE, sample_format="s16", error=PromptError).astype(np.int16)


#: decoded prompts shared by every library in the process, by file, with the file's (mtime, size) when
#: decoded: the config check at start-up decodes what the calls then play, and an edited file is decoded
#: again on the next reload
_DECODED: dict[Path, tuple[tuple[int, int], np.ndarray]] = {}


class PromptLibrary:
    """Resolves prompt names and paths to samples, decoding each file once (until it changes)."""

    def __init__(self, base: Path | None = None, directory: Path = PROMPT_DIR):
        self.base = base or Path.cwd()
        self.directory = directory

    def path(self, name: str) -> Path:
        if "/" in name or Path(name).suffix:
            p = Path(name)
            return p if p.is_absolute() else (self.base / p)
        return self.directory / f"{name}.wav"

    def get(self, name: str) -> np.ndarray:
        path = self.path(name).resolve()
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise PromptError(f"prompt {name!r}: no file {path}")
        signature = (st.st_mtime_ns, st.st_size)
        cached = _DECODED.get(path)
        if cached is None or cached[0] != signature:
            cached = _DECODED[path] = (signature, decode_file(path))
        return cached[1]

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.wav"))
