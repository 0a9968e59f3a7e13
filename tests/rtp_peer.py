"""A small real RTP endpoint for tests: sends paced G.711 frames, records what it receives."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from media import g711


@dataclass
class Received:
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload: bytes
    source: tuple[str, int]
    at: float = 0.0  # time.monotonic() on arrival
    raw: bytes = b""  # the whole datagram (SRTP tests decrypt it)


@dataclass
class RtpPeer:
    """Bound to ``host``:``port`` (0 = any); a thread collects every packet."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, self.port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) >= 12:
                seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
                self.received.append(Received(data[1] & 0x7F, seq, ts, ssrc, data[12:], addr, time.monotonic(), data))

    def send_audio(self, target: tuple[str, int], samples: np.ndarray, pt: int, ssrc: int = 0x1234) -> None:
        """Send int16 samples as 20 ms G.711 frames, paced in real time."""
        frames = len(samples) // 160
        start = time.monotonic()
        for i in range(frames):
            payload = g711.encode(samples[i * 160:(i + 1) * 160], pt).tobytes()
            packet = struct.pack("!BBHII", 0x80, pt, (1000 + i) & 0xFFFF, 5000 + 160 * i, ssrc) + payload
            self.sock.sendto(packet, target)
            delay = start + (i + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def send_digits(self, target: tuple[str, int], digits: str, pt: int = 101, ssrc: int = 0x4321) -> None:
        """Press keys as RFC 4733 events: 100 ms of updates, three end packets, 100 ms apart."""
        events = {**{str(i): i for i in range(10)}, "*": 10, "#": 11}
        seq = self._dtmf_seq = getattr(self, "_dtmf_seq", 2000)
        for digit in digits:
            ts = self._dtmf_ts = getattr(self, "_dtmf_ts", 90000) + 4000
            for i in range(1, 6):
                end = i >= 3
                dur = min(i, 3) * 320
                payload = struct.pack("!BBH", events[digit], (0x80 if end else 0) | 10, dur)
                marker = 0x80 if i == 1 else 0
                self.sock.sendto(struct.pack("!BBHII", 0x80, marker | pt, seq & 0xFFFF, ts, ssrc) + payload, target)
                seq += 1
                time.sleep(0.02)
            self._dtmf_seq = seq
            time.sleep(0.1)

    def send_raw(self, target: tuple[str, int], data: bytes) -> None:
        self.sock.sendto(data, target)

    def audio(self, pt: int) -> np.ndarray:
        """The received frames of payload type ``pt`` decoded, in sequence order."""
        return decode_in_order([r for r in self.received if r.pt == pt], pt)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(1)


def extended_seqs(packets: list[Received]) -> list[int]:
    """The packets' sequence numbers in arrival order, unwrapped past 65535 (RFC 3550 A.1).

    The first sequence number is random, so a stream of a few hundred packets wraps now and then:
    sorting the raw 16-bit numbers would put the wrapped tail first.
    """
    if not packets:
        return []
    out, last = [], packets[0].seq
    for r in packets:
        last += (r.seq - last + 0x8000) % 0x10000 - 0x8000
        out.append(last)
    return out


def in_seq_order(packets: list[Received]) -> list[Received]:
    """``packets`` sorted by their extended sequence number."""
    return [r for _, r in sorted(zip(extended_seqs(packets), packets, strict=True), key=lambda p: p[0])]


def decode_in_order(packets: list[Received], pt: int) -> np.ndarray:
    """The G.711 payloads of ``packets`` decoded, in sequence order."""
    if not packets:
        return np.zeros(0, dtype=np.int16)
    return g711.decode(np.frombuffer(b"".join(r.payload for r in in_seq_order(packets)), dtype=np.uint8), pt)


def speech_like(seconds: float, seed: int = 7) -> np.ndarray:
    """A speech-like test signal: a gliding tone with amplitude modulation and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 8000)) / 8000
    freq = 300 + 500 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(freq) / 8000
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    x = 9000 * env * np.sin(phase) + 600 * rng.standard_normal(len(t))
    return x.astype(np.int16)


def best_correlation(sent: np.ndarray, got: np.ndarray) -> float:
    """Peak normalized cross-correlation of ``got`` against ``sent`` over all lags."""
    if len(got) < 800 or len(sent) < 800:
        return 0.0
    a = sent.astype(np.float64) - sent.mean()
    b = got.astype(np.float64) - got.mean()
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    peak = int(np.argmax(np.abs(corr)))
    lag = peak if peak < size // 2 else peak - size
    # correlate the overlapping part at that lag
    if lag >= 0:
        x, y = a[: len(b) - lag], b[lag:]
    else:
        x, y = a[-lag:], b[: len(a) + lag]
    m = min(len(x), len(y))
    x, y = x[:m], y[:m]
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


FRAME = 160  # samples in a 20 ms packet
#: how exact the two parts of a split piece must be: a part missing one packet in ten scores about 0.95
SPLIT_EXACT = 0.99


def heard_in_order(sent: np.ndarray, got: np.ndarray, piece: int = 1600, threshold: float = 0.9) -> float:
    """The share of ``sent``'s pieces (200 ms) found intact in ``got``, each after the one before.

    What a listener judges: every piece there, unchanged, in order. Unlike one correlation over the whole
    signal it does not care where each piece lands, so a loaded machine that delays some packets (the
    recording then shifts what follows, losing nothing) does not fail a test that checks correctness.
    A piece split by a gap the recording inserted (a packet that came late is written after 20 ms of
    silence, keeping wall-clock time) counts when its two parts, cut where a packet ends, are both found
    exactly, in order (a lost packet leaves one part inexact: that piece does not count).
    """
    pieces = [sent[i:i + piece] for i in range(0, len(sent) - piece + 1, piece)]
    if not pieces or len(got) < piece:
        return 0.0
    b = got.astype(np.float64)
    size = 1 << (len(b) + piece - 1).bit_length()
    fb = np.fft.rfft(b, size)
    energy = np.concatenate([[0.0], np.cumsum(b * b)])  # for each lag's window norm

    def best(p: np.ndarray) -> tuple[float, int]:
        n = len(p)
        a = p.astype(np.float64) - p.mean()
        corr = np.fft.irfft(fb * np.conj(np.fft.rfft(a, size)), size)[: len(b) - n + 1]
        norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-9)) * (np.linalg.norm(a) + 1e-9)
        score = corr / norms
        at = int(np.argmax(score))
        return float(score[at]), at

    found, last = 0, -1
    for p in pieces:
        score, at = best(p)
        if score > threshold and at > last:
            found, last = found + 1, at
            continue
        for cut in range(FRAME, piece, FRAME):  # split where a packet ends; both parts exact (a loss is not)
            (s1, at1), (s2, at2) = best(p[:cut]), best(p[cut:])
            if min(s1, s2) > SPLIT_EXACT and last < at1 and at2 >= at1 + cut:
                found, last = found + 1, at2
                break
    return found / len(pieces)


def sdp_port(message_log: Path, first_line: str, timeout: float = 10.0) -> int:
    """Wait until SIPp's -trace_msg log shows a message starting with ``first_line`` carrying SDP;
    return its m=audio port."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(re.escape(first_line) + r".*?m=audio (\d+)", re.S)
    while time.monotonic() < deadline:
        if message_log.exists():
            for block in re.split(r"-{20,}", message_log.read_text(errors="replace")):
                m = pattern.search(block)
                if m and "received" in block[:200]:
                    return int(m.group(1))
        time.sleep(0.05)
    raise TimeoutError(f"no {first_line!r} with SDP in {message_log}")


def read_recording(path: Path | str, codec: str | None = None) -> np.ndarray:
    """A call recording's samples as int16 (frames, 2): caller left, what it heard right.

    Decoded by FFmpeg (PyAV), a standard reader, not by our own tables; ``codec`` checks how the file
    stores them (``pcm_mulaw`` or ``pcm_alaw``: the caller's G.711 law, kept as it was on the wire).
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.channels, stream.sample_rate) == (2, 8000)
        if codec is not None:
            assert stream.codec_context.name == codec
        frames = [f.to_ndarray() for f in container.decode(stream)]
    if not frames:
        return np.zeros((0, 2), dtype=np.int16)
    data = np.concatenate(frames, axis=1)  # packed s16 stereo: (1, frames * 2)
    assert data.dtype == np.int16
    return data.reshape(-1, 2)
