"""The test peers' own judges (tests/rtp_peer.py): they must tell intact audio from broken audio."""

from __future__ import annotations

import numpy as np
from rtp_peer import heard_in_order, speech_like


def test_heard_in_order_accepts_delays_and_refuses_loss_swaps_and_other_audio() -> None:
    x = speech_like(2.0, seed=3)
    assert heard_in_order(x, x) == 1.0
    gap = np.concatenate([np.zeros(400, np.int16), x[:8000], np.zeros(2400, np.int16), x[8000:]])
    assert heard_in_order(x, gap) == 1.0  # a late burst shifted what followed: nothing lost
    lost = np.concatenate([x[:8000], x[9600:]])  # 200 ms missing
    assert 0.85 <= heard_in_order(x, lost) < 0.95
    swapped = np.concatenate([x[8000:], x[:8000]])  # everything there, out of order
    assert heard_in_order(x, swapped) <= 0.5
    assert heard_in_order(x, (np.random.default_rng(5).standard_normal(16000) * 4000).astype(np.int16)) < 0.2
    assert heard_in_order(x, np.zeros(16000, np.int16)) == 0.0
