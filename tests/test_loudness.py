"""The shouting cue (media/loudness.py): loud against the caller's own baseline, never alone a verdict."""

from __future__ import annotations

import numpy as np
from rtp_peer import speech_like

from media.loudness import BASELINE_FRAMES, ShoutTracker, frame_levels


def _at_level(samples: np.ndarray, dbfs: float) -> np.ndarray:
    """``samples`` scaled so its RMS is ``dbfs``."""
    x = samples.astype(np.float64)
    rms = np.sqrt(np.mean(x * x)) / 32768.0
    return np.clip(x * (10 ** (dbfs / 20) / rms), -32768, 32767).astype(np.int16)


def _feed(tracker: ShoutTracker, samples: np.ndarray, chunk: int = 800) -> list:
    cues = []
    for i in range(0, len(samples), chunk):  # 100 ms batches, as the tap hands them over
        cues += tracker.feed(samples[i:i + chunk])
    return cues + tracker.finish()


def test_frame_levels_are_dbfs() -> None:
    full = np.full(1600, 32767, np.int16)
    assert np.allclose(frame_levels(full), 0.0, atol=0.01)
    assert np.allclose(frame_levels(_at_level(speech_like(1.0), -20.0)).mean(), -20.0, atol=3.0)
    assert frame_levels(np.zeros(480, np.int16)).tolist() == [-120.0] * 3


def test_a_caller_who_raises_the_voice_well_above_the_own_baseline_is_cued() -> None:
    calm = _at_level(speech_like(6.0, seed=1), -30.0)
    loud = _at_level(speech_like(3.0, seed=2), -5.0)  # 25 dB up and above the absolute -8 dBFS floor
    tracker = ShoutTracker(shout_dbfs=-8.0, seconds=2.0, margin_db=10.0)
    cues = _feed(tracker, np.concatenate([calm, loud, calm[:16000]]))
    assert len(cues) == 1
    cue = cues[0]
    assert 5.5 <= cue.start <= 6.5 and 8.5 <= cue.end <= 9.5, cue
    assert -34 < cue.baseline_dbfs < -26 and cue.excess_db > 12


def test_an_evenly_loud_caller_is_the_baseline_and_a_short_outburst_is_no_cue() -> None:
    steady = _at_level(speech_like(10.0, seed=3), -6.0)  # a hot line: above the absolute -8 all along
    burst = _at_level(speech_like(1.0, seed=4), 0.0)  # one loud second: shorter than the 2 s window
    tracker = ShoutTracker(shout_dbfs=-8.0, seconds=2.0)
    assert _feed(tracker, np.concatenate([steady, burst, steady[:8000]])) == []
    base = tracker.baseline
    assert base is not None and -10 < base[0] < -2


def test_nothing_is_cued_before_the_caller_has_a_baseline_nor_under_the_absolute_floor() -> None:
    tracker = ShoutTracker(shout_dbfs=-8.0, seconds=2.0)
    assert tracker.baseline is None and tracker.limit() is None
    assert _feed(tracker, _at_level(speech_like(2.9, seed=5), -2.0)) == []  # loud from the first word
    raised = ShoutTracker(shout_dbfs=-8.0, seconds=2.0, margin_db=10.0)
    calm, up = _at_level(speech_like(6.0, seed=1), -30.0), _at_level(speech_like(3.0, seed=2), -16.0)
    assert _feed(raised, np.concatenate([calm, up])) == []  # 14 dB up on a quiet line, still under -8 dBFS
    quiet = ShoutTracker()
    assert _feed(quiet, np.zeros(8000 * 5, np.int16)) == [] and quiet.baseline is None


def test_the_baseline_needs_a_full_window_and_two_more_seconds_of_speech() -> None:
    tracker = ShoutTracker(seconds=2.0)
    tracker.feed(_at_level(speech_like((tracker.window + BASELINE_FRAMES - 10) / 50, seed=6), -25.0))
    assert tracker.baseline is None
    tracker.feed(_at_level(speech_like(1.0, seed=7), -25.0))
    base = tracker.baseline
    assert base is not None and -28 < base[0] < -22 and base[1] < 3  # the smoothed level hardly moves
