"""The audio tap (media/tap.py) on real loopback sockets: what a tapped leg sends reaches the tap's channel
decoded, intact and in order, while the relay goes on; a stalled consumer costs dropped batches, never RTP."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import struct

import numpy as np
import pytest
from rtp_peer import RtpPeer, extended_seqs, speech_like
from test_media_engine import _engine

from media import g711
from media.engine import EngineConfig, MediaEngine
from media.tap import BATCH_TICKS, TapBatch

FRAME = 160


async def _send(peer: RtpPeer, target: tuple[str, int], samples: np.ndarray, pt: int) -> None:
    """20 ms frames paced by deadline, like a phone."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(len(samples) // FRAME):
        payload = g711.encode(samples[i * FRAME:(i + 1) * FRAME], pt).tobytes()
        peer.send_raw(target, struct.pack("!BBHII", 0x80, pt, i, FRAME * i, 0x77) + payload)
        await asyncio.sleep(max(0.0, start + 0.02 * (i + 1) - loop.time()))


def _drain(channel: queue.Queue | mp.queues.Queue, key: tuple[str, str]) -> tuple[np.ndarray, int]:
    """Everything the channel holds for ``key``, concatenated, and how many batches there were."""
    parts, batches = [], 0
    while True:
        try:
            batch = channel.get(timeout=0.5)
        except queue.Empty:
            break
        assert isinstance(batch, TapBatch)
        batches += 1
        if key in batch.frames:
            parts.append(np.frombuffer(batch.frames[key], dtype=np.int16))
    return (np.concatenate(parts) if parts else np.zeros(0, np.int16)), batches


def _frames_in_order(got: np.ndarray, expected: np.ndarray) -> int:
    """How many of ``expected``'s 20 ms frames ``got`` holds bit-exact, in the same order (a lost packet
    may leave a gap; nothing may be reordered, altered or invented)."""
    want = [expected[i:i + FRAME].tobytes() for i in range(0, len(expected) - FRAME + 1, FRAME)]
    have = [got[i:i + FRAME].tobytes() for i in range(0, len(got) - FRAME + 1, FRAME)]
    assert len(got) % FRAME == 0
    pos = 0
    for frame in have:
        assert frame in want[pos:], "a tapped frame that was never sent, or out of order"
        pos = want.index(frame, pos) + 1
    return len(have)


def _session(engine: MediaEngine | object, a: RtpPeer, b: RtpPeer, codec: int) -> tuple[int, int]:
    _, a_port = engine.allocate("s1", "a")  # type: ignore[attr-defined]
    _, b_port = engine.allocate("s1", "b")  # type: ignore[attr-defined]
    engine.update("s1", "a", remote=("127.0.0.1", a.port), codec=codec)  # type: ignore[attr-defined]
    engine.update("s1", "b", remote=("127.0.0.1", b.port), codec=codec)  # type: ignore[attr-defined]
    return a_port, b_port


@pytest.mark.parametrize("codec", [0, 8], ids=["PCMU", "PCMA"])
def test_a_tapped_leg_reaches_the_channel_decoded_in_order_and_the_relay_goes_on(codec: int) -> None:
    channel: queue.Queue = queue.Queue(maxsize=1000)
    sent = speech_like(2.0)
    expected = g711.decode(g711.encode(sent, codec), codec)  # what the caller's codes mean

    async def run() -> tuple[int, dict[str, int]]:
        async with _engine(38700, tap=channel) as (engine, a, b):
            a_port, _ = _session(engine, a, b, codec)
            engine.tap("s1", "a")
            await _send(a, ("127.0.0.1", a_port), sent, codec)
            await asyncio.sleep(0.3)  # the last batch closes
            return len(b.received), dict(engine.counters)

    relayed, counters = asyncio.run(run())
    tapped, batches = _drain(channel, ("s1", "a"))
    frames = len(sent) // FRAME
    assert relayed >= 0.95 * frames  # the callee got the call's audio as before
    assert _frames_in_order(tapped, expected) >= 0.95 * frames
    assert batches >= frames // BATCH_TICKS // 2  # about one batch per 100 ms, not one per frame
    assert counters["tap_frames"] >= 0.95 * frames and counters["tap_dropped_frames"] == 0


def test_a_stalled_consumer_drops_batches_and_counts_them_while_rtp_flows() -> None:
    channel: queue.Queue = queue.Queue(maxsize=2)  # nobody reads it: detection has stalled
    sent = speech_like(2.0, seed=3)

    async def run() -> tuple[list, dict[str, int]]:
        async with _engine(38730, tap=channel) as (engine, a, b):
            a_port, _ = _session(engine, a, b, 0)
            engine.tap("s1", "a")
            await _send(a, ("127.0.0.1", a_port), sent, 0)
            await asyncio.sleep(0.3)
            return list(b.received), dict(engine.counters)

    received, counters = asyncio.run(run())
    frames = len(sent) // FRAME
    assert channel.qsize() == 2
    assert counters["tap_dropped_frames"] >= frames // 2  # most of the call could not be handed over
    assert len(received) >= 0.95 * frames  # and the relay did not notice
    seqs = extended_seqs(received)
    assert seqs == sorted(seqs)


def test_tap_off_and_delete_stop_the_copies() -> None:
    channel: queue.Queue = queue.Queue(maxsize=1000)
    first, second = speech_like(0.6, seed=1), speech_like(0.6, seed=2)

    async def run() -> None:
        async with _engine(38760, tap=channel) as (engine, a, b):
            a_port, b_port = _session(engine, a, b, 0)
            engine.tap("s1", "a")
            await _send(a, ("127.0.0.1", a_port), first, 0)
            await asyncio.sleep(0.25)
            engine.tap("s1", "a", on=False)
            await _send(a, ("127.0.0.1", a_port), second, 0)
            await _send(b, ("127.0.0.1", b_port), second, 0)  # the other leg was never tapped
            await asyncio.sleep(0.25)
            engine.tap("s1", "a")
            engine.delete("s1")  # a deleted session's legs leave the tap
            await asyncio.sleep(0.25)

    asyncio.run(run())
    tapped, _ = _drain(channel, ("s1", "a"))
    first_codes = g711.decode(g711.encode(first, 0), 0)
    assert _frames_in_order(tapped, first_codes) == len(tapped) // FRAME >= 0.9 * (len(first) // FRAME)
    assert not any(tapped[i:i + FRAME].tobytes() in g711.decode(g711.encode(second, 0), 0).tobytes()
                   for i in range(0, len(tapped), FRAME))


def test_worker_processes_tap_into_a_shared_process_queue() -> None:
    from media.worker import WorkerEngine

    ctx = mp.get_context("spawn")
    channel = ctx.Queue(maxsize=1000)
    sent = speech_like(1.0, seed=5)

    async def run() -> None:
        engine = WorkerEngine(EngineConfig(port_min=38800, port_max=38820), 1, tap=channel)
        engine.start(asyncio.get_running_loop())
        await engine.ready()
        a, b = RtpPeer(), RtpPeer()
        try:
            a_port, _ = _session(engine, a, b, 8)
            engine.tap("s1", "a")
            await asyncio.sleep(0.2)  # the command crosses the pipe
            await _send(a, ("127.0.0.1", a_port), sent, 8)
            await asyncio.sleep(0.5)
        finally:
            engine.close()
            a.close()
            b.close()

    asyncio.run(run())
    tapped, _ = _drain(channel, ("s1", "a"))
    expected = g711.decode(g711.encode(sent, 8), 8)
    assert _frames_in_order(tapped, expected) >= 0.9 * (len(sent) // FRAME)
