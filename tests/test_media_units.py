"""Media building blocks: G.711 tables, RTP stream continuity, RTCP rewriting, DTMF detectors."""

from __future__ import annotations

import struct
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from rtp_peer import speech_like

from media import g711
from media.dtmf import InbandDetector, TelephoneEventDetector
from media.rtp import InStats, RtpError, check, new_out_stream, rewrite_rtcp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


@pytest.mark.parametrize("pt,enc,dec", [(0, audioop.lin2ulaw, audioop.ulaw2lin),
                                        (8, audioop.lin2alaw, audioop.alaw2lin)])
def test_g711_tables_match_the_reference_codec_bit_for_bit(pt, enc, dec) -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert np.array_equal(g711.encode(pcm, pt), np.frombuffer(enc(pcm.tobytes(), 2), np.uint8))
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(g711.decode(codes, pt), np.frombuffer(dec(codes.tobytes(), 2), np.int16))


def test_transcode_table_equals_decode_then_encode() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(g711.transcode_table(0, 8)[codes], g711.encode(g711.decode(codes, 0), 8))
    assert np.array_equal(g711.transcode_table(8, 0)[codes], g711.encode(g711.decode(codes, 8), 0))


def _pkt(seq: int, ts: int, ssrc: int = 0xAAAA, pt: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


def test_out_stream_stays_continuous_across_relay_and_own_audio() -> None:
    out = new_out_stream()
    seen = []
    for i in range(3):  # relayed
        seen.append(struct.unpack_from("!HII", out.relay(_pkt(5000 + i, 90000 + 160 * i)), 2))
    for _ in range(2):  # our own audio (a prompt)
        seen.append(struct.unpack_from("!HII", out.own(0, b"\xff" * 160, 160), 2))
    for i in range(3):  # the far end again, with a different SSRC and numbering
        seen.append(struct.unpack_from("!HII", out.relay(_pkt(100 + i, 7 + 160 * i, ssrc=0xBBBB)), 2))
    assert {s[2] for s in seen} == {out.ssrc}
    assert all((b[0] - a[0]) & 0xFFFF == 1 for a, b in pairwise(seen))
    assert all((b[1] - a[1]) & 0xFFFFFFFF == 160 for a, b in pairwise(seen))


def test_rtp_check_rejects_bad_packets() -> None:
    assert check(_pkt(1, 1)) == 0
    for bad in (b"\x40" + b"\x00" * 20, b"\x80\x00", b"\x90" + b"\x00" * 11, b"\x8f" + b"\x00" * 20):
        with pytest.raises(RtpError):
            check(bad)


def test_in_stats_loss_and_jitter() -> None:
    st = InStats()
    for seq in [1, 2, 3, 5, 6, 8]:
        st.update(seq, seq * 160, seq * 160 + (7 if seq == 5 else 0), 172)
    assert st.expected == 8 and st.lost == 2 and st.jitter > 0


def test_rtcp_sender_and_report_ssrcs_rewritten() -> None:
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0x1111) + struct.pack("!I", 0x2222) + b"\x00" * 20
    out = rewrite_rtcp(rr, 0x9999, {0x2222: 0x3333})
    assert struct.unpack_from("!I", out, 4)[0] == 0x9999 and struct.unpack_from("!I", out, 8)[0] == 0x3333
    assert rewrite_rtcp(b"\x40" + b"\x00" * 7, 1, {}) is None


def _pcap_rtp(path: Path) -> list[bytes]:
    d = path.read_bytes()
    link, off, out = struct.unpack("<I", d[20:24])[0], 24, []
    while off + 16 <= len(d):
        incl = struct.unpack("<IIII", d[off:off + 16])[2]
        pkt = d[off + 16:off + 16 + incl]
        off += 16 + incl
        ip = pkt[14 if link == 1 else 16 if link == 113 else 0:]
        out.append(ip[(ip[0] & 15) * 4 + 8:])
    return out


PCAPS = Path("/usr/share/sip-tester")


@pytest.mark.usefixtures("sipp_installed")  # the pcaps come with SIPp (Debian sip-tester)
@pytest.mark.parametrize("name,digit", [(str(i), str(i)) for i in range(10)] + [("star", "*"), ("pound", "#")])
def test_rfc4733_pcaps_give_each_digit_once(name: str, digit: str) -> None:
    det = TelephoneEventDetector()
    got = []
    for rtp in _pcap_rtp(PCAPS / f"dtmf_2833_{name}.pcap"):
        got += det.feed(struct.unpack_from("!I", rtp, 4)[0], rtp[12:])
    got += det.flush()
    assert [g.digit for g in got] == [digit] and got[0].duration_ms > 0


def test_rfc4733_end_packets_lost_reported_at_next_event() -> None:
    det = TelephoneEventDetector()
    assert det.feed(1000, bytes([5, 0x0A, 0, 160])) == []
    got = det.feed(3000, bytes([7, 0x0A, 0, 160]))
    assert [g.digit for g in got] == ["5"]
    assert [g.digit for g in det.feed(3000, bytes([7, 0x8A, 1, 64]))] == ["7"]
    assert det.feed(3000, bytes([7, 0x8A, 1, 64])) == []  # repeated end packet


@pytest.mark.usefixtures("sipp_installed")  # the pcaps come with SIPp (Debian sip-tester)
def test_the_same_pcap_replayed_later_is_a_new_press_but_a_quick_repeat_is_not() -> None:
    """SIPp replays its pcaps with the same RTP timestamps: *1 pressed twice must give *1*1."""
    det = TelephoneEventDetector(memory=1.0)
    got: list[str] = []
    for start, name in ((0.0, "star"), (0.4, "1"), (2.4, "star"), (2.8, "1"), (2.9, "1")):
        for i, rtp in enumerate(_pcap_rtp(PCAPS / f"dtmf_2833_{name}.pcap")):
            got += [d.digit for d in det.feed(struct.unpack_from("!I", rtp, 4)[0], rtp[12:], start + i * 0.02)]
    assert got == ["*", "1", "*", "1"]  # the "1" again at 2.9 s is within a second of the last: a duplicate


def _tone(digit: str, frames: int = 5) -> np.ndarray:
    low = {"1": 697, "2": 697, "3": 697, "4": 770, "5": 770, "6": 770, "7": 852, "8": 852, "9": 852,
           "*": 941, "0": 941, "#": 941}[digit]
    high = {"1": 1209, "4": 1209, "7": 1209, "*": 1209, "2": 1336, "5": 1336, "8": 1336, "0": 1336,
            "3": 1477, "6": 1477, "9": 1477, "#": 1477}[digit]
    t = np.arange(160 * frames) / 8000
    return (6000 * np.sin(2 * np.pi * low * t) + 6000 * np.sin(2 * np.pi * high * t)).astype(np.int16)


def test_inband_detector_finds_tones_and_ignores_speech() -> None:
    det = InbandDetector()
    signal = np.concatenate([_tone("5"), np.zeros(800, np.int16), _tone("#"), np.zeros(800, np.int16),
                             speech_like(3.0)])
    got = []
    for i in range(len(signal) // 160):
        got += [d.digit for _, d in det.feed(["leg"], signal[i * 160:(i + 1) * 160][None, :])]
    assert got == ["5", "#"]
