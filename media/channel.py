"""Framed messages, with file descriptors, one way between the controller and a media worker.

Hand-made rather than :class:`multiprocessing.connection.Connection`, which per message built a
selector to poll, switched the descriptor between blocking and non-blocking around every send and
receive (an event loop that watches a descriptor makes it non-blocking, and a large message split by
EAGAIN would corrupt the stream), and passed each descriptor with a sendmsg of its own on a duplicate
of the socket: at 150 calls/s that was half of a worker's command handling and an eighth of the
controller's CPU (py-spy, ``scripts/bench/cps.py --systems ours --media-workers 2``).

Here each direction has a socket pair of its own, so the writing end stays blocking (a message leaves
whole) and the reading end non-blocking (the loop watches it; everything waiting is read at each
wake-up). A frame is a 4-byte length and a pickled list of messages: what one loop iteration produced
travels in one write, and the descriptors that go with it (SCM_RIGHTS) ride in the same sendmsg,
attached to the frame's first byte, so they arrive no later than the frame that needs them.
"""

from __future__ import annotations

import array
import pickle
import socket
import struct
from collections import deque
from collections.abc import Sequence
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
