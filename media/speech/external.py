"""An external speech-to-text server: any OpenAI-compatible ``POST /v1/audio/transcriptions``.

The request is ``multipart/form-data`` with ``file`` (the utterance as a 16 kHz 16-bit mono WAV),
``model``, ``language`` and ``response_format`` (``json``: ``{"text": ...}``; ``verbose_json`` adds
``language`` and ``segments`` with ``avg_logprob``/``no_speech_prob``/``compression_ratio``, which then
pass the same hallucination filter as the embedded engine).

The client is the standard library's ``urllib.request`` with a hand-built multipart body: it runs in
the abuse detector's worker processes, where a blocking call is right (one utterance at a time, no
event loop to keep responsive), and the standard library adds no dependency and no session/connection
pool state to carry across ``fork``. Each attempt has a timeout (``timeout_s``, applied by the socket
to the connection and to every read); connection errors, timeouts, 5xx and 429 are retried up to
``retries`` times after ``backoff_s``; other 4xx and unreadable answers are not (retrying will not fix
them). When every attempt failed the ``fallback`` engine (normally the embedded Whisper) answers, or
:class:`ExternalError` is raised when there is none. :meth:`ExternalTranscriber.stats` counts requests
(HTTP attempts), failures (failed attempts) and fallbacks.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
import uuid
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine import SAMPLE_RATE, Transcriber, Transcript, as_float32_16k
from .whisper import WhisperOptions

log = logging.getLogger("media.speech.external")

PATH = "/v1/audio/transcriptions"
_FIGURES = ("avg_logprob", "no_speech_prob", "compression_ratio")


class ExternalError(RuntimeError):
    """The server did not answer usefully (and there is no fallback)."""


class _Retryable(ExternalError):
    """A failure worth another attempt (connection, timeout, 5xx, 429)."""


@dataclass(frozen=True)
class ExternalOptions:
    """Where and how to ask. ``url`` is the server's base (``http://host:port``) or the full endpoint."""

    url: str
    model: str = "whisper-1"
    language: str = "ko"
    response_format: str = "verbose_json"
    timeout_s: float = 10.0
    retries: int = 1
    backoff_s: float = 0.25
    api_key: str | None = None
    #: the hallucination filter's thresholds, used when the answer has segments (verbose_json)
    filter: WhisperOptions = WhisperOptions()

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith(PATH) else base + PATH


@dataclass(frozen=True)
class ExternalStats:
    """Counters since the engine was made."""

    requests: int = 0
    failures: int = 0
    fallbacks: int = 0


class ExternalTranscriber:
    """:class:`~media.speech.engine.Transcriber` through an OpenAI-compatible server, with fallback."""

    def __init__(self, options: ExternalOptions, fallback: Transcriber | None = None) -> None:
        if options.response_format not in ("json", "verbose_json"):
            raise ValueError(f"response_format must be json or verbose_json, not {options.response_format!r}")
        self.options = options
        self.fallback = fallback
        self._lock = threading.Lock()
        self._requests = self._failures = self._fallbacks = 0

    @property
    def name(self) -> str:
        return "external"

    def stats(self) -> ExternalStats:
        with self._lock:
            return ExternalStats(self._requests, self._failures, self._fallbacks)

    def transcribe(self, samples_16k: np.ndarray) -> Transcript:
        audio = as_float32_16k(samples_16k)
        t0 = time.perf_counter()
        try:
            answer = self._ask(wav_bytes(audio))
        except ExternalError as exc:
            if self.fallback is None:
                raise
            with self._lock:
                self._fallbacks += 1
            log.warning("speech server %s failed (%s): falling back to %s", self.options.endpoint, exc,
                        self.fallback.name)
            return self.fallback.transcribe(audio)
        return self._transcript(answer, time.perf_counter() - t0, audio.size / SAMPLE_RATE)

    # -- HTTP ------------------------------------------------------------------------------------
    def _ask(self, wav: bytes) -> dict[str, Any]:
        o = self.options
        body, content_type = multipart_body(
            {"model": o.model, "language": o.language, "response_format": o.response_format},
            "file", "utterance.wav", "audio/wav", wav,
        )
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if o.api_key:
            headers["Authorization"] = f"Bearer {o.api_key}"
        last: ExternalError = ExternalError("no attempt made")
        for attempt in range(o.retries + 1):
            if attempt:
                time.sleep(o.backoff_s * attempt)
            with self._lock:
                self._requests += 1
            try:
                return self._attempt(body, headers)
            except ExternalError as exc:
                with self._lock:
                    self._failures += 1
                last = exc
                if not isinstance(exc, _Retryable):
                    break
        raise last

    def _attempt(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(self.options.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.options.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            kind = _Retryable if exc.code >= 500 or exc.code == 429 else ExternalError
            raise kind(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # timeouts are OSErrors
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{type(reason).__name__}: {reason}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ExternalError(f"not JSON: {raw[:80]!r}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise ExternalError(f"no text in the answer: {raw[:80]!r}")
        segments = answer.get("segments")
        if segments is not None and not (isinstance(segments, list) and all(
            isinstance(seg, dict) and all(isinstance(seg.get(k, 0.0), int | float) for k in _FIGURES)
            for seg in segments
        )):
            raise ExternalError(f"malformed segments in the answer: {raw[:80]!r}")
        return answer

    def _transcript(self, answer: dict[str, Any], seconds: float, audio_seconds: float) -> Transcript:
        o = self.options
        segments = answer.get("segments")
        text, dropped = answer["text"].strip(), 0
        avg_logprob = no_speech = math.nan
        if segments:  # checked by _attempt: a list of dicts with numeric figures
            f = o.filter
            kept = [s for s in segments
                    if float(s.get("no_speech_prob", 0.0)) < f.no_speech_threshold
                    and float(s.get("avg_logprob", 0.0)) >= f.logprob_threshold
                    and float(s.get("compression_ratio", 0.0)) <= f.compression_ratio_threshold]
            dropped = len(segments) - len(kept)
            described = kept or segments
            text = " ".join(str(s.get("text", "")).strip() for s in kept if str(s.get("text", "")).strip())
            avg_logprob = sum(float(s.get("avg_logprob", 0.0)) for s in described) / len(described)
            no_speech = max(float(s.get("no_speech_prob", 0.0)) for s in described)
        return Transcript(text=text, language=str(answer.get("language") or o.language), avg_logprob=avg_logprob,
                          no_speech_prob=no_speech, engine=self.name, model_version=f"{o.model} @ {o.endpoint}",
                          seconds=seconds, audio_seconds=audio_seconds, dropped=dropped)


def wav_bytes(samples_16k: np.ndarray) -> bytes:
    """16 kHz float32 samples -> a 16-bit mono WAV file in memory."""
    pcm = np.clip(np.round(samples_16k * 32768.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def multipart_body(fields: dict[str, str], file_field: str, filename: str, file_type: str,
                   data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body (RFC 7578) with text fields and one file; returns (body, content type)."""
    boundary = f"----speech{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: {file_type}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
