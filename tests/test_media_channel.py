"""The controller <-> media worker channel (media/channel.py): frames, descriptors, large messages, the end."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest

from media.api import Allocate, Delete
from media.channel import MAX_FDS, READ_SIZE, QueuedWriter, Reader, Writer
from media.worker import _Outbox


def _pair() -> tuple[Writer, Reader]:
    a, b = socket.socketpair()
    return Writer(a), Reader(b)


def _read_until(reader: Reader, count: int) -> list:
    got: list = []
    for _ in range(200):
        msgs, eof = reader.read()
        got += msgs
        if len(got) >= count or eof:
            return got
        time.sleep(0.01)  # the writer (a thread) is still sending
    return got


def test_frames_arrive_in_order_with_their_descriptors() -> None:
    writer, reader = _pair()
    udp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for s in udp:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in udp]
    try:
        writer.send([Allocate("s1", "a", ports[0])], [udp[0].fileno(), udp[1].fileno()])
        writer.send([Delete("s0")])
        writer.send([Allocate("s2", "a", ports[2]), Delete("s1")], [udp[2].fileno(), udp[3].fileno()])
        msgs, eof = reader.read()
        assert not eof
        assert msgs == [Allocate("s1", "a", ports[0]), Delete("s0"), Allocate("s2", "a", ports[2]), Delete("s1")]
        received = [reader.take_socket() for _ in range(4)]
        # the same sockets (duplicates of the descriptors), in the order sent
        assert [s.getsockname()[1] for s in received] == ports
        assert all(s.type == socket.SOCK_DGRAM for s in received)
        with pytest.raises(IndexError):
            reader.take_socket()
        for s in received:
            s.close()
    finally:
        for s in udp:
            s.close()
        writer.close()
        reader.close()


def test_a_message_larger_than_a_read_arrives_whole_and_only_once_complete() -> None:
    writer, reader = _pair()
    audio = np.random.default_rng(1).integers(-32768, 32767, 3 * READ_SIZE, dtype=np.int16)  # 1.5 MB
    sender = threading.Thread(target=writer.send, args=([("prompt", audio), "after"],))
    try:
        assert reader.read() == ([], False)  # nothing yet
        sender.start()
        got = _read_until(reader, 2)
        sender.join(10)
        assert len(got) == 2 and got[0][0] == "prompt" and got[1] == "after"
        assert np.array_equal(got[0][1], audio)
    finally:
        writer.close()
        reader.close()


def test_the_reader_learns_that_the_writer_is_gone() -> None:
    writer, reader = _pair()
    writer.send(["last words"])
    writer.close()
    msgs, eof = reader.read()
    assert msgs == ["last words"] and eof
    reader.close()


def test_too_many_descriptors_for_one_frame_are_refused() -> None:
    writer, reader = _pair()
    try:
        with pytest.raises(ValueError, match="descriptors"):
            writer.send(["x"], [writer.sock.fileno()] * (MAX_FDS + 1))
    finally:
        writer.close()
        reader.close()


def test_the_outbox_sends_an_iteration_as_one_frame_and_splits_what_one_frame_cannot_carry() -> None:
    """130 allocations queued in one loop iteration (260 descriptors, over the kernel's limit per message)
    go in two frames; every descriptor arrives, in order, and the sender's copies are closed."""
    writer, reader = _pair()
    errors: list[OSError] = []

    async def run() -> list[socket.socket]:
        outbox = _Outbox(writer, asyncio.get_running_loop(), errors.append)
        sent: list[socket.socket] = []
        for i in range(130):
            pair = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            for s in pair:
                s.bind(("127.0.0.1", 0))
            sent += pair
            outbox.put(Allocate(f"s{i}", "a", pair[0].getsockname()[1]), pair)
        await asyncio.sleep(0)  # the iteration ends: the rest is flushed
        return sent

    try:
        sent = asyncio.run(run())
        assert all(s.fileno() == -1 for s in sent)  # closed here once sent
        msgs = _read_until(reader, 130)
        assert [m.session for m in msgs] == [f"s{i}" for i in range(130)]
        assert len(reader.fds) == 260
        received = [reader.take_socket() for _ in range(260)]
        ports_sent = [m.port for m in msgs]
        assert [s.getsockname()[1] for s in received[::2]] == ports_sent
        for s in received:
            s.close()
        assert errors == []
    finally:
        writer.close()
        reader.close()


def test_the_outbox_reports_a_peer_that_is_gone_and_closes_what_it_held() -> None:
    writer, reader = _pair()
    reader.close()
    errors: list[OSError] = []

    async def run() -> socket.socket:
        outbox = _Outbox(writer, asyncio.get_running_loop(), errors.append)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outbox.put(Delete("s1"), (sock,))
        await asyncio.sleep(0)
        return sock

    sock = asyncio.run(run())
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    assert sock.fileno() == -1
    writer.close()


def test_a_queued_writer_never_waits_and_delivers_everything_once_the_reader_reads() -> None:
    a, b = socket.socketpair()
    reader = Reader(b)
    big = np.arange(2_500_000, dtype=np.int32)  # 10 MB: far more than the socket buffers hold

    async def run() -> tuple[int, list]:
        loop = asyncio.get_running_loop()
        writer = QueuedWriter(a, loop, pytest.fail)
        writer.send(["first", big])  # returns at once, nobody reading yet
        writer.send(["second"])
        waiting = writer.pending
        got: list = []
        done = asyncio.Event()

        def on_readable() -> None:
            msgs, _ = reader.read()
            got.extend(msgs)
            if len(got) == 3:
                done.set()

        loop.add_reader(reader.fileno(), on_readable)
        await asyncio.wait_for(done.wait(), 30)
        loop.remove_reader(reader.fileno())
        assert writer.pending == 0
        writer.close()
        return waiting, got

    waiting, got = asyncio.run(run())
    assert waiting > 1_000_000
    assert got[0] == "first" and np.array_equal(got[1], big) and got[2] == "second"
    reader.close()


def test_controller_and_worker_writing_large_frames_at_once_do_not_wait_on_each_other() -> None:
    """The controller (blocking, a thread here) sends a long prompt while the worker (its loop) sends a
    large report: were the worker's end blocking too, each would wait for the other to read, for good."""
    down_w, down_r = socket.socketpair()
    up_w, up_r = socket.socketpair()
    prompt = np.ones(2_000_000, dtype=np.int16)
    report = {f"s{i}": {"a": {"packets": float(i)}} for i in range(100_000)}  # several MB pickled
    controller_got: list = []

    def controller() -> None:
        Writer(down_w).send(["prompt", prompt])
        events = Reader(up_r)
        deadline = time.monotonic() + 30
        while not controller_got and time.monotonic() < deadline:
            msgs, _ = events.read()
            controller_got.extend(msgs)
            time.sleep(0.01)

    async def worker() -> list:
        loop = asyncio.get_running_loop()
        commands = Reader(down_r)
        out = QueuedWriter(up_w, loop, pytest.fail)
        out.send([report])  # at the same moment as the controller's prompt
        got: list = []
        done = asyncio.Event()

        def on_commands() -> None:
            msgs, _ = commands.read()
            got.extend(msgs)
            if len(got) == 2:
                done.set()

        loop.add_reader(commands.fileno(), on_commands)
        await asyncio.wait_for(done.wait(), 30)
        while out.pending:
            await asyncio.sleep(0.01)
        return got

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    worker_got = asyncio.run(worker())
    thread.join(30)
    assert worker_got[0] == "prompt" and np.array_equal(worker_got[1], prompt)
    assert controller_got == [report]
    for s in (down_w, down_r, up_w, up_r):
        s.close()


def test_a_queued_writer_whose_reader_is_gone_says_so_once_and_drops_what_waited() -> None:
    a, b = socket.socketpair()
    b.close()
    errors: list[OSError] = []

    async def run() -> int:
        writer = QueuedWriter(a, asyncio.get_running_loop(), errors.append)
        writer.send(["x" * 100])
        return writer.pending

    assert asyncio.run(run()) == 0
    assert len(errors) == 1 and isinstance(errors[0], BrokenPipeError)
    a.close()
