"""Call-progress tones synthesised once as 8 kHz int16 arrays (ringback, beeps).

Korean ringback is 440 + 480 Hz, 1 s on and 2 s off (the same cadence as North America's,
TTA/KS X 6201); the beeps are short 1 kHz / 480 Hz bursts that only staff hear.
"""

from __future__ import annotations

from functools import cache

import numpy as np

RATE = 8000


def _tone(freqs: tuple[float, ...], seconds: float, level: float = 0.25) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    ramp = min(len(t) // 2, 40)  # 5 ms fades: no clicks
    env = np.ones(len(t))
    if ramp:
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
    return (wave * env * level * 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), dtype=np.int16)


@cache
def ringback(cycles: int = 1) -> np.ndarray:
    """``cycles`` ringback cadences (1 s tone, 2 s silence)."""
    one = np.concatenate([_tone((440.0, 480.0), 1.0), silence(2.0)])
    return np.tile(one, cycles)


@cache
def beep() -> np.ndarray:
    """The short tone that tells staff a key was taken (recording on/off)."""
    return np.concatenate([_tone((1000.0,), 0.15, 0.3), silence(0.05)])


@cache
def refused() -> np.ndarray:
    """Two low beeps: the key did nothing (the long-call limit has not passed yet)."""
    low = _tone((480.0,), 0.12, 0.3)
    return np.concatenate([low, silence(0.08), low, silence(0.05)])


def with_ringback(prompt: np.ndarray, cycles: int = 2) -> np.ndarray:
    """A prompt followed by ringback cadences: looped, the caller hears notice, ring, notice, ..."""
    return np.concatenate([prompt, silence(0.5), ringback(cycles)]).astype(np.int16)


__all__ = ["beep", "refused", "ringback", "silence", "with_ringback"]
