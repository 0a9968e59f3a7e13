"""Run by tests/test_netem.py in the "lab" network namespace, the B2BUA in another, the two joined by
tests/lossy_link.py (5 % loss, 50 ms +- 50 ms delay each way); not collected on its own (no test_ prefix).
Calls complete through SIP retransmission, and the recording holds every packet that reached the B2BUA."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import test_e2e_protection as lab
import yaml
from harness import SCENARIOS, SIPP, B2BUAProcess, free_port, sipp, sipp_background, write_config
from rtp_peer import RtpPeer, sdp_port
from test_e2e_protection import _read_stereo, _recordings, _wait_for, finish

from b2bua.storage.cdr import CdrStore

B2BUA, CITIZEN, STAFF = "10.77.0.1", "10.77.0.2", "10.77.0.3"
PORT = 5060  # the B2BUA's namespace is its own: every port is free there
REPORT = Path(os.environ.get("LOSSY_REPORT", "lossy-report.json"))


def _report(key: str, value: object) -> None:
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data[key] = value
    REPORT.write_text(json.dumps(data, indent=1))


def _start(tmp: Path, uas_port: int, policy: dict) -> B2BUAProcess:
    # the protection tests' routing, on this namespace's addresses
    cfg = write_config(tmp / "config", routing=lab.routing(uas_port, policy, citizen=CITIZEN, staff=STAFF))
    data = yaml.safe_load(cfg.read_text())
    data["media"] = {**data.get("media", {}), **lab.MEDIA, "address": B2BUA}
    data["metrics"] = {"address": None}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    os.environ["B2BUA_FAKE_NOW"] = lab.OPEN
    try:
        return B2BUAProcess(cfg, [f"udp:{B2BUA}:{PORT}"], tmp / "b2bua.log").start()
    finally:
        del os.environ["B2BUA_FAKE_NOW"]


def test_calls_complete_through_loss_and_jitter(tmp_path: Path) -> None:
    uas_port, calls = free_port(STAFF), 30
    with sipp_background(["-sn", "uas", "-i", STAFF, "-p", str(uas_port)], tmp_path):
        proc = _start(tmp_path, uas_port, {"recording": "off", "ringback": {}})
        try:
            # the built-in uac, but matching responses by transaction (SIPp's own matches by Call-ID alone, so a
            # retransmitted 2xx after a lost ACK passed for the 200 of a lost BYE: the call "succeeded" for SIPp
            # while the B2BUA never heard the BYE and ended it on RTP timeout, 1 call in 30 in one CI run)
            res = sipp(["-sf", str(SCENARIOS / "uac_lossy.xml"), f"{B2BUA}:{PORT}", "-s", lab.DID, "-i", CITIZEN,
                        "-p", str(free_port(CITIZEN)), "-m", str(calls), "-r", "5", "-l", "10", "-pause_msg_ign"],
                       tmp_path, timeout=600)
            proc.settle(60)
        finally:
            proc.stop()
    assert res.returncode == 0, res.stdout.decode(errors="replace")[-3000:]
    completed = proc.log().count("end status=200 cause=normal")
    _report("calls", {"placed": calls, "completed": completed})
    assert completed == calls


def test_the_recording_holds_every_packet_that_arrived(tmp_path: Path) -> None:
    a, b = RtpPeer(host=CITIZEN), RtpPeer(host=STAFF)
    uas_port = free_port(STAFF)
    rng = np.random.default_rng(7)
    up = (rng.standard_normal(5 * 8000) * 4000).astype(np.int16)  # every 20 ms of it loud: a frame is a packet
    down = (rng.standard_normal(5 * 8000) * 4000).astype(np.int16)
    (tmp_path / "a.csv").write_text(f"SEQUENTIAL\n{a.port};0;PCMU;\n")
    (tmp_path / "b.csv").write_text(f"SEQUENTIAL\n{b.port};0;PCMU;\n")
    staff = sipp_background(["-sf", str(SCENARIOS / "uas_rtp_ring.xml"), "-i", STAFF, "-p", str(uas_port),
                             "-d", "500", "-inf", str(tmp_path / "b.csv"), "-trace_msg", "-message_file",
                             str(tmp_path / "uas_msg.log")], tmp_path)
    try:
        with staff:
            proc = _start(tmp_path, uas_port, {"recording": "full", "ringback": {}})
            try:
                uac = subprocess.Popen(
                    [SIPP, "-sf", str(SCENARIOS / "uac_rtp_early.xml"), f"{B2BUA}:{PORT}", "-s", lab.DID,
                     "-i", CITIZEN, "-p", str(free_port(CITIZEN)), "-m", "1", "-d", "7000", "-nostdin",
                     "-inf", str(tmp_path / "a.csv"), "-trace_msg", "-message_file", str(tmp_path / "uac_msg.log")],
                    cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                b_target = (B2BUA, sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=60))
                a_target = (B2BUA, sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=60))
                talk = [threading.Thread(target=a.send_audio, args=(a_target, up, 0)),
                        threading.Thread(target=b.send_audio, args=(b_target, down, 0))]
                for t in talk:
                    t.start()
                for t in talk:
                    t.join()
                finish(uac, timeout=120)
                proc.settle(60)
                _wait_for(lambda: any(r["status"] == "complete" for r in _recordings(tmp_path)), timeout=60)
                store = CdrStore(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}")
                try:
                    _wait_for(lambda: bool(store.rows()), timeout=30)
                    (cdr,) = store.rows()
                finally:
                    store.engine.dispose()
            finally:
                proc.stop()
    finally:
        a.close()
        b.close()
    (rec,) = _recordings(tmp_path)
    left, _ = _read_stereo(Path(rec["path"]))
    frames = left[: len(left) // 160 * 160].reshape(-1, 160).astype(np.float64)
    loud = int((np.sqrt((frames ** 2).mean(axis=1)) > 1000).sum())  # the citizen's 20 ms frames in the file
    sent, arrived = len(up) // 160, cdr["a_packets_received"]
    _report("recording", {"citizen_packets_sent": sent, "reached_b2bua": arrived, "frames_in_recording": loud})
    assert 0.8 * sent <= arrived < sent  # the link lost some (5 %) ...
    assert abs(loud - arrived) <= 2  # ... and the recording lost none of what arrived
