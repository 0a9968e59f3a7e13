"""media.speech.vad and media.speech.audio: utterances out of 8 kHz telephone audio, 8 -> 16 kHz."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from media import g711
from media.speech.audio import Upsampler, decode_file, upsample_8k
from media.speech.vad import Segmenter, SegmenterOptions, Utterance, segment, segment_8k

DATA = Path(__file__).resolve().parent / "data" / "korean-speech"
CLIPS = [row["file"] for row in csv.DictReader((DATA / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")]


def telephone(name: str) -> np.ndarray:
    """The clip as the B2BUA gets it: 8 kHz, G.711 mu-law encoded and decoded, int16."""
    x = np.clip(np.round(decode_file(DATA / name, 8000) * 32768), -32768, 32767).astype(np.int16)
    return g711.decode(g711.encode(x, g711.PCMU), g711.PCMU)


def reference_speech(name: str) -> tuple[float, float]:
    """First and last speech of the clip by faster-whisper's own whole-signal VAD (no padding)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    ts = get_speech_timestamps(decode_file(DATA / name), VadOptions(min_silence_duration_ms=400, speech_pad_ms=0))
    return ts[0]["start"] / 16000, ts[-1]["end"] / 16000


def bounds(us: list[Utterance]) -> list[tuple[float, float, bool]]:
    return [(round(u.start, 3), round(u.end, 3), u.forced) for u in us]


def test_upsampler_streams_exactly_and_keeps_duration() -> None:
    x = (np.random.default_rng(7).standard_normal(8000) * 3000).astype(np.int16)
    whole = upsample_8k(x)
    up = Upsampler()
    pieces = [up.process(x[i:i + 160]) for i in range(0, x.size, 160)] + [up.flush()]
    assert whole.dtype == np.float32 and whole.size == 16000
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    from scipy import signal  # installed with scikit-learn
    np.testing.assert_allclose(whole, signal.resample_poly(x / 32768.0, 2, 1), atol=1e-5)


def test_upsampled_tone_keeps_its_phase() -> None:
    t = np.arange(8000) / 8000
    y = upsample_8k((np.sin(2 * np.pi * 440 * t) * 16000).astype(np.int16))
    t16 = np.arange(16000) / 16000
    expected = np.sin(2 * np.pi * 440 * t16) * 16000 / 32768
    assert np.abs(y[200:-200] - expected[200:-200]).max() < 0.01  # aligned: the filter delay is removed


@pytest.mark.parametrize("name", CLIPS)
def test_one_utterance_around_the_clips_speech(name: str) -> None:
    x = telephone(name)
    us = segment_8k(x)
    ref_start, ref_end = reference_speech(name)
    report = f"{name}: {bounds(us)} vs speech {ref_start:.2f}-{ref_end:.2f}"
    assert 1 <= len(us) <= 2, report
    assert all(not u.forced for u in us[1:]) and (len(us) == 1 or us[0].forced), report  # a 2nd one: cut at 10 s
    assert ref_start - 0.25 <= us[0].start <= ref_start + 0.05, report
    assert ref_end - 0.15 <= us[-1].end <= ref_end + 0.25, report
    for a, b in zip(us, us[1:], strict=False):
        assert a.end <= b.start + 1e-9, report
    for u in us:
        assert u.duration <= 10.0 + 1e-9, report
        assert u.samples.dtype == np.float32 and u.samples.size == round(u.duration * 16000), report
        start = round(u.start * 16000)
        np.testing.assert_array_equal(u.samples, upsample_8k(x)[start:start + u.samples.size])


def test_file_and_stream_agree() -> None:
    clip = telephone(CLIPS[0])
    x = np.concatenate([clip, np.zeros(8000 * 20, dtype=np.int16), clip])  # over 30 s: the file is fed in chunks
    streamed = segment_8k(x)
    whole = segment(upsample_8k(x))
    odd_frames = segment_8k(x, frame=37)
    assert len(streamed) == 2 and bounds(streamed) == bounds(whole) == bounds(odd_frames)


def test_silence_and_quiet_noise_yield_nothing() -> None:
    rng = np.random.default_rng(3)
    assert segment_8k(np.zeros(8000 * 5, dtype=np.int16)) == []
    hiss = (rng.standard_normal(8000 * 5) * 30).astype(np.int16)  # about -60 dBFS
    assert segment_8k(hiss) == []
    seg = Segmenter()
    assert all(seg.feed(np.zeros(160, dtype=np.int16)) == [] for _ in range(200))
    assert seg.flush() == []


def test_a_long_stream_is_cut_at_ten_seconds() -> None:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    parts = []
    for name in ("zeroth_105_003_0699.wav", "zeroth_104_003_0280.wav", "zeroth_105_003_0029.wav"):
        x16 = decode_file(DATA / name)
        ts = get_speech_timestamps(x16, VadOptions(min_silence_duration_ms=400, speech_pad_ms=0))
        parts.append(telephone(name)[ts[0]["start"] // 2: ts[-1]["end"] // 2])  # speech only, no pause
    stream = np.concatenate(parts)
    assert stream.size / 8000 > 25
    us = segment_8k(stream)
    report = str(bounds(us))
    assert len(us) >= 3 and sum(u.forced for u in us) >= 2, report
    assert all(u.duration <= 10.0 + 1e-9 for u in us), report
    assert any(abs(u.duration - 10.0) < 0.05 for u in us if u.forced), report
    assert us[0].start < 0.1 and us[-1].end > stream.size / 8000 - 0.5, report
    for a, b in zip(us, us[1:], strict=False):
        assert 0 <= b.start - a.end < 0.5, report  # nothing of the speech is lost between the pieces
    up = upsample_8k(stream)
    for u in us:
        start = round(u.start * 16000)
        np.testing.assert_array_equal(u.samples, up[start:start + u.samples.size])


def test_speech_after_silence_has_stream_offsets() -> None:
    x = telephone(CLIPS[1])
    gap = np.zeros(8000 * 3, dtype=np.int16)
    us = segment_8k(np.concatenate([gap, x, gap, x]))
    single = segment_8k(x)
    assert len(us) == 2 * len(single), bounds(us)
    length = x.size / 8000
    assert abs(us[0].start - (3 + single[0].start)) < 0.05, bounds(us)
    assert abs(us[-1].end - (6 + length + single[-1].end)) < 0.05, bounds(us)


def test_max_length_option() -> None:
    us = segment_8k(telephone("zeroth_104_003_0280.wav"), SegmenterOptions(max_utterance_s=4.0))
    assert len(us) >= 3 and all(u.duration <= 4.0 + 1e-9 for u in us), bounds(us)
