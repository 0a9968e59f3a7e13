"""The embedded engine: Whisper base through faster-whisper (CTranslate2, int8, CPU).

The model directory comes from :func:`media.speech.model.ensure_model` (assembled from the installed
packages, verified); nothing is downloaded. Decoding: language ``ko``, temperature 0 only (no
temperature fallback: it costs up to five more decodes and mostly changes hallucinations), no
conditioning on previous text (each utterance stands alone), no timestamps, faster-whisper's own VAD
off (utterances come from :mod:`.vad`).

Beam size 5, faster-whisper's default. Measured through G.711 and the segmenter on the 36 clips of
``shared/testdata/korean-speech`` (mean per-clip CER, spaces removed): beam 1 22.2 %, beam 3 21.4 %,
beam 5 20.9 %; CPU time per second of audio with ``cpu_threads=2`` (process time, 3 clips, twice):
0.28 s, 0.32 s, 0.32 s. Beam 5 costs about 15 % more than greedy decoding and nothing over beam 3.

Whisper invents text for silence and noise (here: "이 영상은 영상에서 영상에서 ..." for white noise,
"이 영상은 또 다른 영상에서 만나요." for digital silence), so every decoded segment is checked and dropped when

* ``no_speech_prob >= no_speech_threshold`` (default 0.6, Whisper's own value): the model's
  no-speech token says there is nothing to transcribe; or
* ``avg_logprob < logprob_threshold`` (default -1.0, Whisper's value): the model is guessing; or
* ``compression_ratio > compression_ratio_threshold`` (default 2.4, Whisper's value): repetition
  loops ("네 네 네 네 ...").

Whisper itself drops a segment only when the first two hold together; here any one is enough (a
false alarm about abuse is worse than a missed sentence). Measured through G.711 on the 36 Korean
clips: real utterances (beam 1, 3 and 5) decode with avg_logprob -0.88 to -0.14 (below -0.6 only for
the second piece of a clip cut at the length limit) and no_speech_prob below 0.05 for 83 % of them,
0.39 at worst; 3 s of digital silence, -80 dBFS dither, white noise (-26 and -10 dBFS) and 50 Hz hum
all give no_speech_prob 0.66-0.77 (silence and hum also avg_logprob below -1.8, but white noise
decodes a fluent repetition loop at -0.24: only the no-speech probability catches it, so the
thresholds are not combined with "and"). The defaults are Whisper's own values: the no-speech
threshold has margin on both sides, the log-probability one only 0.12 below the worst real
utterance, so lower it (-1.2) before raising it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .engine import SAMPLE_RATE, Transcript, as_float32_16k
from .model import ModelDir, ensure_model


@dataclass(frozen=True)
class WhisperOptions:
    """Decoding settings and the hallucination filter's thresholds (see the module docstring)."""

    language: str = "ko"
    beam_size: int = 5
    cpu_threads: int = 2
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    #: bound on decoded tokens per second of audio (Korean speech needs ~10): a repetition loop on
    #: noise stops early instead of running to Whisper's 448-token window
    max_tokens_per_second: float = 25.0


class WhisperTranscriber:
    """:class:`~media.speech.engine.Transcriber` over the embedded Whisper base.

    The model directory is assembled/verified and the model loaded on the first :meth:`transcribe`
    (or an explicit :meth:`load`), so creating the engine is cheap, e.g. as a fallback that is
    never needed. Thread-safe: one decode at a time per instance. In worker processes, create (or at
    least load) it in the worker, after the fork: CTranslate2's thread pool does not survive a fork.
    """

    def __init__(self, model_dir: Path | str, options: WhisperOptions | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.options = options or WhisperOptions()
        self._model: Any = None
        self._info: ModelDir | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "whisper"

    @property
    def model_version(self) -> str:
        return self._info.version if self._info else "whisper-base (not loaded)"

    def load(self) -> None:
        """Assemble/verify the model directory and load the model (idempotent)."""
        if self._model is not None:
            return
        from faster_whisper import WhisperModel  # noqa: PLC0415  (heavy: CTranslate2)

        self._info = ensure_model(self.model_dir)
        self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8",
                                   cpu_threads=self.options.cpu_threads, num_workers=1, local_files_only=True)

    def transcribe(self, samples_16k: np.ndarray) -> Transcript:
        audio = as_float32_16k(samples_16k)
        with self._lock:
            self.load()
            t0 = time.perf_counter()
            o = self.options
            segments, info = self._model.transcribe(
                audio, language=o.language, task="transcribe", beam_size=o.beam_size, best_of=1, temperature=0.0,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                max_new_tokens=_max_tokens(audio.size / SAMPLE_RATE, o.max_tokens_per_second),
                # the filter below decides; these would only drive the temperature fallback, which is off
                no_speech_threshold=None, log_prob_threshold=None, compression_ratio_threshold=None,
            )
            decoded = list(segments)
            seconds = time.perf_counter() - t0
        kept = [s for s in decoded if self.keep(s.no_speech_prob, s.avg_logprob, s.compression_ratio)]
        described = kept or decoded
        return Transcript(
            text=" ".join(s.text.strip() for s in kept if s.text.strip()),
            language=str(info.language or o.language),
            avg_logprob=_token_weighted([(s.avg_logprob, len(s.tokens)) for s in described]),
            no_speech_prob=max((s.no_speech_prob for s in described), default=math.nan),
            engine=self.name,
            model_version=self.model_version,
            seconds=seconds,
            audio_seconds=audio.size / SAMPLE_RATE,
            dropped=len(decoded) - len(kept),
        )

    def keep(self, no_speech_prob: float, avg_logprob: float, compression_ratio: float = 0.0) -> bool:
        """The hallucination filter: does a segment with these figures count as speech?"""
        o = self.options
        return (no_speech_prob < o.no_speech_threshold and avg_logprob >= o.logprob_threshold
                and compression_ratio <= o.compression_ratio_threshold)


def _max_tokens(audio_seconds: float, per_second: float) -> int:
    """Tokens allowed for one 30 s window: 16 + ``per_second`` per second of audio, at most 400
    (Whisper's 448 minus the prompt)."""
    return int(min(400, 16 + per_second * min(audio_seconds, 30.0)))


def _token_weighted(values: list[tuple[float, int]]) -> float:
    total = sum(max(n, 1) for _, n in values)
    return sum(v * max(n, 1) for v, n in values) / total if values else math.nan
