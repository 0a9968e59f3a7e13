"""Prompt audio for call features: the prompt library plus the call-progress tones, cached.

The prompts a configuration names were decoded when it was loaded (``config._cross_check``), into
the library's process-wide cache, so a call never waits for a decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from media import tones
from media.prompts_lib import PromptLibrary


class PromptSource:
    """What :class:`~b2bua.call.protection.StaffProtection` plays, as 8 kHz int16 arrays."""

    def __init__(self, base: Path):
        self.library = PromptLibrary(base=base)
        self._ringback: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray:
        return self.library.get(name)

    def ringback(self, name: str) -> np.ndarray:
        """The prompt, a pause, then two ringback cadences: played in a loop while staff phones ring."""
        samples = self._ringback.get(name)
        if samples is None:
            samples = self._ringback[name] = tones.with_ringback(self.get(name))
        return samples

    def beep(self) -> np.ndarray:
        return tones.beep()

    def refused(self) -> np.ndarray:
        return tones.refused()
