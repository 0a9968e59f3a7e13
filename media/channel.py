"""Framed messages, with file descriptors, one way between the controller and a media worker.

Hand-made rather than :class:`multiprocessing.connection.Connection`, which per message built a
selector to poll, switched the descriptor between blocking and non-blocking around every send and
receive (an event loop that watches a descriptor makes it non-blocking, and a large message split by
EAGAIN would corrupt the stream), and passed each descriptor with a sendmsg of its own on a duplicate
of the socket: at 150 calls/s that was half of a worker's command handling and an eighth of the
controller's CPU (py-spy, ``scripts/bench/cps.py --systems ours --media-workers 2``).

Here each direction has a socket pair of its own. The controller's writing end stays blocking (a
message leaves whole); a worker's queues what the socket does not take (:class:`QueuedWriter`: a worker
never waits, so the two can never wait on each other); the reading ends are non-blocking (the loop
watches them; everything waiting is read at each wake-up).

A frame is a 4-byte length and a pickled list of messages: what one loop iteration produced travels in
one write, and the descriptors that go with it (SCM_RIGHTS) ride in the same sendmsg, attached to the
frame's first byte, so they arrive no later than the frame that needs them.
"""

from __future__ import annotations

import array
import asyncio
import pickle
import socket
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

HEADER = struct.Struct("!I")
#: descriptors per frame: the kernel takes at most 253 in one SCM_RIGHTS message (SCM_MAX_FD)
MAX_FDS = 240
#: bytes asked for per read
READ_SIZE = 1 << 18
_FD_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


class Writer:
    """The sending end: blocking, so a frame leaves whole however large it is."""

    def __init__(self, sock: socket.socket):
        sock.setblocking(True)
        self.sock = sock

    def send(self, messages: list[Any], fds: Sequence[int] = ()) -> None:
        """One frame holding ``messages``; ``fds`` (at most :data:`MAX_FDS`) go with it."""
        if len(fds) > MAX_FDS:
            raise ValueError(f"{len(fds)} descriptors in one frame (at most {MAX_FDS})")
        payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        data = HEADER.pack(len(payload)) + payload
        if fds:
            sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            sent = self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])

    def close(self) -> None:
        self.sock.close()


class QueuedWriter:
    """The sending end of a process whose loop must never wait on it: a media worker's (it relays RTP).

    What the socket does not take at once waits here and leaves when the socket is writable again. Were
    both ends blocking, a controller writing a long prompt to a worker that is itself writing a large
    report to the controller could leave each waiting for the other for good, signalling stopped with
    it. With this end never blocking, the worker always comes back to read, so the controller's blocking
    write always finishes. No descriptors travel this way."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_error: Callable[[OSError], None]):
        sock.setblocking(False)
        self.sock = sock
        self.loop = loop
        self.on_error = on_error
        self._out = bytearray()
        self._watching = False

    @property
    def pending(self) -> int:
        """Bytes waiting for the socket."""
        return len(self._out)

    def send(self, messages: list[Any], fds: Sequence[int] = ()) -> None:
        if fds:
            raise ValueError("no descriptors on a queued channel")
        payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        self._out += HEADER.pack(len(payload)) + payload
        if not self._watching:
            self._write()

    def _write(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:  # the reader is gone
            self._out.clear()
            self._watch(False)
            self.on_error(exc)
            return
        del self._out[:sent]
        self._watch(bool(self._out))

    def _watch(self, on: bool) -> None:
        if on and not self._watching:
            self.loop.add_writer(self.sock.fileno(), self._write)
        elif not on and self._watching:
            self.loop.remove_writer(self.sock.fileno())
        self._watching = on

    def close(self) -> None:
        """What is still waiting is dropped: the reader has stopped reading (it asked us to stop)."""
        if self._watching:
            self._watch(False)
        self.sock.close()


class Reader:
    """The receiving end: non-blocking; :meth:`read` drains what has arrived."""

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock
        self._buf = bytearray()
        #: descriptors received and not yet taken, in the order they were sent
        self.fds: deque[int] = deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> tuple[list[Any], bool]:
        """The messages of every frame complete so far, in order, and whether the writer has gone."""
        eof = False
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, _FD_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                eof = True
                break
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                    self.fds.extend(fds)
            if not data:
                eof = True
                break
            self._buf += data
        return self._frames(), eof

    def _frames(self) -> list[Any]:
        out: list[Any] = []
        buf, pos = self._buf, 0
        while len(buf) - pos >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, pos)
            end = pos + HEADER.size + size
            if len(buf) < end:
                break
            out += pickle.loads(buf[pos + HEADER.size:end])
            pos = end
        if pos:
            del buf[:pos]
        return out

    def take_socket(self) -> socket.socket:
        """The next descriptor received, as a socket (IndexError if none came)."""
        return socket.socket(fileno=self.fds.popleft())

    def close(self) -> None:
        while self.fds:
            try:
                socket.socket(fileno=self.fds.popleft()).close()
            except OSError:
                pass
        self.sock.close()
