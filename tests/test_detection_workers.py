"""Detection's processes (b2bua/detection/workers.py): utterances cut from the tapped stream with their
evidence clip, the shouting boost, and a round trip through the real segmenter and recognizer processes
with the embedded Whisper engine and the text classifier."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from b2bua.detection.events import Detection, EvidenceClip
from b2bua.detection.workers import (
    NICE,
    DetectionPool,
    DetectionSettings,
    Job,
    Unwatch,
    Utterance,
    Watch,
    _count_external,
    _segmenter_main,
    _Stream,
    detect,
)
from media import g711
from media.speech.audio import decode_file
from media.tap import TapBatch

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "tests" / "data" / "korean-speech"
CLIP = "zeroth_104_003_0294.wav"  # 한 잔의 커피가 소비자에게 전해지기 위해선 여러 차례의 공정을 거쳐야 한다
CLEAN = "zeroth_104_003_0352.wav"  # 다른 지역에서는 그곳이 아무리 넓다 하더라도 ...


def _phone(name: str) -> np.ndarray:
    """A clip as the caller's phone sends it: 8 kHz, through G.711 µ-law and back."""
    x = decode_file(CLIPS / name, 8000)
    pcm = np.clip(x * 32767, -32768, 32767).astype(np.int16)
    return g711.decode(g711.encode(pcm, 0), 0)


@dataclass
class _Transcript:
    text: str
    engine: str = "fake"
    model_version: str = "v0"


class _Ear:
    def __init__(self, text: str):
        self.text = text

    def transcribe(self, samples: np.ndarray) -> _Transcript:
        return _Transcript(self.text)


@dataclass(frozen=True)
class _Verdict:
    abusive: bool
    category: str | None
    score: float


class _Judge:
    def __init__(self, verdict: _Verdict):
        self.verdict = verdict
        self.asked: list[str] = []

    def classify(self, text: str) -> _Verdict:
        self.asked.append(text)
        return self.verdict


def _job(shout: float | None) -> Job:
    return Job("c1", "a", Utterance(1.0, 3.0, np.zeros(32000, np.float32), b"\x00\x01" * 10, 0.0, shout))


def test_shouting_raises_the_score_of_abuse_and_never_of_clean_words() -> None:
    abusive = _Judge(_Verdict(True, "insult", 0.6))
    assert detect(_job(None), _Ear("이 멍청아"), abusive).score == 0.6  # type: ignore[arg-type]
    loud = detect(_job(12.0), _Ear("이 멍청아"), abusive)  # type: ignore[arg-type]
    assert loud.score == pytest.approx(0.75) and loud.shout_excess_db == 12.0 and loud.category == "insult"
    clean = detect(_job(20.0), _Ear("왜 처리가 안 돼요"), _Judge(_Verdict(False, None, 0.2)))  # type: ignore[arg-type]
    assert clean.score == 0.2 and not clean.abusive and clean.shout_excess_db == 20.0
    judge = _Judge(_Verdict(True, "insult", 0.9))
    silent = detect(_job(None), _Ear("  "), judge)  # type: ignore[arg-type]
    assert judge.asked == [] and silent.text == "" and not silent.abusive and silent.category is None
    assert loud.clip == b"\x00\x01" * 10 and isinstance(loud, Detection)


def _feed(stream: _Stream, audio: np.ndarray) -> list:
    found = []
    for i in range(0, len(audio), 800):  # 100 ms batches, as the tap hands them over
        found += stream.feed(audio[i:i + 800])
    return found


def test_the_stream_cuts_utterances_with_two_seconds_of_audio_before_them() -> None:
    stream = _Stream(-8.0, 2.0)
    speech = _phone(CLIP)
    audio = np.concatenate([np.zeros(8000 * 3, np.int16), speech, np.zeros(8000, np.int16)])
    found = _feed(stream, audio)
    assert found, "no utterance in a clip of read speech"
    u = found[0]
    assert 2.5 <= u.start <= 3.5 and u.end > u.start + 1.0
    assert u.samples.dtype == np.float32 and len(u.samples) == pytest.approx((u.end - u.start) * 16000, abs=16)
    assert u.clip_start == pytest.approx(u.start - 2.0, abs=0.01) and u.shout_excess_db is None
    clip_audio = np.frombuffer(u.clip, np.int16)
    lead = int((u.start - u.clip_start) * 8000)
    first = int(u.clip_start * 8000)
    assert np.array_equal(clip_audio[:lead], audio[first:first + lead])


def test_the_whole_clip_follows_with_two_seconds_after_the_utterance() -> None:
    stream = _Stream(-8.0, 2.0)
    speech = _phone(CLIP)
    noise = (np.random.default_rng(1).standard_normal(8000 * 4) * 30).astype(np.int16)  # the line after it
    audio = np.concatenate([np.zeros(8000 * 3, np.int16), speech, noise])
    found = _feed(stream, audio[:8000 * 3 + len(speech) + 4000])  # 0.5 s after the speech: cut, not complete
    assert len(found) == 1 and stream.clips() == []
    _feed(stream, audio[8000 * 3 + len(speech) + 4000:])
    (start, clip, clip_start), = stream.clips()
    u = found[0]
    assert start == u.start and clip_start == u.clip_start
    whole = np.frombuffer(clip, np.int16)
    lo = round(clip_start * 8000)
    assert len(whole) == round((u.end + 2.0) * 8000) - lo  # 2 s before to 2 s after
    assert np.array_equal(whole, audio[lo:lo + len(whole)])
    assert bytes(clip).startswith(u.clip[:len(u.clip) - 1600])  # the first clip is its beginning
    assert stream.clips() == [] and stream.clips(final=True) == []  # sent once


def test_a_leg_no_longer_heard_sends_its_pending_clip_with_what_there_is() -> None:
    stream = _Stream(-8.0, 2.0)
    speech = _phone(CLIP)
    audio = np.concatenate([np.zeros(8000 * 3, np.int16), speech, np.zeros(4800, np.int16)])
    u, = _feed(stream, audio)
    (start, clip, clip_start), = stream.clips(final=True)
    assert start == u.start and len(clip) // 2 == len(audio) - round(clip_start * 8000)


def _segmenter(items: list[object], control: list[object]) -> tuple[queue.Queue, queue.Queue, queue.Queue,
                                                                    queue.Queue, threading.Thread]:
    """The segmenter's loop in a thread, on plain queues (tap, control, jobs, results): ``items`` and
    ``control`` queued before it starts."""
    tap: queue.Queue[object] = queue.Queue()
    ctl: queue.Queue[object] = queue.Queue()
    jobs: queue.Queue[object] = queue.Queue()
    results: queue.Queue[object] = queue.Queue()
    for c in control:
        ctl.put(c)
    for item in items:
        tap.put(item)
    worker = threading.Thread(target=_segmenter_main, args=(tap, ctl, jobs, results,
                                                          DetectionSettings(model_dir="", lexicon="", model_cache=""),
                                                          os.getppid()))
    worker.start()
    return tap, ctl, jobs, results, worker


def _drained(q: queue.Queue) -> list:
    return [q.get() for _ in range(q.qsize())]


def _run_segmenter(items: list[object], control: list[object]) -> tuple[list[Job], list[object]]:
    """Everything through the segmenter, then its jobs and results."""
    tap, _, jobs, results, worker = _segmenter([*items, "stop"], control)
    worker.join(60)
    assert not worker.is_alive()
    return _drained(jobs), _drained(results)


def _said(name: str, gain_db: float = 0.0) -> np.ndarray:
    x = _phone(name).astype(np.float64) * 10 ** (gain_db / 20)
    return np.concatenate([np.clip(x, -32768, 32767).astype(np.int16), np.zeros(12000, np.int16)])


def test_each_leg_is_judged_by_its_own_departments_shouting_settings() -> None:
    """The same voice, raised 20 dB over its own baseline, on two legs: a department with the usual settings
    gets the cue, one whose absolute floor is full scale never does."""
    audio = np.concatenate([_said(CLEAN), _said(CLEAN, gain_db=20.0)])
    batches = [TapBatch({("c1", "a"): audio[i:i + 800].tobytes(), ("c2", "a"): audio[i:i + 800].tobytes()}, 0.0)
               for i in range(0, len(audio), 800)]
    jobs, _ = _run_segmenter(batches, [Watch("c1", "a", -8.0, 2.0), Watch("c2", "a", 0.0, 2.0)])
    loud = {j.session: j.utterance.shout_excess_db for j in jobs if j.utterance.start > len(_said(CLEAN)) / 8000 - 0.5}
    assert set(loud) == {"c1", "c2"}, [(j.session, j.utterance.start) for j in jobs]
    assert loud["c1"] is not None and loud["c1"] >= 10 and loud["c2"] is None


def test_a_call_that_ends_sends_the_clips_of_its_last_utterances() -> None:
    audio = np.concatenate([np.zeros(8000, np.int16), _phone(CLIP), np.zeros(4800, np.int16)])
    batches = [TapBatch({("c1", "a"): audio[i:i + 800].tobytes()}, 0.0) for i in range(0, len(audio), 800)]
    tap, ctl, jobs, results, worker = _segmenter(batches, [])
    deadline = time.monotonic() + 30
    while not tap.empty() and time.monotonic() < deadline:  # every batch taken (the last one maybe in hand)
        time.sleep(0.05)
    ctl.put(Unwatch("c1"))
    tap.put(None)  # read after the last batch is done, as when the segmenter wakes once a second
    tap.put("stop")
    worker.join(30)
    utterances = [j.utterance for j in _drained(jobs)]
    clips = [r for r in _drained(results) if isinstance(r, EvidenceClip)]
    assert utterances and sorted(c.start for c in clips) == sorted(u.start for u in utterances)
    last = max(clips, key=lambda c: c.start)
    assert last.session == "c1" and last.leg == "a"
    assert (max(u.end for u in utterances) + 2.0) * 8000 > len(audio)  # the call ended sooner
    assert len(last.clip) // 2 == len(audio) - round(last.clip_start * 8000)  # all that was heard after it


def test_the_external_servers_requests_are_counted_for_metrics() -> None:
    from media.speech.external import ExternalStats

    class Server:
        def stats(self) -> ExternalStats:
            return ExternalStats(requests=5, failures=2, fallbacks=1)

    counters: dict[str, int] = {}
    _count_external(Server(), counters)
    assert counters == {"external_requests": 5, "external_failures": 2, "external_fallbacks": 1}
    _count_external(_Ear("x"), counters)  # the embedded engine has no such counters: nothing changes
    assert counters["external_requests"] == 5


@pytest.mark.slow
def test_a_round_trip_through_the_real_processes_finds_the_word_of_the_lexicon(tmp_path: Path) -> None:
    """Tapped audio of a real clip in, a Detection with its transcript out: Whisper and the classifier in
    their own processes, the lexicon listing a word of the clip as an insult."""
    lexicon = tmp_path / "lexicon.yaml"
    lexicon.write_text(_with_entry(ROOT / "config" / "abuse_lexicon.yaml", "insult", "커피"), encoding="utf-8")
    settings = DetectionSettings(model_dir=str(ROOT / "var" / "whisper-base"), lexicon=str(lexicon),
                                 model_cache=str(ROOT / "var" / "abuse-models"), threads=2)
    pool = DetectionPool(settings, 1)
    got: list[Detection] = []
    niceness: list[int] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        pool.on_detection = got.append
        pool.start(loop)
        audio = np.concatenate([np.zeros(8000, np.int16), _phone(CLIP), np.zeros(16000, np.int16)])
        for i in range(0, len(audio), 800):
            pool.tap_channel.put(TapBatch({("c1", "a"): audio[i:i + 800].tobytes()}, time.monotonic()))
        deadline = time.monotonic() + 240  # the first use assembles the model and may train the classifier
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        niceness.extend(os.getpriority(os.PRIO_PROCESS, p.pid) - os.getpriority(os.PRIO_PROCESS, 0)
                        for p in pool._procs)

    try:
        asyncio.run(run())
    finally:
        pool.close()
    assert got, f"no detection; counters {pool.counters}"
    det = got[0]
    assert det.session == "c1" and det.leg == "a" and "커피" in det.text.replace(" ", ""), det.text
    assert det.abusive and det.category == "insult" and det.score >= 0.9
    assert det.asr_engine and det.model_version and len(det.clip) > 2 * 8000 * 2
    assert pool.totals().get("utterances", 0) >= 1
    assert niceness == [NICE, NICE]  # the segmenter and the recognizer yield the CPU to media and signalling


def _with_entry(path: Path, category: str, word: str) -> str:
    """The lexicon at ``path`` with ``word`` added to ``category``'s entries (a test's own word list)."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["categories"][category]["entries"].append(word)
    return yaml.safe_dump(data, allow_unicode=True)


def test_recognizers_default_to_half_the_cores_and_an_operator_may_say_how_many(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    from b2bua.config import DetectionConfig

    for cores, wanted in ((1, 1), (2, 1), (8, 4), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert DetectionConfig().recognizers() == wanted
    assert DetectionConfig(workers=3).recognizers() == 3


def test_detection_processes_end_when_the_b2bua_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the B2BUA: its detection processes must not live on (a recognizer holds ~350 MB). The
    recognizer here has no model to load and ends at once; the segmenter, in the same loop (``_serve``) as a
    recognizer that has loaded its model, must notice its parent is gone."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "b2bua_stand_in.py"
    script.write_text(
        "import asyncio, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from b2bua.detection.workers import DetectionPool, DetectionSettings\n"
        "async def main():\n"
        "    pool = DetectionPool(DetectionSettings(model_dir='/proc/no-such-model', lexicon='', "
        "model_cache=''), 1)\n"
        "    pool.start(asyncio.get_running_loop())\n"
        "    print(' '.join(str(p.pid) for p in pool._procs), flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    children = [int(x) for x in parent.stdout.readline().split()]
    assert len(children) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 15
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in children if _running(pid)]
    assert alive == [], f"detection processes outlived the B2BUA: {alive}"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is gone already
    except FileNotFoundError:
        return False
