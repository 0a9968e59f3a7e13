"""Detection in its own processes: the audio tap's batches in, :class:`~.events.Detection` results out.

Nothing here runs in the event loop or the media tick:

* the **segmenter** process reads :class:`~media.tap.TapBatch` from the tap channel, cuts each tapped
  leg's audio into utterances (:class:`media.speech.vad.Segmenter`), follows its level against the
  caller's own baseline (:class:`media.loudness.ShoutTracker`, with the shouting settings of the leg's
  department, sent as :class:`Watch` on the control queue), keeps the last seconds of audio for the
  evidence clip, and queues a :class:`Job` per utterance; two seconds after each utterance (or when the
  leg is no longer watched) the whole clip, 2 s before to 2 s after, follows as an
  :class:`~.events.EvidenceClip`;
* **recognizer** processes (``workers``) take jobs, transcribe them (the embedded Whisper engine or an
  external OpenAI-compatible server) and classify the text (:mod:`b2bua.abuse`), and put the result on
  the results queue;
* in the B2BUA process one thread waits on the results queue and hands each result to the event loop
  (``call_soon_threadsafe``), where the abuse policy acts on it.

Every queue is bounded and written with ``put_nowait``: when recognition falls behind, utterances are
dropped and counted (``jobs_dropped``), and the tap drops its batches (``tap_dropped_frames``) before
media or signalling would ever wait. A call's legs are forgotten when it ends (:class:`Unwatch`), or when
they sent nothing for :data:`STREAM_IDLE_S`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config
from .events import Detection, EvidenceClip

if TYPE_CHECKING:  # the recognizers import them; the B2BUA process never loads scikit-learn or Whisper
    from media.speech.engine import Transcriber
    from media.tap import TapBatch

    from ..abuse.classifier import AbuseClassifier

log = logging.getLogger("b2bua.detection")

RATE = 8000
#: seconds of audio around an utterance kept for its evidence clip
CLIP_BEFORE_S = 2.0
CLIP_AFTER_S = 2.0
#: the longest utterance the segmenter cuts, with a margin
LONGEST_UTTERANCE_S = 12.0
#: a tapped leg that sent nothing this long (hold, silence suppression, the call's end) has its pending
#: clips sent with what there is
CLIP_IDLE_S = CLIP_AFTER_S + 0.5
#: a tapped leg silent this long whose end was never heard (no :class:`Unwatch`) is forgotten
STREAM_IDLE_S = 120.0
#: the detection processes' niceness (the B2BUA and its media workers keep 0)
NICE = 10
#: how much a shouting cue raises the score of an abusive utterance, at 10 dB or more above the baseline
SHOUT_BOOST = 0.15


@dataclass(frozen=True, slots=True)
class DetectionSettings:
    """What the spawned processes need (plain values: they cross a process boundary)."""

    model_dir: str
    lexicon: str
    model_cache: str
    engine: str = "embedded"  # embedded | external
    external_url: str | None = None
    external_timeout_s: float = 10.0
    threads: int = 1
    shout_dbfs: float = -8.0
    shout_seconds: float = 2.0
    jobs_queue: int = 32


@dataclass(frozen=True, slots=True)
class Utterance:
    """What the segmenter found in a stream: the utterance (16 kHz float32 for the recognizer), its clip so
    far (int16 8 kHz, from ``clip_start``) and the shouting cue around it."""

    start: float
    end: float
    samples: np.ndarray
    clip: bytes
    clip_start: float
    shout_excess_db: float | None


@dataclass(frozen=True, slots=True)
class Job:
    """One utterance of a tapped leg, for a recognizer."""

    session: str
    leg: str
    utterance: Utterance


@dataclass(frozen=True, slots=True)
class Watch:
    """A leg starts being tapped: its department's shouting settings (``policy.abuse``)."""

    session: str
    leg: str
    shout_dbfs: float
    shout_seconds: float


@dataclass(frozen=True, slots=True)
class Unwatch:
    """A call's legs are no longer tapped (the call ended): their pending clips go out now."""

    session: str


@dataclass(frozen=True, slots=True)
class Counters:
    """A process's counters, sent on the results queue every second."""

    who: str
    values: dict[str, int]


# -- the segmenter process ---------------------------------------------------------------------------
class _Stream:
    """One tapped leg in the segmenter."""

    def __init__(self, shout_dbfs: float, shout_seconds: float):
        from media.speech.vad import Segmenter

        self.segmenter = Segmenter()
        self.cues: list[tuple[float, float, float]] = []  # (start, end, excess dB) of recent cues
        self.audio = np.zeros(0, np.int16)  # the last seconds, ending at ``fed`` samples
        self.fed = 0
        self.seen = time.monotonic()
        #: utterances whose clip still waits for the seconds after them: (start, first clip sample, last)
        self.pending: list[tuple[float, int, int]] = []
        self.watch(shout_dbfs, shout_seconds)

    def watch(self, shout_dbfs: float, shout_seconds: float) -> None:
        """Follow the level with these settings (a new baseline: a department's settings come first)."""
        from media.loudness import ShoutTracker

        self.shout = ShoutTracker(shout_dbfs, shout_seconds)

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        self.seen = time.monotonic()
        self.fed += len(samples)
        keep = int((CLIP_BEFORE_S + LONGEST_UTTERANCE_S + CLIP_AFTER_S) * RATE)
        self.audio = np.concatenate([self.audio, samples])[-keep:]
        for cue in self.shout.feed(samples):
            self.cues = [c for c in self.cues if c[1] > cue.start - 30.0] + [(cue.start, cue.end, cue.excess_db)]
        out = []
        for u in self.segmenter.feed(samples):
            first = self.fed - len(self.audio)  # the sample the kept audio starts at
            lo = max(first, int((u.start - CLIP_BEFORE_S) * RATE))
            out.append(Utterance(u.start, u.end, u.samples, self.audio[lo - first:].tobytes(), lo / RATE,
                                 self._shouting(u.start, u.end)))
            self.pending.append((u.start, lo, int((u.end + CLIP_AFTER_S) * RATE)))
        return out

    def clips(self, final: bool = False) -> list[tuple[float, bytes, float]]:
        """The whole clips (utterance start, int16 audio, clip start) whose seconds after have come, or all
        pending ones with what there is when the leg is no longer heard (``final``)."""
        first = self.fed - len(self.audio)
        done = [p for p in self.pending if final or p[2] <= self.fed]
        self.pending = [p for p in self.pending if p not in done]
        return [(start, self.audio[max(lo, first) - first:min(hi, self.fed) - first].tobytes(), max(lo, first) / RATE)
                for start, lo, hi in done]

    def _shouting(self, start: float, end: float) -> float | None:
        excess = [db for s, e, db in self.cues if s < end and e > start]
        since = self.shout.loud_since()
        if since is not None and since < end and (now := self.shout.excess_now()) is not None:
            excess.append(now)
        return max(excess) if excess else None


def _serve(source: Any, results: Any, who: str, counters: Counter[str], handle: Callable[[Any], None],
           parent: int) -> None:
    """A detection process's loop: ``handle`` every item of ``source`` (and None once a second when idle),
    report ``counters`` every second, end at ``"stop"``, when the queue is gone, or when the B2BUA that
    started it is gone (``kill -9``: nobody says "stop", and a queue never reports its writer's death)."""
    last_report = time.monotonic()
    while True:
        if os.getppid() != parent:  # reparented: the B2BUA (pid ``parent``) is gone
            return
        try:
            item = source.get(timeout=1.0)
        except queue.Empty:
            item = None
        except (EOFError, OSError):
            return
        if isinstance(item, str) and item == "stop":
            return
        handle(item)
        if time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            _offer(results, Counters(who, dict(counters)))


def _below_media() -> None:
    """Detection yields the CPU to the media relay and signalling: when the cores are busy, recognition falls
    behind (and drops utterances, counted) rather than RTP being delayed."""
    try:
        os.nice(NICE)
    except OSError:
        pass


def _segmenter_main(tap: Any, control: Any, jobs: Any, results: Any, settings: DetectionSettings,
                    parent: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _below_media()
    streams: dict[tuple[str, str], _Stream] = {}
    watched: dict[tuple[str, str], Watch] = {}
    counters: Counter[str] = Counter()

    def stream_of(key: tuple[str, str]) -> _Stream:
        stream = streams.get(key)
        if stream is None:
            w = watched.get(key)
            stream = streams[key] = _Stream(w.shout_dbfs if w else settings.shout_dbfs,
                                            w.shout_seconds if w else settings.shout_seconds)
            counters["streams"] += 1
        return stream

    def send_clips(key: tuple[str, str], stream: _Stream, final: bool = False) -> None:
        for start, clip, clip_start in stream.clips(final):
            _offer(results, EvidenceClip(key[0], key[1], start, clip, clip_start))

    def forget(key: tuple[str, str]) -> None:
        stream = streams.pop(key, None)
        watched.pop(key, None)
        if stream is not None:
            send_clips(key, stream, final=True)

    def steer() -> None:
        while True:
            try:
                item = control.get_nowait()
            except (queue.Empty, EOFError, OSError):
                return
            match item:
                case Watch(session, leg):
                    watched[(session, leg)] = item
                    if (stream := streams.get((session, leg))) is not None:  # its audio came first
                        stream.watch(item.shout_dbfs, item.shout_seconds)
                case Unwatch(session):
                    for key in [k for k in {*streams, *watched} if k[0] == session]:
                        forget(key)

    def handle(batch: TapBatch | None) -> None:
        steer()
        for key, raw in (batch.frames.items() if batch is not None else ()):
            stream = stream_of(key)
            for u in stream.feed(np.frombuffer(raw, np.int16)):
                counters["utterances"] += 1
                try:
                    jobs.put_nowait(Job(key[0], key[1], u))
                except queue.Full:
                    counters["jobs_dropped"] += 1
            send_clips(key, stream)
        now = time.monotonic()
        for key, stream in list(streams.items()):
            if now - stream.seen > STREAM_IDLE_S:
                forget(key)
            elif stream.pending and now - stream.seen > CLIP_IDLE_S:
                send_clips(key, stream, final=True)
        counters["active_streams"] = len(streams)

    _serve(tap, results, "segmenter", counters, handle, parent)


# -- the recognizer processes ------------------------------------------------------------------------
def _transcriber(settings: DetectionSettings) -> Any:
    from media.speech.model import ensure_model
    from media.speech.whisper import WhisperOptions, WhisperTranscriber

    embedded = WhisperTranscriber(ensure_model(settings.model_dir).path,
                                  WhisperOptions(cpu_threads=settings.threads))
    if settings.engine == "external" and settings.external_url:
        from media.speech.external import ExternalOptions, ExternalTranscriber

        return ExternalTranscriber(ExternalOptions(settings.external_url, timeout_s=settings.external_timeout_s),
                                   fallback=embedded)
    return embedded


def _classifier(settings: DetectionSettings) -> AbuseClassifier:
    from ..abuse.classifier import AbuseClassifier

    return AbuseClassifier.load(settings.lexicon, settings.model_cache)


def _recognizer_main(jobs: Any, results: Any, settings: DetectionSettings, n: int, parent: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    _below_media()
    transcriber = _transcriber(settings)
    classifier = _classifier(settings)
    counters: Counter[str] = Counter()

    def handle(job: Job | None) -> None:
        if job is not None:
            try:
                classifier.reload_if_changed()  # `b2bua abuse models --activate/--rollback`, `retrain`
                results.put(detect(job, transcriber, classifier))
                counters["detections"] += 1
            except Exception:  # one bad utterance must not stop the worker
                counters["errors"] += 1
                log.exception("detection of an utterance of %s failed", job.session)
        _count_external(transcriber, counters)

    _serve(jobs, results, f"recognizer-{n}", counters, handle, parent)


def _count_external(transcriber: Any, counters: Any) -> None:
    """The external speech server's requests, failed attempts and fallbacks, for metrics (the embedded
    engine has no such counters)."""
    if (stats := getattr(transcriber, "stats", None)) is not None:
        external = stats()
        counters["external_requests"] = external.requests
        counters["external_failures"] = external.failures
        counters["external_fallbacks"] = external.fallbacks


def detect(job: Job, transcriber: Transcriber, classifier: AbuseClassifier) -> Detection:
    """Transcribe and classify one utterance; a shouting cue raises the score of abusive words."""
    u = job.utterance
    transcript = transcriber.transcribe(u.samples)
    text = transcript.text.strip()
    verdict = classifier.classify(text) if text else None
    score = verdict.score if verdict is not None else 0.0
    if verdict is not None and verdict.abusive and u.shout_excess_db is not None:
        score = min(1.0, score + SHOUT_BOOST * min(1.0, max(0.0, u.shout_excess_db) / 10.0))
    text_model = getattr(getattr(classifier, "model", None), "version", "")
    return Detection(job.session, job.leg, u.start, u.end, text,
                     verdict.category if verdict is not None else None, round(score, 4),
                     bool(verdict is not None and verdict.abusive), u.shout_excess_db,
                     asr_engine=transcript.engine,
                     model_version=f"{transcript.model_version} text:{text_model}" if text_model else
                     transcript.model_version,
                     clip=u.clip, clip_start=u.clip_start)


def _offer(results: Any, item: object) -> None:
    try:
        results.put_nowait(item)
    except queue.Full:
        pass


# -- in the B2BUA process ----------------------------------------------------------------------------
class DetectionPool:
    """The segmenter and recognizer processes, the tap channel they read, and the results' way back."""

    def __init__(self, settings: DetectionSettings, workers: int = 1, *, tap_batches: int = 50):
        self.settings = settings
        self.workers = max(1, workers)
        ctx = mp.get_context("spawn")  # clean children: no copy of the signalling state
        self._ctx = ctx
        #: what the media engine writes (~100 ms a batch: 5 s of backlog before batches are dropped)
        self.tap_channel = ctx.Queue(maxsize=tap_batches)
        #: :class:`Watch` and :class:`Unwatch` from the B2BUA process (a few per call: unbounded)
        self._control = ctx.Queue()
        self._jobs = ctx.Queue(maxsize=settings.jobs_queue)
        self._results = ctx.Queue(maxsize=1000)
        self._procs: list[Any] = []
        self._thread: threading.Thread | None = None
        self.counters: dict[str, dict[str, int]] = {}
        self.on_detection: Callable[[Detection], None] | None = None
        self.on_clip: Callable[[EvidenceClip], None] | None = None

    @property
    def started(self) -> bool:
        return bool(self._procs)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn the processes and the results' reader (once; later calls do nothing)."""
        if self._procs:
            return
        procs = [self._ctx.Process(target=_segmenter_main, name="detect-segmenter", daemon=True,
                                   args=(self.tap_channel, self._control, self._jobs, self._results,
                                         self.settings, os.getpid()))]
        procs += [self._ctx.Process(target=_recognizer_main, name=f"detect-recognizer-{i}", daemon=True,
                                    args=(self._jobs, self._results, self.settings, i, os.getpid()))
                  for i in range(self.workers)]
        for p in procs:
            p.start()
        self._procs = procs
        self._thread = threading.Thread(target=self._read, args=(loop,), name="detection-results", daemon=True)
        self._thread.start()
        log.info("abuse detection: 1 segmenter, %d recognizer process(es)", self.workers)

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                item = self._results.get()
            except (EOFError, OSError, ValueError):
                return
            if item == "stop":
                return
            match item:
                case Counters(who, values):
                    self.counters[who] = values
                    continue
                case Detection():
                    target: Callable[[Any], None] | None = self.on_detection
                case EvidenceClip():
                    target = self.on_clip
                case _:
                    continue
            if target is not None:
                try:
                    loop.call_soon_threadsafe(target, item)
                except RuntimeError:  # the loop is closed: shutting down
                    return

    def watch(self, session: str, leg: str, shout_dbfs: float, shout_seconds: float) -> None:
        """A leg of a call starts being tapped, with its department's shouting settings."""
        self._control.put_nowait(Watch(session, leg, shout_dbfs, shout_seconds))

    def unwatch(self, session: str) -> None:
        """The call ended: its legs' pending evidence clips are sent with what was heard."""
        self._control.put_nowait(Unwatch(session))

    def close(self) -> None:
        for q, n in ((self.tap_channel, 1), (self._jobs, self.workers)):
            for _ in range(n):
                try:
                    q.put_nowait("stop")
                except (queue.Full, ValueError, OSError):
                    pass
        for p in self._procs:
            p.join(3)
            if p.is_alive():
                p.kill()
        try:
            self._results.put_nowait("stop")
        except (queue.Full, ValueError, OSError):
            pass

    def totals(self) -> dict[str, int]:
        """The processes' counters added up (for metrics)."""
        total: Counter[str] = Counter()
        for values in self.counters.values():
            total.update(values)
        return dict(total)


def detection_pool(config: Config) -> DetectionPool | None:
    """The pool a configuration asks for: None when detection is off or no department uses it
    (a department turning it on later needs a restart, like the media settings)."""
    dcfg = config.process.detection
    if not dcfg.enabled or not any(d.policy.abuse.enabled for d in config.routing.departments):
        return None
    base = config.path.parent
    settings = DetectionSettings(
        model_dir=str(dcfg.model_dir_path(base).resolve()), lexicon=str(dcfg.lexicon_path(base).resolve()),
        model_cache=str(dcfg.model_cache_path(base).resolve()), engine=dcfg.engine, external_url=dcfg.external_url,
        external_timeout_s=dcfg.external_timeout_s, threads=dcfg.threads, jobs_queue=dcfg.jobs_queue)
    return DetectionPool(settings, dcfg.recognizers(), tap_batches=dcfg.tap_batches)


__all__ = ["Counters", "DetectionPool", "DetectionSettings", "Job", "Unwatch", "Utterance", "Watch", "detect",
           "detection_pool"]
