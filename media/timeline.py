"""Where a recorded frame goes in the file: the recording's jitter buffer.

A recording is written a fixed :data:`DELAY` behind the clock. Each direction of a recorded call
is a :class:`Track` that places every payload on the shared :class:`RecordingClock`'s timeline by
its RTP timestamp (RFC 3550 §5.1), not by when it arrived. A burst that arrives after the sender, the
network or our own event loop was held up therefore lands where it belongs, and packets arriving
in any order within the delay are put back in order.

The first packet is placed at its arrival frame, later ones relative to the packet before them.
A stream that fell further behind than the delay is moved up to the first frame still to be
written (no audio lost, the rest of it shifted); a packet older than its predecessor that comes
too late to be written is dropped and counted; a timestamp that is more than :data:`RESYNC` frames
off its arrival (a new source, a jump) places the stream again from its arrival.
"""

from __future__ import annotations

import numpy as np

FRAME = 160  # samples (= G.711 bytes) per 20 ms at 8 kHz
#: frames a recording is written behind the clock: how late a packet may be and still be recorded
DELAY = 15
#: frames a timestamp may disagree with its arrival before the stream is placed again
RESYNC = 100


class RecordingClock:
    """The timeline shared by an engine's recordings: frame ``n`` is due at ``epoch + n * 20 ms``.

    ``written`` is the next frame to be written; frames before it are in the files already.
    ``late`` counts the packets its tracks dropped for coming too late, over every timeline.
    """

    __slots__ = ("epoch", "written", "late")

    def __init__(self) -> None:
        self.epoch = 0.0
        self.written = 0
        self.late = 0

    def start(self, now: float) -> None:
        """Begin a timeline at ``now`` unless one is running."""
        if not self.epoch:
            self.epoch, self.written = now, 0

    def stop(self) -> None:
        self.epoch, self.written = 0.0, 0

    def frame(self, now: float) -> int:
        """The frame that is arriving at ``now``."""
        return int((now - self.epoch) * 50)

    def due(self, now: float) -> int:
        """How many frames may be written at ``now``: those more than :data:`DELAY` old."""
        return self.frame(now) - DELAY - self.written


class Track:
    """One direction of a recorded call: G.711 payloads by frame number, in the leg's own law."""

    __slots__ = ("clock", "frames", "silence", "last_ts", "last_pos")

    def __init__(self, clock: RecordingClock, silence: int):
        self.clock = clock
        self.frames: dict[int, bytes | bytearray] = {}
        self.silence = silence  # the code of silence in this law
        self.last_ts = 0
        self.last_pos = -1  # sample position of the previous packet; -1: none yet

    def put(self, ts: int, payload: bytes, now: float) -> None:
        """Place one packet's payload (RTP timestamp ``ts``, 8 kHz clock) received at ``now``."""
        clock = self.clock
        if (ts - self.last_ts) & 0xFFFFFFFF == FRAME and len(payload) == FRAME and not self.last_pos % FRAME:
            # the common case: the frame after the previous one, in time for its place
            pos = self.last_pos + FRAME
            frame = pos // FRAME
            if clock.written <= frame <= (now - clock.epoch) * 50 + RESYNC:
                self.last_ts, self.last_pos = ts, pos
                self.frames[frame] = payload
                return
        self._place(ts, payload, now)

    def _place(self, ts: int, payload: bytes, now: float) -> None:
        """:meth:`put` for every other case: the first packet, gaps, reordering, late streams, jumps."""
        clock = self.clock
        arrival = int((now - clock.epoch) * 50)
        if self.last_pos < 0:
            pos = arrival * FRAME
        else:
            delta = (ts - self.last_ts) & 0xFFFFFFFF
            if delta >= 0x80000000:
                delta -= 0x100000000
            pos = self.last_pos + delta
            frame = pos // FRAME
            if frame > arrival + RESYNC or frame < arrival - RESYNC:
                pos = arrival * FRAME
            elif frame < clock.written:
                if delta < 0:  # an old packet, and too late to be written
                    clock.late += 1
                    return
                pos = clock.written * FRAME  # the stream fell behind: from the first frame open
        self.last_ts, self.last_pos = ts, pos
        if len(payload) == FRAME and not pos % FRAME:
            self.frames[pos // FRAME] = payload
            return
        self._split(pos, payload)

    def _split(self, pos: int, payload: bytes) -> None:
        """A payload that is not one aligned 20 ms frame (ptime 10 or 30, a timestamp in between)."""
        end = pos + len(payload)
        written = self.clock.written * FRAME
        while pos < end:
            n, offset = divmod(pos, FRAME)
            take = min(FRAME - offset, end - pos)
            if pos >= written:
                frame = self.frames.get(n)
                if not isinstance(frame, bytearray):
                    frame = bytearray(frame) if frame is not None else bytearray([self.silence]) * FRAME
                    self.frames[n] = frame
                start = len(payload) - (end - pos)
                frame[offset:offset + take] = payload[start:start + take]
            pos += take

    def recode(self, table: np.ndarray, silence: int) -> None:
        """The codes buffered so far mapped through ``table`` (256 entries): the stream changed law."""
        for n, f in self.frames.items():  # (in place: the engine's rows hold this dict)
            self.frames[n] = table[np.frombuffer(f, dtype=np.uint8)].tobytes()
        self.silence = silence

    def take(self, frame: int, silence: bytes) -> bytes | bytearray:
        """Frame ``frame`` for the file (``silence`` where nothing arrived), forgetting it. Every frame
        held is exactly :data:`FRAME` long."""
        return self.frames.pop(frame, silence)

    def last_frame(self) -> int:
        """The newest frame holding audio, or -1."""
        return max(self.frames, default=-1)
