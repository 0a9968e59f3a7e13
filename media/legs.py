"""A media session and its legs: the state the engine's packet path and tick work on (media.engine).

Plain classes with ``__slots__`` (no dataclass machinery on the per-packet attribute reads); the engine
owns them and alone changes them.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .dtmf import TelephoneEventDetector
from .rtp import InStats, new_out_stream
from .srtp import LegCrypto
from .timeline import Track


class Leg:
    """One side of a session: the socket pair facing that endpoint and what it negotiated."""

    __slots__ = ("session", "name", "port", "rtp", "rtcp", "remote", "rtcp_remote", "latched", "signalled",
                 "symmetric", "codec", "dtmf_pt", "send", "recv", "out", "stats", "dropped",
                 "strangers", "last_rx", "detector", "other", "queue", "timed_out", "listen", "tap",
                 "relay_dtmf", "inband_keys", "prompt", "prompt_pos", "prompt_loop", "prompt_mix", "prompt_id",
                 "crypto", "transmit")

    def __init__(self, session: Session, name: str, port: int, rtp: socket.socket, rtcp: socket.socket):
        self.session = session
        self.name = name
        self.port = port
        self.rtp = rtp
        self.rtcp = rtcp
        self.remote: tuple[str, int] | None = None
        self.rtcp_remote: tuple[str, int] | None = None
        self.latched = False
        #: the address the endpoint's SDP gave: a packet from it always wins the latch back
        self.signalled: tuple[str, int] | None = None
        self.symmetric = True
        self.codec: int | None = None
        self.dtmf_pt: int | None = None
        self.send = True  # we may send to this endpoint (it did not say sendonly/inactive)
        self.recv = True  # it will send to us
        self.out = new_out_stream()  # what this endpoint receives
        self.stats = InStats()
        self.dropped = 0
        self.strangers = 0
        self.last_rx = 0.0
        self.detector = TelephoneEventDetector()
        self.other: Leg | None = None
        #: frames waiting for the tick (transcoding): payloads of the codec this leg sends
        self.queue: deque[bytes] = deque(maxlen=4)
        self.timed_out = False
        #: relay this endpoint's RFC 4733 events to the other side (off for staff keys)
        self.relay_dtmf = True
        #: look for in-band DTMF in this endpoint's audio when it has no telephone-event (off where nobody
        #: uses its keys: the Goertzel pass and a frame copy per packet are saved)
        self.inband_keys = True
        #: in-band DTMF: copies of received frames for the tick's Goertzel (legs without telephone-event)
        self.listen: deque[bytes] | None = None
        #: the audio tap: copies of received frames for abuse detection (media.tap), when tapped
        self.tap: deque[bytes] | None = None
        #: what this endpoint hears from us instead of (or mixed into) the other side: int16 at 8 kHz
        self.prompt: np.ndarray | None = None
        self.prompt_pos = 0
        self.prompt_loop = False
        self.prompt_mix = False
        self.prompt_id = ""
        #: SRTP (media.srtp): decrypts what arrives, encrypts what leaves; None for plain RTP
        self.crypto: LegCrypto | None = None
        #: sends an RTP packet to this endpoint (``(packet, address)``): the socket's own ``sendto``, or,
        #: with SRTP, one that encrypts first; set with the keys (:meth:`set_crypto`), so the packet path
        #: does not ask per packet
        self.transmit: Callable[[bytes | bytearray, tuple[str, int]], object] = rtp.sendto

    def set_crypto(self, crypto: LegCrypto | None) -> None:
        """SRTP on (``crypto``) or off for this leg, with ``transmit`` to match (it raises SrtpError for a
        packet libsrtp refuses, OSError as ``sendto`` does)."""
        if crypto is self.crypto:
            return
        self.crypto = crypto
        if crypto is None:
            self.transmit = self.rtp.sendto
        else:
            protect, sendto = crypto.protect, self.rtp.sendto  # (no reference back to the leg: no cycle)
            self.transmit = lambda packet, address: sendto(protect(packet), address)


class Session:
    __slots__ = ("id", "legs", "created", "transcode", "recording", "rec_in", "rec_out", "rec_from", "rec_law")

    def __init__(self, sid: str):
        self.id = sid
        self.legs: dict[str, Leg] = {}
        self.created = time.monotonic()
        self.transcode = False
        #: recording: what the caller (leg "a") sends, and what it hears, in that leg's law, placed
        #: on the recording timeline from frame ``rec_from`` on
        self.recording = False
        self.rec_in: Track | None = None
        self.rec_out: Track | None = None
        self.rec_from = 0
        self.rec_law = 0  # the file's G.711 law (payload type): the caller's when the recording began
