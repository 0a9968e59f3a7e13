"""Media anchoring end to end: SIPp does the signalling, real RTP flows through the B2BUA's ports."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness import SCENARIOS, SIPP, B2BUAProcess, free_port, sipp, sipp_background, write_config
from rtp_peer import RtpPeer, best_correlation, sdp_port, speech_like

pytestmark = pytest.mark.usefixtures("sipp_installed")

MEDIA = {"port_min": 31000, "port_max": 31100}


def _csv(path: Path, port: int, pt: int, name: str) -> Path:
    path.write_text(f"SEQUENTIAL\n{port};{pt};{name};\n")
    return path


class MediaCall:
    """One call: SIPp caller and callee whose SDP point at two test RTP peers."""

    def __init__(self, tmp: Path, caller: tuple[int, str], callee: tuple[int, str], hold_ms: int = 4000,
                 media: dict | None = None):
        self.tmp = tmp
        self.a, self.b = RtpPeer(), RtpPeer()
        self.caller, self.callee = caller, callee
        self.hold_ms = hold_ms
        self.media = {**MEDIA, **(media or {})}

    def __enter__(self) -> MediaCall:
        tmp = self.tmp
        uas_port = free_port()
        self._uas = sipp_background(["-sf", str(SCENARIOS / "uas_rtp.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                                     "-inf", str(_csv(tmp / "b.csv", self.b.port, *self.callee)), "-trace_msg",
                                     "-message_file", str(tmp / "uas_msg.log")], tmp)
        self._uas.__enter__()
        self.proc, self.port = _start_with_media(tmp, uas_port, self.media)
        self.uac = subprocess.Popen(
            [SIPP, "-sf", str(SCENARIOS / "uac_rtp.xml"), f"127.0.0.1:{self.port}", "-i", "127.0.0.1",
             "-p", str(free_port()), "-m", "1", "-d", str(self.hold_ms), "-nostdin",
             "-inf", str(_csv(tmp / "a.csv", self.a.port, *self.caller)), "-trace_msg",
             "-message_file", str(tmp / "uac_msg.log")], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.a_target = ("127.0.0.1", sdp_port(tmp / "uac_msg.log", "SIP/2.0 200"))
        self.b_target = ("127.0.0.1", sdp_port(tmp / "uas_msg.log", "INVITE sip:"))
        return self

    def finish(self) -> str:
        out, _ = self.uac.communicate(timeout=30)
        assert self.uac.returncode == 0, out.decode(errors="replace")[-2000:]
        return out.decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.uac.poll() is None:
            self.uac.kill()
        self.proc.stop()
        self._uas.__exit__(None, None, None)
        self.a.close()
        self.b.close()


def _start_with_media(tmp: Path, uas_port: int, media: dict) -> tuple[B2BUAProcess, int]:
    """A B2BUA routing to ``uas_port`` with the ``media:`` settings overridden."""
    port = free_port()
    cfg = write_config(tmp / "config", routing={"routes": [{"name": "lab", "prefix": "",
                                                            "targets": [f"sip:127.0.0.1:{uas_port}"]}]})
    data = yaml.safe_load(cfg.read_text())
    data["media"] = {**data.get("media", {}), **media}
    cfg.write_text(yaml.safe_dump(data))
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp / "b2bua.log").start()
    return proc, port


def _both_ways(call: MediaCall, a_pt: int, b_pt: int, seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    up, down = speech_like(seconds, seed=1), speech_like(seconds, seed=2)[::-1].copy()
    t1 = threading.Thread(target=call.a.send_audio, args=(call.a_target, up, a_pt))
    t2 = threading.Thread(target=call.b.send_audio, args=(call.b_target, down, b_pt))
    t1.start(), t2.start()
    t1.join(), t2.join()
    return up, down


@pytest.mark.parametrize("workers", [0, 2, None], ids=["in-process", "2-workers", "shipped-default"])
def test_sdp_each_side_sees_only_our_ports_and_audio_flows_both_ways(tmp_path: Path, workers: int | None) -> None:
    """Also with the shipped default (``workers: null``): one worker process per core on a machine with more
    than one (the log says which mode it took)."""
    with MediaCall(tmp_path, (0, "PCMU"), (0, "PCMU"), media={"workers": workers}) as call:
        cores = len(os.sched_getaffinity(0))
        expected = workers if workers is not None else cores if cores > 1 else 0
        assert (f"media engine: {expected} worker processes" if expected else "media engine: in this process") \
            in call.proc.log()
        assert MEDIA["port_min"] <= call.a_target[1] < MEDIA["port_max"]
        assert MEDIA["port_min"] <= call.b_target[1] < MEDIA["port_max"]
        assert call.a_target != call.b_target
        up, down = _both_ways(call, 0, 0)
        call.finish()
    uac_log = (tmp_path / "uac_msg.log").read_text()
    uas_log = (tmp_path / "uas_msg.log").read_text()
    assert f"m=audio {call.b.port} " not in uac_log.split("INVITE sip:")[-1]  # callee's port never reaches the caller
    assert f"m=audio {call.a.port} " not in uas_log  # nor the caller's port the callee
    got_b, got_a = call.b.audio(0), call.a.audio(0)
    assert len(got_b) >= 0.95 * len(up) and len(got_a) >= 0.95 * len(down)
    assert best_correlation(up, got_b) > 0.99 and best_correlation(down, got_a) > 0.99
    # one SSRC per receiver, ours, with continuous sequence numbers
    for peer in (call.a, call.b):
        ssrcs = {r.ssrc for r in peer.received}
        assert len(ssrcs) == 1 and 0x1234 not in ssrcs
        seqs = [r.seq for r in peer.received]
        assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))
        assert {r.source for r in peer.received} == {call.a_target if peer is call.a else call.b_target}


@pytest.mark.parametrize("caller,callee,workers", [((0, "PCMU"), (8, "PCMA"), 0), ((8, "PCMA"), (0, "PCMU"), 0),
                                                    ((0, "PCMU"), (8, "PCMA"), 2)])
def test_transcoding_between_pcmu_and_pcma(tmp_path: Path, caller: tuple[int, str], callee: tuple[int, str],
                                           workers: int) -> None:
    with MediaCall(tmp_path, caller, callee, media={"workers": workers}) as call:
        up, down = _both_ways(call, caller[0], callee[0])
        call.finish()
    assert not [r for r in call.b.received if r.pt != callee[0]]  # the callee only ever gets its codec
    assert not [r for r in call.a.received if r.pt != caller[0]]
    got_b, got_a = call.b.audio(callee[0]), call.a.audio(caller[0])
    assert len(got_b) >= 0.9 * len(up) and len(got_a) >= 0.9 * len(down)
    assert best_correlation(up, got_b) > 0.98, "caller -> callee audio does not match"
    assert best_correlation(down, got_a) > 0.98, "callee -> caller audio does not match"


def test_bad_packets_and_strangers_are_dropped_and_counted(tmp_path: Path) -> None:
    with MediaCall(tmp_path, (0, "PCMU"), (0, "PCMU"), hold_ms=2500) as call:
        stranger = RtpPeer()
        good = np.full(160, 0xFF, dtype=np.uint8).tobytes()
        call.a.send_raw(call.a_target, b"\x80\x00\x00\x01\x00\x00\x00\xa0\x00\x00\x12\x34" + good)  # latches
        for bad in (b"\x40" + b"\x00" * 30, b"\x80\x00\x00",
                    b"\x80\x12\x00\x02\x00\x00\x01\x40\x00\x00\x12\x34" + good):
            call.a.send_raw(call.a_target, bad)  # version 1, truncated, payload type 18 not negotiated
        for _ in range(5):
            stranger.send_raw(call.a_target, b"\x80\x00\x00\x09\x00\x00\x05\xa0\x00\x00\x99\x99" + good)
        call.a.send_raw(call.a_target, b"\x80\x00\x00\x02\x00\x00\x01\x40\x00\x00\x12\x34" + good)
        call.finish()
        stranger.close()
    line = [ln for ln in call.proc.log().splitlines() if " end status=" in ln][0]
    stats = dict(re.findall(r"(\w+)=(\d+)", line.split(" end ", 1)[1]))
    assert int(stats["a_dropped"]) == 3 and int(stats["a_strangers"]) == 5 and int(stats["a_packets_received"]) == 3
    assert len(call.b.received) == 2  # only the two good packets went on


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
def test_rtp_timeout_ends_the_call_with_a_reason(tmp_path: Path, workers: int) -> None:
    uas_port = free_port()
    with sipp_background(["-sf", str(SCENARIOS / "uas_rtp.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                          "-inf", str(_csv(tmp_path / "b.csv", 9, 0, "PCMU")), "-trace_msg",
                          "-message_file", str(tmp_path / "uas_msg.log")], tmp_path):
        proc, port = _start_with_media(tmp_path, uas_port, {**MEDIA, "rtp_timeout_s": 2, "workers": workers})
        try:
            res = sipp(["-sf", str(SCENARIOS / "uac_remote_bye.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                        "-p", str(free_port()), "-m", "1", "-trace_msg", "-message_file",
                        str(tmp_path / "uac_msg.log")], tmp_path, timeout=30)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
        finally:
            proc.stop()
    assert "cause=rtp_timeout" in proc.log()
    uac = (tmp_path / "uac_msg.log").read_text()
    bye = uac[uac.index("BYE sip:"):]
    assert re.search(r'^Reason: SIP;cause=408;text="RTP timeout"', bye, re.M)
    assert "BYE sip:" in (tmp_path / "uas_msg.log").read_text()


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
def test_rfc4733_digits_reported_once_each(tmp_path: Path, workers: int) -> None:
    uas_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path):
        proc, port = _start_with_media(tmp_path, uas_port, {**MEDIA, "workers": workers})
        try:
            res = sipp(["-sf", str(SCENARIOS / "uac_dtmf.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                        "-p", str(free_port()), "-m", "1", "-mp", str(free_port())], tmp_path, timeout=60)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
        finally:
            proc.stop()
    digits = re.findall(r"dtmf leg=a digit=(\S) source=rfc4733", proc.log())
    assert digits == list("0123456789*#")


def test_port_exhaustion_gets_503(tmp_path: Path) -> None:
    """Two port pairs = one call; a second concurrent call is refused with 503, the first completes."""
    with MediaCall(tmp_path, (0, "PCMU"), (0, "PCMU"), hold_ms=2500,
                   media={"port_min": 31200, "port_max": 31204}) as call:
        scenario = tmp_path / "uac503.xml"
        scenario.write_text((SCENARIOS / "uac_expect_status.xml").read_text()
                            .replace('response="486"', 'response="503"'))
        res = sipp(["-sf", str(scenario), f"127.0.0.1:{call.port}", "-i", "127.0.0.1", "-p", str(free_port()),
                    "-m", "1"], tmp_path)
        assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
        call.finish()
    assert "end status=200" in call.proc.log()


def _plain_call(tmp: Path, uas: list[str], uac: list[str], media: dict | None = None, calls: int = 2) -> str:
    """Run SIPp callee + caller scenarios through a media-anchoring B2BUA; return the B2BUA log."""
    uas_port = free_port()
    with sipp_background([*uas, "-i", "127.0.0.1", "-p", str(uas_port), "-trace_msg",
                          "-message_file", str(tmp / "uas_msg.log")], tmp):
        proc, port = _start_with_media(tmp, uas_port, {**MEDIA, **(media or {})})
        try:
            res = sipp([*uac, f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(calls),
                        "-r", "10", "-trace_err", "-trace_msg", "-message_file", str(tmp / "uac_msg.log")],
                       tmp, timeout=60)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-3000:]
        finally:
            proc.stop()
    return proc.log()


@pytest.mark.parametrize("callee", ["uas_indialog.xml", "uas_indialog_sendrecv.xml"])
def test_hold_offer_is_never_answered_sendrecv(tmp_path: Path, callee: str) -> None:
    """INFO, a sendonly re-INVITE (hold) and UPDATE with media anchored; the caller checks that its
    hold offer is answered recvonly even when the callee wrongly answers sendrecv."""
    log = _plain_call(tmp_path, ["-sf", str(SCENARIOS / callee)], ["-sf", str(SCENARIOS / "uac_indialog.xml")])
    assert log.count("end status=200 cause=normal") == 2
    uas = (tmp_path / "uas_msg.log").read_text()
    held = [b for b in re.split(r"-{20,}", uas) if "INVITE sip:" in b and "a=sendonly" in b]
    assert held, "the callee never saw the hold offer"
    assert all(re.search(r"m=audio (3[01]\d\d\d) ", b) for b in held)  # our port in the relayed offer


def test_late_offer(tmp_path: Path) -> None:
    a, b = RtpPeer(), RtpPeer()
    try:
        log = _plain_call(tmp_path, ["-sf", str(SCENARIOS / "uas_late_offer.xml"), "-inf",
                                     str(_csv(tmp_path / "b.csv", b.port, 8, "PCMA"))],
                          ["-sf", str(SCENARIOS / "uac_late_offer.xml"), "-d", "200", "-inf",
                           str(_csv(tmp_path / "a.csv", a.port, 0, "PCMU"))], calls=1)
    finally:
        a.close(), b.close()
    assert "end status=200 cause=normal" in log
    uac = (tmp_path / "uac_msg.log").read_text()
    assert re.search(r"^INVITE sip:.*?Content-Length:\s*0", uac, re.S | re.M)  # the INVITE had no SDP
    assert f"m=audio {b.port} " not in uac  # the callee's offer reached the caller with our port only


def test_cancel_during_early_media(tmp_path: Path) -> None:
    log = _plain_call(tmp_path, ["-sf", str(SCENARIOS / "uas_early_media_cancel.xml")],
                      ["-sf", str(SCENARIOS / "uac_early_media_cancel.xml")])
    assert log.count("status=487 cause=cancelled") == 2


def test_malformed_sdp_is_refused_not_crashed(tmp_path: Path) -> None:
    import socket as so

    uas_port = free_port()
    proc, port = _start_with_media(tmp_path, uas_port, MEDIA)
    try:
        sock = so.socket(so.AF_INET, so.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        lp = sock.getsockname()[1]
        answers = []
        head = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
        for n, body in enumerate([b"v=1\r\no=x\r\n", head + b"m=audio 9 RTP/AVP 0\r\n",
                                  head + b"c=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\n",
                                  head + b"c=IN IP4 127.0.0.1\r\nm=audio x RTP/AVP 0\r\n"]):
            msg = (f"INVITE sip:1@127.0.0.1:{port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKsdp{n}\r\n"
                   f"From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:1@127.0.0.1>\r\nCall-ID: sdp{n}@t\r\n"
                   f"CSeq: 1 INVITE\r\n"
                   f"Contact: <sip:a@127.0.0.1:{lp}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            sock.sendto(msg, ("127.0.0.1", port))
            sock.settimeout(3)
            while True:
                data, _ = sock.recvfrom(65535)
                code = int(data[8:11])
                if code >= 200:
                    answers.append((code, re.search(rb"^Warning: (.*)$|^SIP/2.0 \d+ (.*)$", data, re.M)))
                    break
        assert [c for c, _ in answers] == [400, 400, 488, 400]
        assert proc.alive()
    finally:
        proc.stop()


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
def test_cdr_row_written(tmp_path: Path, workers: int) -> None:
    """Every call leaves a CDR in the SQLite database with both legs' codec and packet counts, exact
    also with worker processes (whose last once-a-second report is amended by the final figures):
    audio flows until just before the BYE."""
    from b2bua.storage.cdr import CdrStore

    with MediaCall(tmp_path, (0, "PCMU"), (8, "PCMA"), hold_ms=2300, media={"workers": workers}) as call:
        _both_ways(call, 0, 8, seconds=2.0)
        call.finish()
        call.proc.stop()
    rows = CdrStore(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}").rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == 200 and row["end_cause"] == "normal" and row["ended_by"] == "a"
    assert row["a_codec"] == 0 and row["b_codec"] == 8
    assert row["a_packets_received"] >= 40 and row["b_packets_received"] >= 40
    assert row["a_packets_sent"] >= 40 and row["b_packets_sent"] >= 40
    # exactly what the peers saw (loopback loses nothing)
    assert row["a_packets_received"] == len([r for r in call.b.received if r.pt == 8])
    assert row["b_packets_received"] == len([r for r in call.a.received if r.pt == 0])
    assert row["b_packets_sent"] == len([r for r in call.b.received if r.pt == 8])
    assert 1.5 < row["duration"] < 10.0 and row["start"] <= row["answer"] <= row["end"]
    assert row["to_uri"].startswith("sip:service@")


def test_session_timer_422_refresh_and_expiry(tmp_path: Path) -> None:
    """RFC 4028 with real SIPp peers and lab intervals (Min-SE 2 s; the caller asks 4 s, we ask the
    callee 6 s so our one refresh of its leg comes at 3 s): 422 with Min-SE,
    a caller refresh answered by us, our re-INVITE refresh of the callee leg, expiry -> BYE + Reason."""
    uas_port = free_port()
    with sipp_background(["-sf", str(SCENARIOS / "uas_session_timer.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                          "-trace_msg", "-message_file", str(tmp_path / "uas_msg.log")], tmp_path):
        cfg = write_config(tmp_path / "config", routing={"routes": [{"name": "lab", "prefix": "",
                                                                     "targets": [f"sip:127.0.0.1:{uas_port}"]}]},
                           sip={"session_timer": {"enabled": True, "session_expires_s": 6, "min_se_s": 2}})
        data = yaml.safe_load(cfg.read_text())
        data["media"].update(MEDIA)
        cfg.write_text(yaml.safe_dump(data))
        port = free_port()
        proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
        try:
            res = sipp(["-sf", str(SCENARIOS / "uac_session_timer.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                        "-p", str(free_port()), "-m", "1", "-trace_err"], tmp_path, timeout=30)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-3000:] + "".join(
                p.read_text() for p in tmp_path.glob("*errors.log"))
        finally:
            proc.stop()
    assert "cause=session_expired" in proc.log()
    uas = (tmp_path / "uas_msg.log").read_text()
    assert uas.count("INVITE sip:") >= 2  # the initial INVITE and our refresh
    assert re.search(r'^Reason: SIP;cause=408;text="Session timer expired"', uas, re.M)


def test_prack_on_both_legs(tmp_path: Path) -> None:
    log = _plain_call(tmp_path, ["-sf", str(SCENARIOS / "uas_prack.xml")],
                      ["-sf", str(SCENARIOS / "uac_prack.xml")], calls=2)
    assert log.count("end status=200 cause=normal by=a") == 2
    uas = (tmp_path / "uas_msg.log").read_text()
    assert re.search(r"^PRACK sip:", uas, re.M) and re.search(r"^RAck: 1 \d+ INVITE", uas, re.M)
    uac = (tmp_path / "uac_msg.log").read_text()
    assert re.search(r"^RSeq: 1", uac, re.M)


def test_sipp_streams_a_recording_and_the_callee_echoes_it(tmp_path: Path) -> None:
    """SIPp's own media: the caller plays g711a.pcap (PCMA), the stock callee (PCMU only) echoes
    it with -rtp_echo; the audio crosses our ports both ways, transcoded each way."""
    uas_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-rtp_echo", "-mp", str(free_port())],
                         tmp_path):
        proc, port = _start_with_media(tmp_path, uas_port, MEDIA)
        try:
            res = sipp(["-sf", str(SCENARIOS / "uac_pcap_echo.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                        "-p", str(free_port()), "-m", "1", "-mp", str(free_port())], tmp_path, timeout=60)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
        finally:
            proc.stop()
    line = [ln for ln in proc.log().splitlines() if " end status=" in ln][0]
    stats = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.split(" end ", 1)[1])}
    assert stats["a_packets_received"] > 100, line  # the recording reached leg a
    assert stats["b_packets_sent"] > 100, line  # ... went on to the callee (transcoded to PCMU)
    assert stats["b_packets_received"] > 100, line  # the echo came back on leg b
    assert stats["a_packets_sent"] > 100, line  # ... and went back to the caller
