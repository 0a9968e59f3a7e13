"""The media engine's command interface on real loopback sockets: relay, play (replace and mix)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from rtp_peer import RtpPeer, best_correlation, extended_seqs, read_recording, speech_like

from media import g711
from media.api import DtmfEvent
from media.engine import EngineConfig, MediaEngine, PlayDone


async def _session(engine: Any, a: RtpPeer, b: RtpPeer, codec: int = 0, sid: str = "s1") -> tuple[tuple, tuple]:
    """Session ``sid`` between peers ``a`` and ``b`` on ``engine`` (in process or the workers'): both legs'
    addresses as the engine answers them."""
    a_side = engine.allocate(sid, "a")
    b_side = engine.allocate(sid, "b")
    engine.update(sid, "a", remote=("127.0.0.1", a.port), codec=codec, dtmf_pt=101)
    engine.update(sid, "b", remote=("127.0.0.1", b.port), codec=codec, dtmf_pt=101)
    return a_side, b_side


async def _send(peer: RtpPeer, target: tuple, samples: np.ndarray, pt: int = 0) -> None:
    """Send 20 ms frames paced like a phone: by deadline, not by accumulating sleeps."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(len(samples) // 160):
        payload = g711.encode(samples[i * 160:(i + 1) * 160], pt).tobytes()
        peer.send_raw(target, struct.pack("!BBHII", 0x80, pt, i, 160 * i, 0x77) + payload)
        await asyncio.sleep(max(0.0, start + 0.02 * (i + 1) - loop.time()))


@contextlib.asynccontextmanager
async def _engine(port_min: int, events: list | None = None, tap: Any = None
                  ) -> AsyncIterator[tuple[MediaEngine, RtpPeer, RtpPeer]]:
    """An engine on the running loop (ports ``port_min``..+20, tapping into ``tap`` if given) and two peers,
    all closed afterwards."""
    engine = MediaEngine(EngineConfig(port_min=port_min, port_max=port_min + 20),
                         on_event=events.append if events is not None else None, tap=tap)
    engine.start(asyncio.get_running_loop())
    a, b = RtpPeer(), RtpPeer()
    try:
        yield engine, a, b
    finally:
        engine.close()
        a.close()
        b.close()


async def _stop_recording(engine: MediaEngine, start: float) -> float:
    """Stop call s1's recording; the seconds it lasted since ``start``, once the writer closed the file."""
    import time

    engine.stop_record("s1")
    elapsed = time.monotonic() - start
    await asyncio.sleep(0.3)
    return elapsed


def _stereo(path, codec: str | None = None) -> np.ndarray:
    """A recording's samples as (frames, 2): caller left, what it heard right."""
    return read_recording(path, codec)


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
            # the callee "talks" meanwhile: noise, unlike anything in the prompt
            voice = (3000 * np.random.default_rng(9).standard_normal(9600)).astype(np.int16)
            await _send(b, b_side, voice)
            await asyncio.sleep(0.1)
            return a, events, prompt, voice
        finally:
            engine.close()
            b.close()

    a, events, prompt, voice = asyncio.run(run())
    a.close()
    heard = a.audio(0)
    assert len(heard) >= len(prompt)
    during = heard[: len(prompt)]
    with_prompt = best_correlation(prompt, during)
    with_voice = best_correlation(voice[: len(prompt)], during)
    if mix:
        assert with_prompt > 0.3 and with_voice > 0.3, (with_prompt, with_voice)  # both are heard
    else:
        assert with_prompt > 0.98 and with_voice < 0.3, (with_prompt, with_voice)  # only the prompt
    assert [e.prompt for e in events if isinstance(e, PlayDone)] == ["notice"]
    seqs = sorted(extended_seqs(a.received))
    assert len({r.ssrc for r in a.received}) == 1  # one stream across prompt and relay
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps, no jumps


def test_stereo_recording_caller_left_what_it_hears_right(tmp_path) -> None:
    """Both legs recorded from the first packet: the caller's audio left, the callee's right; the file
    is a valid WAV while the call is still running (sizes rewritten every second)."""
    from media.engine import RecordingDone

    path = tmp_path / "rec" / "call.wav"

    async def run() -> tuple[list, np.ndarray, np.ndarray, int]:
        events: list = []
        async with _engine(33100, events) as (engine, a, b):
            a_side, b_side = await _session(engine, a, b, codec=8)
            engine.record("s1", str(path))
            up, down = speech_like(2.0, seed=21), speech_like(2.0, seed=22)[::-1].copy()
            await asyncio.gather(_send(a, a_side, up, pt=8), _send(b, b_side, down, pt=8))
            await asyncio.sleep(1.2)
            mid_frames = len(read_recording(path))  # mid-call: already a readable file with most of the audio
            engine.delete("s1")
            await asyncio.sleep(0.5)
            return events, up, down, mid_frames

    events, up, down, mid_frames = asyncio.run(run())
    assert mid_frames >= 8000 * 1.5
    audio = _stereo(path, "pcm_alaw")  # stored in the caller's law, as it came
    assert best_correlation(up, audio[:, 0]) > 0.97  # the caller, left
    assert best_correlation(down, audio[:, 1]) > 0.97  # the callee as the caller heard it, right
    done = [e for e in events if isinstance(e, RecordingDone)]
    assert len(done) == 1 and done[0].error is None and done[0].seconds >= 1.9
    # bit-exact: the caller's channel holds the very A-law codes it sent, frame for frame
    from media.recorder import HEADER

    left = np.frombuffer(path.read_bytes()[HEADER:], dtype=np.uint8).reshape(-1, 2)[:, 0].tobytes()
    sent = g711.encode(up, 8).tobytes()
    at = left.find(sent[:160])
    assert at >= 0
    same = sum(left[at + i:at + i + 160] == sent[i:i + 160] for i in range(0, len(sent), 160))
    assert same >= 0.99 * len(sent) / 160


def test_recording_keeps_wall_clock_time_when_the_event_loop_stalls(tmp_path) -> None:
    """Ticks the loop could not run (a 600 ms stall) are made up, and short hiccups (which the tick
    scheduler catches up on by itself) are not made up twice: the recording lasts as long as the call
    did, so times in it (and its length at a crash) match the call's."""
    import time
    path = tmp_path / "stall.wav"

    async def run() -> float:
        async with _engine(39700) as (engine, a, b):
            await _session(engine, a, b)
            start = time.monotonic()
            engine.record("s1", str(path))
            await asyncio.sleep(0.5)
            time.sleep(0.6)  # the loop is blocked: no tick runs
            await asyncio.sleep(0.5)
            for _ in range(6):  # short hiccups, which the tick scheduler makes up itself
                time.sleep(0.06)
                await asyncio.sleep(0.1)
            return await _stop_recording(engine, start)

    elapsed = asyncio.run(run())
    seconds = len(_stereo(path)) / 8000
    assert elapsed - 0.15 <= seconds <= elapsed + 0.05, (seconds, elapsed)


def _jittery_send(peer: RtpPeer, target: tuple, samples: np.ndarray, seed: int) -> None:
    """Send 20 ms frames the way a bad network delivers them: held back and released in bursts of
    up to ten (200 ms), shuffled within each burst; timestamps say where each frame belongs."""
    import random
    import threading
    import time

    rng = random.Random(seed)
    packets = [struct.pack("!BBHII", 0x80, 0, i, 7000 + 160 * i, 0x99 + seed)
               + g711.encode(samples[i * 160:(i + 1) * 160], 0).tobytes() for i in range(len(samples) // 160)]

    def run() -> None:
        start, i = time.monotonic(), 0
        while i < len(packets):
            n = rng.randint(1, 10)
            burst = packets[i:i + n]
            i += len(burst)
            time.sleep(max(0.0, start + 0.02 * i - time.monotonic()))  # the last of them is due now
            rng.shuffle(burst)
            for packet in burst:
                peer.send_raw(target, packet)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_recording_puts_bursty_reordered_packets_and_a_stalled_loop_back_in_time_order(tmp_path) -> None:
    """Both directions arrive in shuffled bursts of up to 200 ms, and the engine's loop is blocked for
    250 ms meanwhile: the file still holds every frame where its timestamp puts it (the recording's
    jitter buffer), and lasts as long as the call."""
    import time
    path = tmp_path / "jitter.wav"
    up, down = speech_like(3.0, seed=31), speech_like(3.0, seed=32)[::-1].copy()

    async def run() -> float:
        async with _engine(39800) as (engine, a, b):
            a_side, b_side = await _session(engine, a, b)
            start = time.monotonic()
            engine.record("s1", str(path))
            senders = [_jittery_send(a, a_side, up, 1), _jittery_send(b, b_side, down, 2)]
            await asyncio.sleep(1.0)
            time.sleep(0.25)  # the loop is blocked: packets queue in the sockets, no tick runs
            while any(t.is_alive() for t in senders):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            return await _stop_recording(engine, start)

    elapsed = asyncio.run(run())
    audio = _stereo(path)
    assert best_correlation(up, audio[:, 0]) > 0.97  # every frame, in order, in one piece
    assert best_correlation(down, audio[:, 1]) > 0.97
    assert elapsed - 0.15 <= len(audio) / 8000 <= elapsed + 0.05, (len(audio) / 8000, elapsed)


def test_a_packet_too_late_for_its_place_in_the_recording_is_counted(tmp_path) -> None:
    """Frame 0 sent after a second of later frames: its place is already written, so it is dropped and
    counted, and the frames after it are not moved."""
    path = tmp_path / "late.wav"

    async def run() -> dict:
        async with _engine(39840) as (engine, a, b):
            a_side, _ = await _session(engine, a, b)
            engine.record("s1", str(path))
            tone = speech_like(1.2, seed=41)
            frames = [struct.pack("!BBHII", 0x80, 0, i, 160 * i, 0x55)
                      + g711.encode(tone[i * 160:(i + 1) * 160], 0).tobytes() for i in range(60)]
            for packet in frames[1:]:
                a.send_raw(a_side, packet)
                await asyncio.sleep(0.02)
            a.send_raw(a_side, frames[0])
            await asyncio.sleep(0.4)
            counters = dict(engine.counters)
            engine.stop_record("s1")
            await asyncio.sleep(0.3)
            return counters

    counters = asyncio.run(run())
    assert counters["recording_late"] == 1
    assert best_correlation(speech_like(1.2, seed=41)[160:], _stereo(path)[:, 0]) > 0.97


def test_a_caller_changing_law_mid_recording_stays_in_the_files_law(tmp_path) -> None:
    """The file keeps the law the caller had when it began; after a re-INVITE to PCMA the codes are
    converted to it, so both halves of the call play right."""
    path = tmp_path / "law.wav"
    first, second = speech_like(1.0, seed=51), speech_like(1.0, seed=52)

    async def run() -> None:
        async with _engine(39870) as (engine, a, b):
            a_side, _ = await _session(engine, a, b, codec=0)
            engine.record("s1", str(path))
            await _send(a, a_side, first, pt=0)
            engine.update("s1", "a", remote=("127.0.0.1", a.port), codec=8, dtmf_pt=101)
            await _send(a, a_side, second, pt=8)
            await asyncio.sleep(0.1)
            await _stop_recording(engine, 0.0)

    asyncio.run(run())
    left = _stereo(path, "pcm_mulaw")[:, 0]
    assert best_correlation(first, left[:12000]) > 0.95
    assert best_correlation(second, left[-12000:]) > 0.95


def test_a_stranger_that_sends_first_loses_the_latch_to_the_signalled_address() -> None:
    """RTP bleed: a stranger racing the caller's first packet is latched (as an endpoint behind NAT
    would be), but the first packet from the address the caller's SDP gave takes the latch back; from
    then on the stranger's packets are dropped and counted, and the callee's audio goes to the caller."""
    frame = b"\xff" * 160

    def pkt(seq: int, ssrc: int) -> bytes:
        return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, ssrc) + frame

    async def run() -> tuple[int, list, list, list]:
        async with _engine(39900) as (engine, a, b):
            a_side, b_side = await _session(engine, a, b)
            stranger = RtpPeer()
            try:
                stranger.send_raw(a_side, pkt(1, 0xBAD))  # first: latched, relayed
                await asyncio.sleep(0.05)
                a.send_raw(a_side, pkt(2, 0x600D))  # the caller, from its SDP address: takes the latch
                await asyncio.sleep(0.05)
                for seq in range(3, 8):
                    stranger.send_raw(a_side, pkt(seq, 0xBAD))
                b.send_raw(b_side, pkt(1, 0xB))  # the callee's audio goes to the caller
                await asyncio.sleep(0.1)
                strangers = engine.sessions["s1"].legs["a"].strangers
                return strangers, list(b.received), list(a.received), list(stranger.received)
            finally:
                stranger.close()

    strangers, to_callee, to_caller, to_stranger = asyncio.run(run())
    assert strangers == 5
    assert len(to_callee) == 2  # the stranger's first packet, then the caller's; none after
    assert len(to_caller) == 1 and not to_stranger


def test_repair_restores_a_file_cut_by_a_crash(tmp_path) -> None:
    from media.recorder import HEADER, repair, wav_header

    path = tmp_path / "cut.wav"
    path.write_bytes(wav_header(0) + b"\x10\x90" * 8000 + b"\x03")  # header says 0, a torn last frame
    assert repair(path) == (1.0, HEADER + 16000) and path.stat().st_size == HEADER + 16000
    audio = read_recording(path, "pcm_mulaw")
    assert len(audio) == 8000 and (audio[:, 0] == g711.ULAW_DECODE[0x10]).all()


def test_worker_processes_take_prompts_larger_than_the_pipe_buffer() -> None:
    """A 60 s prompt (960 kB) crosses the pipe to a worker whose descriptor the event loop made
    non-blocking: it must arrive whole, twice (the second time from the worker's cache)."""
    import uvloop

    from media.worker import WorkerEngine

    async def run() -> tuple[list, list]:
        events: list = []
        engine = WorkerEngine(EngineConfig(port_min=39600, port_max=39620), 1, on_event=events.append)
        engine.start(asyncio.get_running_loop())
        await engine.ready()  # the worker serves its pipe: packets from now on are not lost
        a = RtpPeer()
        try:
            for sid in ("s1", "s2"):
                engine.allocate(sid, "a")
                engine.allocate(sid, "b")
                engine.update(sid, "a", remote=("127.0.0.1", a.port), codec=0)
                engine.play(sid, "a", speech_like(60.0), prompt="long")
            await asyncio.sleep(1.5)
            assert engine._procs[0].is_alive()
            return a.received, events
        finally:
            engine.close()
            a.close()

    received, _ = uvloop.run(run())
    assert len({r.ssrc for r in received}) == 2 and len(received) >= 80  # both sessions play


def test_packet_path_edge_cases_burst_csrc_extension_empty() -> None:
    """A burst queued at once is relayed whole (one packet per wakeup), in order; CSRCs and a header
    extension pass through with the payload found after them; empty and truncated datagrams are dropped
    and counted; RFC 4733 events are reported and relayed with the receiver's payload type."""
    events: list = []

    async def run() -> tuple[RtpPeer, dict, dict]:
        engine = MediaEngine(EngineConfig(port_min=39500, port_max=39540), on_event=events.append)
        engine.start(asyncio.get_running_loop())
        a, b = RtpPeer(), RtpPeer()
        try:
            a_side, _ = await _session(engine, a, b)
            engine.update("s1", "b", remote=("127.0.0.1", b.port), codec=0, dtmf_pt=96)
            payload = bytes(range(160))
            for i in range(20):  # a burst: all waiting in the socket before the loop runs
                a.send_raw(a_side, struct.pack("!BBHII", 0x80, 0, 100 + i, 1000 + 160 * i, 0x77) + payload)
            await asyncio.sleep(0.2)
            csrc_ext = struct.pack("!BBHII", 0x92, 0, 120, 1000 + 160 * 20, 0x77) + struct.pack("!II", 1, 2) \
                + struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00" + payload
            a.send_raw(a_side, csrc_ext)
            a.send_raw(a_side, b"")
            a.send_raw(a_side, b"\x80\x00\x00")
            for i, end in enumerate([0, 0, 0x80, 0x80]):  # digit 5, 3 packets + retransmitted end
                a.send_raw(a_side, struct.pack("!BBHII", 0x80, 101, 121 + i, 1000 + 160 * 21, 0x77)
                           + bytes([5, end | 10]) + (160 * (i + 1)).to_bytes(2, "big"))
            await asyncio.sleep(0.2)
            return b, engine.stats("s1"), dict(engine.counters)
        finally:
            engine.close()
            a.close()
            b.close()

    b, stats, counters = asyncio.run(run())
    audio = [r for r in b.received if r.pt == 0]
    assert len(audio) == 21 and [r.payload[-160:] for r in audio] == [bytes(range(160))] * 21
    assert audio[-1].payload[:16] == struct.pack("!II", 1, 2) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    seqs = [r.seq for r in audio]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(21)]  # in arrival order, no gaps
    assert len({r.ssrc for r in b.received}) == 1
    assert [r.pt for r in b.received if r.pt != 0] == [96] * 4
    assert [e.digit for e in events] == ["5"]
    assert stats["a"]["dropped"] == 2 and stats["a"]["packets_received"] == 25 and stats["a"]["packets_lost"] == 0
    assert counters["rtp_in"] == 27 and counters["rtp_out"] == 25 and counters["rtp_dropped"] == 2


def test_worker_mode_never_advertises_a_port_someone_else_holds() -> None:
    """The controller hands out ports for its workers; one held by another program is skipped, so the
    port in our SDP is the one the worker really listens on."""
    import socket

    from media.worker import WorkerEngine

    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", 39801))  # the RTCP half of the first pair

    async def run() -> tuple[int, int, list]:
        engine = WorkerEngine(EngineConfig(port_min=39800, port_max=39806), 1)
        engine.start(asyncio.get_running_loop())
        await engine.ready()
        a, b = RtpPeer(), RtpPeer()
        try:
            (_, a_port), (_, b_port) = await _session(engine, a, b)
            await asyncio.sleep(0.5)
            await _send(a, ("127.0.0.1", a_port), speech_like(0.4))
            await asyncio.sleep(0.3)
            return a_port, b_port, b.received
        finally:
            engine.close()
            a.close()
            b.close()

    try:
        a_port, b_port, received = asyncio.run(run())
    finally:
        squatter.close()
    assert 39800 not in (a_port, b_port)
    assert len(received) >= 15  # what the caller sent reached the callee through the worker


def test_worker_mode_ports_are_bound_before_call_control_advertises_them() -> None:
    """The endpoint may send the moment it reads our SDP. With the worker held up (stopped here) the
    pair must already be bound: what arrives meanwhile waits in the socket and is relayed, in order,
    once the worker runs (when the worker bound it, those first packets were lost)."""
    import os
    import signal

    from media.worker import WorkerEngine

    async def run() -> list:
        engine = WorkerEngine(EngineConfig(port_min=39700, port_max=39720), 1)
        engine.start(asyncio.get_running_loop())
        await engine.ready()
        a, b = RtpPeer(), RtpPeer()
        pid = engine._procs[0].pid
        try:
            os.kill(pid, signal.SIGSTOP)  # a worker that runs late (a busy core, a cold start)
            try:
                _, a_port = engine.allocate("s1", "a")
                engine.allocate("s1", "b")
                engine.update("s1", "a", remote=("127.0.0.1", a.port), codec=0)
                engine.update("s1", "b", remote=("127.0.0.1", b.port), codec=0)
                await _send(a, ("127.0.0.1", a_port), speech_like(0.3))  # 15 packets, nobody reading yet
            finally:
                os.kill(pid, signal.SIGCONT)
            for _ in range(50):
                await asyncio.sleep(0.05)
                if len(b.received) >= 15:
                    break
            return b.received
        finally:
            engine.close()
            a.close()
            b.close()

    received = asyncio.run(run())
    assert extended_seqs(received) == sorted(extended_seqs(received)) and len(received) == 15


def test_worker_mode_settle_waits_for_the_final_figures_of_deleted_calls() -> None:
    """At shutdown the application waits for each ended call's exact figures before stopping the workers:
    a worker running late (stopped here for a moment) still gets its FinalStats to the CDR."""
    import os
    import signal

    from media.api import FinalStats
    from media.worker import WorkerEngine

    async def run() -> tuple[list, float]:
        events: list = []
        engine = WorkerEngine(EngineConfig(port_min=39740, port_max=39760), 1, on_event=events.append)
        engine.start(asyncio.get_running_loop())
        await engine.ready()
        pid = engine._procs[0].pid
        try:
            engine.allocate("s1", "a")
            engine.allocate("s1", "b")
            await asyncio.sleep(0.2)
            os.kill(pid, signal.SIGSTOP)
            engine.delete("s1")
            asyncio.get_running_loop().call_later(0.3, os.kill, pid, signal.SIGCONT)
            t0 = time.monotonic()
            await engine.settle(timeout=10)
            return events, time.monotonic() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
            engine.close()

    events, waited = asyncio.run(run())
    assert [e.session for e in events if isinstance(e, FinalStats)] == ["s1"]
    assert waited < 9  # it returned when the figures came, not at its timeout


def test_a_deleted_session_is_freed_by_refcounting_alone(tmp_path) -> None:
    """The process runs a full cyclic GC only when its heap has grown (b2bua/gc_pacer.py): a call's media
    (legs, sockets, statistics, a recording's tracks) must be freed when its session is deleted, or a soak grows
    by megabytes a minute (scripts/bench/soak.py found 56 MB/min at 150 cps)."""
    import gc

    from media.legs import Leg, Session

    async def run() -> None:
        async with _engine(39700) as (engine, a, b):
            a_side, b_side = await _session(engine, a, b)
            engine.record("s1", str(tmp_path / "s1.wav"))
            await asyncio.gather(_send(a, a_side, speech_like(0.3, seed=1)), _send(b, b_side, speech_like(0.3, seed=2)))
            engine.delete("s1")
            await asyncio.sleep(0.3)

    gc.collect()
    gc.disable()
    try:
        asyncio.run(run())
        left = [o for o in gc.get_objects() if isinstance(o, Leg | Session)]
    finally:
        gc.enable()
    assert left == []


def test_worker_mode_fills_one_worker_before_the_next_and_passes_over_a_dead_one() -> None:
    """Sessions go to the first worker until it carries ``fill`` of them (a few calls in one worker cost
    one wake-up per packet group instead of one per worker), then to the next, then to the least busy;
    a deleted session frees its place; a worker that died takes no new
    session, and the calls placed on the survivor relay. Which worker serves a session shows in its port:
    each worker owns a slice of the range."""
    import os
    import signal

    from media.worker import WorkerEngine

    async def run() -> tuple[list[int], list[int], int, list]:
        engine = WorkerEngine(EngineConfig(port_min=39900, port_max=39980), 2, fill=2)
        engine.start(asyncio.get_running_loop())
        await engine.ready()
        half = engine._slices[1][0]  # the first port of worker 1's slice

        def worker_of(session: str) -> int:
            return int(engine.allocate(session, "a")[1] >= half)

        a, b = RtpPeer(), RtpPeer()
        try:
            first = [worker_of(f"s{i}") for i in range(5)]
            engine.allocate("s0", "b")  # a second leg stays with its session's worker
            assert all(p < half for p in engine._ports["s0"])
            engine.delete("s0")
            engine.delete("s1")
            await engine.settle()
            after_delete = [worker_of("s5"), worker_of("s6"), worker_of("s7")]
            os.kill(engine._procs[0].pid, signal.SIGKILL)
            for _ in range(400):  # the controller hears the worker's channel close
                await asyncio.sleep(0.05)
                if 0 in engine._gone:
                    break
            assert engine._gone == {0}
            assert engine.free_ports == len(engine._free[1])  # the dead worker's ports are not on offer
            assert engine.workers_gone == 1 and engine.worker_sessions == {1: 3}  # s2, s3, s7
            (_, a_port), (_, b_port) = await _session(engine, a, b, sid="s8")
            await asyncio.sleep(0.3)
            await _send(a, ("127.0.0.1", a_port), speech_like(0.3))
            for _ in range(40):
                await asyncio.sleep(0.05)
                if len(b.received) >= 15:
                    break
            return first, after_delete, int(a_port >= half and b_port >= half), b.received
        finally:
            engine.close()
            a.close()
            b.close()

    first, after_delete, on_survivor, received = asyncio.run(run())
    assert first == [0, 0, 1, 1, 0]  # two each, then the least busy (a tie: the first)
    assert after_delete == [0, 0, 1]  # s0, s1 gone: worker 0 holds s4 alone, takes s5, then ties (2, 2) and wins, 3 > 2
    assert on_survivor == 1
    assert len(received) == 15


def test_key_tones_are_looked_for_only_in_the_audio_of_a_leg_whose_keys_are_wanted() -> None:
    """No telephone-event on either side: a ``7`` (852 + 1209 Hz) in each leg's audio. The leg call control
    wants keys from (``inband_keys``, the default) reports it; the other's is not even searched."""

    async def run() -> tuple[list, tuple[list[str], list[str]]]:
        events: list = []
        async with _engine(37300, events) as (engine, a, b):
            a_side = engine.allocate("s1", "a")
            b_side = engine.allocate("s1", "b")
            engine.update("s1", "a", remote=("127.0.0.1", a.port), codec=0, inband_keys=False)
            engine.update("s1", "b", remote=("127.0.0.1", b.port), codec=0)
            listening = sorted(lg.name for lg in engine._listening.values())
            t = np.arange(160 * 6) / 8000
            key7 = (6000 * np.sin(2 * np.pi * 852 * t) + 6000 * np.sin(2 * np.pi * 1209 * t)).astype(np.int16)
            audio = np.concatenate([speech_like(0.3), key7, np.zeros(800, np.int16)])
            await asyncio.gather(_send(a, a_side, audio), _send(b, b_side, audio))
            await asyncio.sleep(0.2)
            engine.update("s1", "a", inband_keys=True)  # wanted after all (a re-INVITE, a feature)
            relistening = sorted(lg.name for lg in engine._listening.values())
            return events, (listening, relistening)

    events, (listening, relistening) = asyncio.run(run())
    assert [(e.leg, e.digit, e.source) for e in events if isinstance(e, DtmfEvent)] == [("b", "7", "inband")]
    assert listening == ["b"] and relistening == ["a", "b"]
