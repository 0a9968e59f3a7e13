"""SDES-SRTP (RFC 4568, RFC 3711): the a=crypto attribute, offer/answer per trunk mode, the engine's packet path.

The peer's side of the cryptography is libsrtp too (pylibsrtp), keyed as a real SDES peer would be: what
it sends is protected with the key its SDP gave, what it receives is checked with the key of our SDP.
A baresip call with SRTP is in ``test_e2e_srtp.py``.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest
from harness import ROOT, bench_module
from rtp_peer import RtpPeer

from b2bua.call.media import MediaSession, NotAcceptable
from b2bua.config import ConfigError, load_config
from b2bua.config_schema import Trunk
from b2bua.routing.router import srtp_mode
from b2bua.sip import sdes
from b2bua.sip.sdp import SessionDescription
from media.api import SrtpKeys
from media.engine import EngineConfig, MediaEngine
from media.srtp import PROFILES

KEY_A = bytes(range(30))
SUITE80 = "AES_CM_128_HMAC_SHA1_80"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# -- the attribute ------------------------------------------------------------------------------
def test_a_crypto_line_is_taken_only_when_it_is_fully_understood() -> None:
    good = sdes.parse(f"crypto:1 {SUITE80} inline:{_b64(KEY_A)}")
    assert good == sdes.Crypto(1, SUITE80, KEY_A)
    assert sdes.parse(f"crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{_b64(KEY_A)}|2^31") == \
        sdes.Crypto(3, "AES_CM_128_HMAC_SHA1_32", KEY_A)  # a lifetime is fine
    refused = [
        f"crypto:1 {SUITE80} inline:{_b64(KEY_A)}|2^20|1:4",  # an MKI
        f"crypto:1 {SUITE80} inline:{_b64(KEY_A)};inline:{_b64(KEY_A)}",  # two keys
        f"crypto:1 {SUITE80} inline:{_b64(KEY_A)} UNENCRYPTED_SRTP",  # a session parameter
        f"crypto:1 {SUITE80} inline:{_b64(KEY_A[:29])}",  # a key one byte short
        f"crypto:1 F8_128_HMAC_SHA1_80 inline:{_b64(KEY_A)}",  # a suite we do not do
        f"crypto:1 {SUITE80} inline:not*base64",
        f"crypto:x {SUITE80} inline:{_b64(KEY_A)}",
        "rtpmap:0 PCMU/8000",
    ]
    assert [sdes.parse(v) for v in refused] == [None] * len(refused)
    # the repr never shows a key (log lines carry commands and offers)
    assert _b64(KEY_A) not in repr(good) and repr(KEY_A) not in repr(good)
    assert repr(KEY_A) not in repr(SrtpKeys(SUITE80, KEY_A, KEY_A))


def test_the_signalling_side_names_exactly_the_suites_the_engine_can_do() -> None:
    assert set(sdes.SUITES) == set(PROFILES)
    assert sdes.new_key() != sdes.new_key() and len(sdes.new_key()) == sdes.KEY_LENGTH


# -- offer/answer --------------------------------------------------------------------------------
class _Engine:
    """Records what call control tells the engine (the MediaSession's side only)."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def allocate(self, session: str, leg: str) -> tuple[str, int]:
        return "127.0.0.1", 20000 if leg == "a" else 20002

    def update(self, session: str, leg: str, **kw: Any) -> None:
        self.updates.append((leg, kw))

    def keys(self, leg: str) -> SrtpKeys | None:
        return [kw for lg, kw in self.updates if lg == leg][-1]["srtp"]


def _sdp(proto: str = "RTP/AVP", *crypto: str, port: int = 4000) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.2", "s=-", "c=IN IP4 127.0.0.2", "t=0 0",
             f"m=audio {port} {proto} 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a={c}" for c in crypto]
    return ("\r\n".join(lines) + "\r\n").encode()


def _audio(body: bytes) -> Any:
    return SessionDescription.parse(body).media[0]


def test_an_srtp_offer_is_answered_with_its_tag_and_suite_and_a_key_of_ours() -> None:
    engine = _Engine()
    ms = MediaSession(engine, "s", srtp={"a": "accept", "b": "off"})  # type: ignore[arg-type]
    offer = _sdp("RTP/SAVP", f"crypto:7 AES_CM_128_HMAC_SHA1_32 inline:{_b64(KEY_A)}",
                 f"crypto:8 {SUITE80} inline:{_b64(KEY_A)}")
    to_b = _audio(ms.offer("a", offer))
    assert to_b.proto == "RTP/AVP" and not to_b.attributes("crypto")  # the staff side stays plain
    answer = _audio(ms.answer("b", _sdp(port=5000)))
    assert answer.proto == "RTP/SAVP" and answer.port == 20000
    (line,) = answer.attributes("crypto")
    ours = sdes.parse("crypto:" + line)
    assert ours is not None and (ours.tag, ours.suite) == (7, "AES_CM_128_HMAC_SHA1_32")  # the offerer's first
    assert ours.key != KEY_A
    assert engine.keys("a") == SrtpKeys("AES_CM_128_HMAC_SHA1_32", recv_key=KEY_A, send_key=ours.key)
    assert engine.keys("b") is None
    # a re-INVITE repeating the key keeps our key too (no re-keying, the engine keeps its contexts)
    ms.complete()
    ms.offer("a", offer)
    again = _audio(ms.answer("b", _sdp(port=5000)))
    assert again.attributes("crypto") == [line]


@pytest.mark.parametrize(("mode", "proto", "why"), [
    ("off", "RTP/SAVP", "not enabled"),
    ("needs_tls", "RTP/SAVP", "only over TLS"),
    ("require", "RTP/AVP", "requires SRTP"),
    ("accept", "RTP/SAVP", "no usable a=crypto"),  # only an MKI line
])
def test_an_offer_the_trunk_mode_does_not_allow_gets_488(mode: str, proto: str, why: str) -> None:
    ms = MediaSession(_Engine(), "s", srtp={"a": mode})  # type: ignore[arg-type]
    offer = _sdp(proto, f"crypto:1 {SUITE80} inline:{_b64(KEY_A)}|2^20|1:4")
    with pytest.raises(NotAcceptable, match=why) as err:
        ms.offer("a", offer)
    assert err.value.status == 488


def test_dtls_srtp_is_not_mistaken_for_sdes() -> None:
    ms = MediaSession(_Engine(), "s", srtp={"a": "accept"})  # type: ignore[arg-type]
    with pytest.raises(NotAcceptable, match="no audio stream"):
        ms.offer("a", _sdp("UDP/TLS/RTP/SAVP", f"crypto:1 {SUITE80} inline:{_b64(KEY_A)}"))


def test_a_require_trunk_is_offered_both_suites_and_its_answer_must_fit() -> None:
    engine = _Engine()
    ms = MediaSession(engine, "s", srtp={"a": "off", "b": "require"})  # type: ignore[arg-type]
    to_b = _audio(ms.offer("a", _sdp()))
    assert to_b.proto == "RTP/SAVP"
    lines = [sdes.parse("crypto:" + v) for v in to_b.attributes("crypto")]
    assert [(c.tag, c.suite) for c in lines if c] == [(1, SUITE80), (2, "AES_CM_128_HMAC_SHA1_32")]
    their = bytes(reversed(KEY_A))
    answer = _audio(ms.answer("b", _sdp("RTP/SAVP", f"crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{_b64(their)}",
                                        port=5000)))
    assert answer.proto == "RTP/AVP" and answer.port == 20000  # the caller's leg is plain
    second = lines[1]
    assert second is not None
    assert engine.keys("b") == SrtpKeys("AES_CM_128_HMAC_SHA1_32", recv_key=their, send_key=second.key)


@pytest.mark.parametrize("answer", [
    _sdp(port=5000),  # plain RTP to our RTP/SAVP offer
    _sdp("RTP/SAVP", f"crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{_b64(KEY_A)}", port=5000),  # tag 1 is _80
    _sdp("RTP/SAVP", f"crypto:9 {SUITE80} inline:{_b64(KEY_A)}", port=5000),  # a tag we did not offer
])
def test_an_answer_that_does_not_fit_our_srtp_offer_refuses_the_audio(answer: bytes) -> None:
    engine = _Engine()
    ms = MediaSession(engine, "s", srtp={"b": "require"})  # type: ignore[arg-type]
    ms.offer("a", _sdp())
    assert _audio(ms.answer("b", answer)).port == 0  # the caller is told: no audio
    assert all(kw.get("srtp") is None for _, kw in engine.updates)


# -- the engine --------------------------------------------------------------------------------
def _pkt(seq: int, payload: bytes, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, ssrc) + payload


def _sender_report(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 1, 2, 3, 4, 5)


def _session(key: bytes, inbound: bool, suite: str = SUITE80) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=PROFILES[suite]))


async def _until(cond: Any, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)


def _rtcp_pair() -> tuple[RtpPeer, RtpPeer]:
    """Two peers on ports P and P + 1 (the engine sends RTCP to the RTP port + 1)."""
    for _ in range(50):
        rtp = RtpPeer()
        try:
            return rtp, RtpPeer(port=rtp.port + 1)
        except OSError:
            rtp.close()
    raise RuntimeError("no port pair")


@pytest.mark.parametrize("workers", [0, 1])
def test_the_engine_decrypts_one_leg_relays_plain_to_the_other_and_encrypts_back(workers: int) -> None:
    """Leg a is SRTP, leg b plain. What a sends arrives at b decrypted and in order; a tampered, replayed,
    plain or oversized packet is dropped and counted; what b sends reaches a encrypted (the payload is not on
    the wire) and authentic under the key of our SDP; SRTCP both ways. In process and in a worker process."""
    ours = bytes(30 - i for i in range(30))
    keys = SrtpKeys(SUITE80, recv_key=KEY_A, send_key=ours)
    a_tx, a_rx = _session(KEY_A, inbound=False), _session(ours, inbound=True)
    payloads = [bytes([i]) * 160 for i in range(1, 11)]

    async def run() -> tuple[RtpPeer, RtpPeer, RtpPeer, RtpPeer, dict]:
        from media.worker import WorkerEngine

        cfg = EngineConfig(port_min=39900 + 40 * workers, port_max=39920 + 40 * workers)
        engine: Any = WorkerEngine(cfg, workers) if workers else MediaEngine(cfg)
        engine.start(asyncio.get_running_loop())
        await engine.ready()
        (a, a_rtcp), (b, b_rtcp) = _rtcp_pair(), _rtcp_pair()
        try:
            _, a_port = engine.allocate("s", "a")
            _, b_port = engine.allocate("s", "b")
            engine.update("s", "a", remote=("127.0.0.1", a.port), codec=0, srtp=keys)
            engine.update("s", "b", remote=("127.0.0.1", b.port), codec=0)
            protected = [a_tx.protect(_pkt(i, p)) for i, p in enumerate(payloads)]
            for packet in protected[:5]:
                a.send_raw(("127.0.0.1", a_port), packet)
                await asyncio.sleep(0.005)
            tampered = bytearray(protected[5])
            tampered[20] ^= 1
            a.send_raw(("127.0.0.1", a_port), bytes(tampered))
            a.send_raw(("127.0.0.1", a_port), protected[2])  # a replay
            a.send_raw(("127.0.0.1", a_port), _pkt(5, payloads[5]))  # plain RTP where SRTP is due
            a.send_raw(("127.0.0.1", a_port), _pkt(5, bytes(1900)))  # longer than libsrtp's buffer
            for packet in protected[5:]:
                a.send_raw(("127.0.0.1", a_port), packet)
                await asyncio.sleep(0.005)
            await _until(lambda: len(b.received) >= 10)
            for i, p in enumerate(payloads):
                b.send_raw(("127.0.0.1", b_port), _pkt(i, p, ssrc=0x99))
                await asyncio.sleep(0.005)
            a_rtcp.send_raw(("127.0.0.1", a_port + 1), a_tx.protect_rtcp(_sender_report()))
            b_rtcp.send_raw(("127.0.0.1", b_port + 1), _sender_report(0x99))
            await _until(lambda: len(a.received) >= 10 and b_rtcp.received and a_rtcp.received)
            await asyncio.sleep(1.2 if workers else 0.1)  # a worker reports its counters once a second
            return a, a_rtcp, b, b_rtcp, dict(engine.counters)
        finally:
            engine.close()
            for peer in (a, a_rtcp, b, b_rtcp):
                peer.close()

    a, a_rtcp, b, b_rtcp, counters = asyncio.run(run())
    assert [r.payload for r in b.received] == payloads  # decrypted, in order, nothing else let through
    assert counters["srtp_failed"] == 4  # tampered, replayed, plain, too long
    got = [a_rx.unprotect(r.raw) for r in a.received]
    assert [g[12:] for g in got] == payloads
    assert all(p not in r.raw for p, r in zip(payloads, a.received, strict=True))  # encrypted on the wire
    assert len(b_rtcp.received) == 1 and b_rtcp.received[0].raw[1] == 200  # SRTCP decrypted for b
    sr = a_rx.unprotect_rtcp(a_rtcp.received[0].raw)  # RTCP encrypted for a
    assert sr[1] == 200 and a_rtcp.received[0].raw != sr


# -- configuration and routing --------------------------------------------------------------------
_TRUNKS = """\
trunks:
  - name: plain
    kind: carrier
    addresses: [127.0.0.2/32]
    gateways: [{uri: "sip:127.0.0.2"}]
  - name: secure
    kind: carrier
    addresses: [127.0.0.3/32]
    gateways: [{uri: "sip:127.0.0.3"}]
    srtp: require
"""


def _config(tmp: Path, routing: str) -> Path:
    (tmp / "b2bua.yaml").write_text((ROOT / "config" / "b2bua.yaml").read_text())
    (tmp / "routing.yaml").write_text(routing)
    (tmp / "holidays.yaml").write_text((ROOT / "config" / "holidays.yaml").read_text())
    (tmp / "abuse_lexicon.yaml").write_bytes((ROOT / "config" / "abuse_lexicon.yaml").read_bytes())
    return tmp / "b2bua.yaml"


def test_a_config_that_would_send_sdes_keys_in_the_clear_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, _TRUNKS + "routes:\n  - name: r\n    trunks: [secure]\n"))
    where = f"{tmp_path / 'routing.yaml'}:6"
    assert any(p.startswith(where) and "srtp: require sends SDES keys" in p and "transport is udp" in p
               for p in err.value.problems), err.value.problems


def test_a_route_whose_trunks_differ_in_srtp_is_refused(tmp_path: Path) -> None:
    routing = _TRUNKS.replace("    srtp: require\n", "    srtp: require\n    sdes_over_cleartext: true\n")
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, routing + "routes:\n  - name: r\n    trunks: [plain, secure]\n"))
    assert any("the trunks of route 'r' differ in srtp (off, require)" in p for p in err.value.problems), \
        err.value.problems
    cfg = load_config(_config(tmp_path, routing + "routes:\n  - name: r\n    trunks: [secure]\n"))
    assert [t.srtp for t in cfg.routing.trunks] == ["off", "require"]


def test_keys_are_taken_from_a_trunk_only_over_tls_unless_it_says_otherwise() -> None:
    trunk = Trunk(name="t", kind="carrier", addresses=["127.0.0.2/32"], srtp="accept")
    assert srtp_mode(trunk, "udp") == srtp_mode(trunk, "tcp") == "needs_tls"
    assert srtp_mode(trunk, "tls") == "accept"
    assert srtp_mode(trunk.model_copy(update={"sdes_over_cleartext": True}), "udp") == "accept"
    assert srtp_mode(trunk.model_copy(update={"srtp": "off"}), "tls") == "off"


# -- mutated input -------------------------------------------------------------------------------
def test_mutated_srtp_offers_and_answers_get_488_or_a_fitting_answer_never_an_exception() -> None:
    """Fuzzed RTP/SAVP offers (the crypto line, the m= line, the whole body; scripts/bench/fuzz.py's mutator)
    into an accepting leg and fuzzed answers to our RTP/SAVP offer: an SdpError (400/488) or a session
    whose keys are whole, nothing else."""
    import random

    from b2bua.sip.sdp import SdpError

    fuzz = bench_module("fuzz")
    rng = random.Random(5)
    offer = _sdp("RTP/SAVP", f"crypto:1 {SUITE80} inline:{_b64(KEY_A)}|2^31",
                 f"crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{_b64(KEY_A)}")
    answer = _sdp("RTP/SAVP", f"crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{_b64(KEY_A)}", port=5000)
    taken = refused = 0
    for _ in range(3000):
        engine = _Engine()
        ms = MediaSession(engine, "s", srtp={"a": "accept", "b": "require"})  # type: ignore[arg-type]
        try:
            ms.offer("a", fuzz.mutate(offer, rng, True))
            ms.answer("b", fuzz.mutate(answer, rng, True))
            taken += 1
        except SdpError:
            refused += 1
            continue
        for leg in ("a", "b"):
            keys = [kw["srtp"] for lg, kw in engine.updates if lg == leg and kw.get("srtp") is not None]
            assert all(k.suite in PROFILES and len(k.recv_key) == len(k.send_key) == 30 for k in keys)
    assert taken > 100 and refused > 100  # both paths were reached


def test_garbage_on_an_srtp_leg_is_refused_by_libsrtp_as_an_srtp_error() -> None:
    import random

    from media.srtp import LegCrypto, SrtpError

    fuzz = bench_module("fuzz")
    rng = random.Random(6)
    crypto = LegCrypto(SrtpKeys(SUITE80, recv_key=KEY_A, send_key=KEY_A))
    sender = _session(KEY_A, inbound=False)
    seeds = [sender.protect(_pkt(i, b"\x55" * 160)) for i in range(20)] + \
        [sender.protect_rtcp(_sender_report())] + fuzz.media_seeds()
    failed = 0
    for _ in range(5000):
        data = fuzz.mutate(rng.choice(seeds), rng, False)
        for method in (crypto.unprotect, crypto.unprotect_rtcp):
            try:
                method(data)
            except SrtpError:
                failed += 1
    assert failed > 9000  # (a mutated packet almost never authenticates)
    # longer than libsrtp's buffer (pylibsrtp says ValueError): refused the same way, not an exception that
    # would escape the engine's packet path
    for method in (crypto.unprotect, crypto.unprotect_rtcp, crypto.protect, crypto.protect_rtcp):
        with pytest.raises(SrtpError):
            method(seeds[0] + bytes(2048))
