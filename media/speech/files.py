"""Transcribing whole files: decode (any format, rate, channels) -> segment -> transcribe each utterance."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .audio import decode_file
from .engine import SAMPLE_RATE, Transcriber, Transcript
from .vad import SegmenterOptions, Utterance, segment


@dataclass(frozen=True)
class FileTranscript:
    """A file's utterances, their transcripts (same order) and the joined text."""

    path: Path
    audio_seconds: float
    utterances: tuple[Utterance, ...]
    transcripts: tuple[Transcript, ...]
    seconds: float

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.transcripts if t.text)


def transcribe_file(path: Path | str, engine: Transcriber, options: SegmenterOptions | None = None) -> FileTranscript:
    """Decode ``path`` to 16 kHz mono, cut it with the VAD and transcribe every utterance with ``engine``."""
    t0 = time.perf_counter()
    audio = decode_file(path, SAMPLE_RATE)
    utterances = segment(audio, options)
    transcripts = tuple(engine.transcribe(u.samples) for u in utterances)
    return FileTranscript(Path(path), audio.size / SAMPLE_RATE, tuple(utterances), transcripts,
                          time.perf_counter() - t0)
