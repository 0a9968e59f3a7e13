"""RTP and RTCP headers (RFC 3550) and the per-direction output stream state."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

_HDR = struct.Struct("!BBHII")
_SEQ_TS = struct.Struct("!HI")
_pack_seq_ts_ssrc = struct.Struct("!HII").pack_into


class RtpError(ValueError):
    """A packet that is not RTP version 2 or is truncated."""


def check(data: bytes) -> int:
    """Validate an RTP packet (§5.1); return its payload type. Raises :class:`RtpError`."""
    payload_offset(data)
    return data[1] & 0x7F


def payload_offset(data: bytes) -> int:
    """Validate an RTP packet (§5.1); return the length of its header (CSRCs and extension
    included), i.e. where the payload starts. Raises :class:`RtpError`."""
    n = len(data)
    if n < 12:
        raise RtpError("truncated RTP header")
    b0 = data[0]
    if b0 >> 6 != 2:
        raise RtpError("not RTP version 2")
    header = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # extension
        if n < header + 4:
            raise RtpError("truncated RTP extension")
        header += 4 + 4 * int.from_bytes(data[header + 2 : header + 4], "big")
    if n < header:
        raise RtpError("truncated RTP header")
    return header


def header_length(data: bytes) -> int:
    """Header length of a packet already validated by :func:`check`."""
    b0 = data[0]
    header = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        header += 4 + 4 * int.from_bytes(data[header + 2 : header + 4], "big")
    return header


def build(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return _HDR.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def new_ssrc() -> int:
    return int.from_bytes(os.urandom(4), "big")


def new_out_stream() -> OutStream:
    """Random SSRC, initial sequence number and timestamp (RFC 3550 §5.1)."""
    r = os.urandom(10)
    return OutStream(int.from_bytes(r[:4], "big"), int.from_bytes(r[4:6], "big"), int.from_bytes(r[6:], "big"))


@dataclass(slots=True)
class OutStream:
    """What one endpoint receives from us: one SSRC, continuous sequence numbers and timestamps.

    Relayed packets are rewritten with offsets; when we switch between relayed audio and
    our own (prompts, transcoded frames) the offsets are recomputed so the receiver sees no
    jump (RFC 3550 §5.1: only the SSRC owner's numbering).
    """

    ssrc: int
    seq: int = 0  # last sequence number sent
    ts: int = 0  # last timestamp sent
    seq_off: int | None = None
    ts_off: int = 0
    last_src_ts: int = 0
    sent: int = 0
    octets: int = 0

    def relay(self, data: bytes, pt: int | None = None) -> bytearray:
        """Rewrite a relayed packet's SSRC, sequence number and timestamp (and payload type)."""
        seq, ts = _SEQ_TS.unpack_from(data, 2)
        out = self.forward(data, seq, ts)
        if pt is not None:
            out[1] = (out[1] & 0x80) | pt
        return out

    def forward(self, data: bytes, seq: int, ts: int) -> bytearray:
        """:meth:`relay` for the packet path, which has already read ``seq`` and ``ts``."""
        seq_off = self.seq_off
        if seq_off is None:
            # (re)join: continue right after what we last sent, 20 ms later
            self.seq_off = seq_off = (self.seq + 1 - seq) & 0xFFFF
            self.ts_off = (self.ts + 160 - ts) & 0xFFFFFFFF
        self.seq = seq = (seq + seq_off) & 0xFFFF
        self.ts = ts = (ts + self.ts_off) & 0xFFFFFFFF
        self.sent += 1
        self.octets += len(data) - 12
        out = bytearray(data)
        _pack_seq_ts_ssrc(out, 2, seq, ts, self.ssrc)
        return out

    def own(self, pt: int, payload: bytes, samples: int, marker: bool = False) -> bytes:
        """A packet of our own audio, continuing the numbering; relaying re-joins afterwards."""
        self.seq_off = None
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + samples) & 0xFFFFFFFF
        self.sent += 1
        self.octets += len(payload)
        return build(pt, self.seq, self.ts, self.ssrc, payload, marker)


@dataclass(slots=True)
class InStats:
    """Receive statistics for one leg (RFC 3550 §6.4.1, Appendix A.1 and A.8)."""

    packets: int = 0
    octets: int = 0
    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    jitter: float = 0.0
    _transit: int | None = None

    def update(self, seq: int, ts: int, arrival: int, size: int) -> None:
        """``arrival`` is the arrival time in RTP clock units."""
        self.packets += 1
        self.octets += size
        max_seq = self.max_seq
        if self.base_seq < 0:
            self.base_seq = self.max_seq = seq
        elif (seq - max_seq) & 0xFFFF < 0x8000:  # in order, maybe after a gap
            if seq < max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
        transit = arrival - ts
        last = self._transit
        self._transit = transit
        if last is not None:
            d = transit - last
            self.jitter += ((d if d >= 0 else -d) - self.jitter) * 0.0625  # J += (|D| - J) / 16

    @property
    def expected(self) -> int:
        return 0 if self.base_seq < 0 else self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)


def rewrite_rtcp(data: bytes, ssrc_out: int, ssrc_map: dict[int, int]) -> bytes | None:
    """Forward an RTCP compound packet: sender SSRC -> ``ssrc_out``, report block SSRCs via
    ``ssrc_map`` (our SSRC towards this sender -> the other side's original SSRC).

    Returns None for packets that are not RTCP version 2.
    """
    out = bytearray(data)
    i = 0
    n = len(out)
    while i + 8 <= n:
        if out[i] >> 6 != 2:
            return None
        count = out[i] & 0x1F
        ptype = out[i + 1]
        length = (int.from_bytes(out[i + 2 : i + 4], "big") + 1) * 4
        if i + length > n:
            return None
        if ptype in (200, 201):  # SR, RR
            out[i + 4 : i + 8] = ssrc_out.to_bytes(4, "big")
            blocks = i + (28 if ptype == 200 else 8)
            for b in range(count):
                at = blocks + 24 * b
                if at + 4 > i + length:
                    break
                reported = int.from_bytes(out[at : at + 4], "big")
                if reported in ssrc_map:
                    out[at : at + 4] = ssrc_map[reported].to_bytes(4, "big")
        elif ptype in (202, 203, 204, 205, 206):  # SDES/BYE/APP/feedback: first SSRC is the sender
            if count or ptype in (204, 205, 206):
                out[i + 4 : i + 8] = ssrc_out.to_bytes(4, "big")
        i += length
    return bytes(out)
