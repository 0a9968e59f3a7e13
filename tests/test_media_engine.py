"""The media engine's command interface on real loopback sockets: relay, play (replace and mix)."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from media import g711
from media.engine import EngineConfig, MediaEngine, PlayDone
from rtp_peer import RtpPeer, best_correlation, speech_like


async def _session(engine: MediaEngine, a: RtpPeer, b: RtpPeer, codec: int = 0) -> tuple[tuple, tuple]:
    a_side = engine.allocate("s1", "a")
    b_side = engine.allocate("s1", "b")
    engine.update("s1", "a", remote=("127.0.0.1", a.port), codec=codec, dtmf_pt=101)
    engine.update("s1", "b", remote=("127.0.0.1", b.port), codec=codec, dtmf_pt=101)
    return a_side, b_side


async def _send(peer: RtpPeer, target: tuple, samples: np.ndarray, pt: int = 0) -> None:
    for i in range(len(samples) // 160):
        payload = g711.encode(samples[i * 160:(i + 1) * 160], pt).tobytes()
        peer.send_raw(target, struct.pack("!BBHII", 0x80, pt, i, 160 * i, 0x77) + payload)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mix", [False, True])
def test_play_to_one_leg_replaces_or_mixes_the_other_side(mix: bool) -> None:
    async def run() -> tuple[RtpPeer, list]:
        events: list = []
        engine = MediaEngine(EngineConfig(port_min=33000, port_max=33020), on_event=events.append)
        engine.start(asyncio.get_running_loop())
        a, b = RtpPeer(), RtpPeer()
        try:
            a_side, b_side = await _session(engine, a, b)
            prompt = (speech_like(1.0, seed=5) // 2).astype(np.int16)
            engine.play("s1", "a", prompt, prompt="notice", mix=mix)
            await _send(b, b_side, speech_like(1.2, seed=9))  # the callee talks meanwhile
            await asyncio.sleep(0.1)
            return a, events, prompt, engine.stats("s1")
        finally:
            engine.close()
            b.close()

    a, events, prompt, stats = asyncio.run(run())
    a.close()
    heard = a.audio(0)
    assert len(heard) >= len(prompt)
    score = best_correlation(prompt, heard[: len(prompt) + 1600])
    if mix:
        assert 0.3 < score < 0.95, score  # the prompt is in there, with the callee's voice on top
    else:
        assert score > 0.98, score  # only the prompt
    assert [e.prompt for e in events if isinstance(e, PlayDone)] == ["notice"]
    seqs = [r.seq for r in sorted(a.received, key=lambda r: r.seq)]
    assert len({r.ssrc for r in a.received}) == 1  # one stream across prompt and relay
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps, no jumps
