"""Detection's processes (b2bua/detection/workers.py): utterances cut from the tapped stream with their
evidence clip, the shouting boost, and a round trip through the real segmenter and recognizer processes
with the embedded Whisper engine and the text classifier."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from b2bua.detection.events import Detection
from b2bua.detection.workers import DetectionPool, DetectionSettings, Job, _Stream, detect
from media import g711
from media.speech.audio import decode_file
from media.tap import TapBatch

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "tests" / "data" / "korean-speech"
CLIP = "zeroth_104_003_0294.wav"  # 한 잔의 커피가 소비자에게 전해지기 위해선 여러 차례의 공정을 거쳐야 한다


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
    return Job("c1", "a", 1.0, 3.0, np.zeros(32000, np.float32), b"\x00\x01" * 10, 0.0, shout)


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


def test_the_stream_cuts_utterances_with_two_seconds_of_audio_before_them() -> None:
    from b2bua.detection.workers import DetectionSettings

    stream = _Stream(DetectionSettings(model_dir="", lexicon="", model_cache=""))
    speech = _phone(CLIP)
    audio = np.concatenate([np.zeros(8000 * 3, np.int16), speech, np.zeros(8000, np.int16)])
    found = []
    for i in range(0, len(audio), 800):  # 100 ms batches, as the tap hands them over
        found += stream.feed(audio[i:i + 800])
    assert found, "no utterance in a clip of read speech"
    start, end, samples, clip, clip_start, shout = found[0]
    assert 2.5 <= start <= 3.5 and end > start + 1.0
    assert samples.dtype == np.float32 and len(samples) == pytest.approx((end - start) * 16000, abs=16)
    assert clip_start == pytest.approx(start - 2.0, abs=0.01) and shout is None
    clip_audio = np.frombuffer(clip, np.int16)
    lead = int((start - clip_start) * 8000)
    assert np.array_equal(clip_audio[:lead], audio[int(clip_start * 8000):int(clip_start * 8000) + lead])


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


def _with_entry(path: Path, category: str, word: str) -> str:
    """The lexicon at ``path`` with ``word`` added to ``category``'s entries (a test's own word list)."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["categories"][category]["entries"].append(word)
    return yaml.safe_dump(data, allow_unicode=True)
