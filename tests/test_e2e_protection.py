"""Staff protection end to end: SIPp citizen (carrier trunk, 127.0.0.2) and staff phone (PBX trunk,
127.0.0.3), real RTP through the B2BUA's engine, the department's clock frozen with B2BUA_FAKE_NOW.

Audio is checked, not only signalling: what the caller hears during early media correlates with
the prompt file, the recording's channels with what each side sent, the announcement with both
directions before the BYE.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness import ROOT, SCENARIOS, SIPP, B2BUAProcess, free_port, sipp_background, write_config
from rtp_peer import (
    RtpPeer,
    best_correlation,
    decode_in_order,
    heard_in_order,
    read_recording,
    sdp_port,
    speech_like,
)

from b2bua.prompts import PromptSource
from b2bua.storage.cdr import CdrStore
from b2bua.storage.recordings import RecordingIndex, sha256_file

pytestmark = pytest.mark.usefixtures("sipp_installed")

CITIZEN, STAFF = "127.0.0.2", "127.0.0.3"
DID = "0221332200"
MEDIA = {"port_min": 29400, "port_max": 29600}
# Seoul times on Wednesday 2 December 2026 (and Christmas)
OPEN = "2026-12-02T10:00:00+09:00"
LUNCH = "2026-12-02T12:30:00+09:00"
AFTER_HOURS = "2026-12-02T20:00:00+09:00"
HOLIDAY = "2026-12-25T10:00:00+09:00"
PROMPTS = PromptSource(ROOT / "config")


def routing(uas_port: int, policy: dict, *, extra_departments: list[dict] | None = None,
            citizen: str = CITIZEN, staff: str = STAFF) -> dict:
    return {
        "trunks": [
            {"name": "carrier", "kind": "carrier", "addresses": [f"{citizen}/32"],
             "gateways": [{"uri": f"sip:{citizen}:5999"}]},
            {"name": "pbx", "kind": "pbx", "addresses": [f"{staff}/32"],
             "gateways": [{"uri": f"sip:{staff}:{uas_port}"}], "codecs": ["PCMU", "PCMA"]},
        ],
        "routes": [{"name": "out", "prefix": "", "trunks": ["carrier"]}],
        "schedules": [{"name": "city-hall", "hours": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                       "lunch": "12:00-13:00", "holidays": True}],
        "departments": [{"name": "교통정책과", "display_name": "서울시 교통정책과", "numbers": ["02-2133-2200"],
                         "trunk": "pbx", "extension": "2200", "schedule": "city-hall", "policy": policy},
                        *(extra_departments or [])],
        "devices": [],
    }


def start(tmp: Path, uas_port: int, policy: dict, *, now: str = OPEN, media: dict | None = None,
          extra_departments: list[dict] | None = None, process: dict[str, dict] | None = None,
          files: dict[str, str] | None = None) -> tuple[B2BUAProcess, int]:
    """The B2BUA on this module's routing; ``process`` sections are laid over b2bua.yaml's, ``files`` are
    written beside it (a lexicon, ...)."""
    port = free_port()
    cfg = write_config(tmp / "config", routing=routing(uas_port, policy, extra_departments=extra_departments))
    data = yaml.safe_load(cfg.read_text())
    data["media"] = {**data.get("media", {}), **MEDIA, **(media or {})}
    for section, values in (process or {}).items():
        data[section] = {**data.get(section, {}), **values}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    for name, text in (files or {}).items():
        (cfg.parent / name).write_text(text, encoding="utf-8")
    os.environ["B2BUA_FAKE_NOW"] = now
    try:
        proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp / "b2bua.log").start()
    finally:
        del os.environ["B2BUA_FAKE_NOW"]
    return proc, port


def _csv(path: Path, port: int) -> Path:
    path.write_text(f"SEQUENTIAL\n{port};0;PCMU;\n")
    return path


#: SIPp callers of the running test, killed when it ends (a failed assertion must not leave one behind)
_CALLERS: list[subprocess.Popen] = []


def citizen(tmp: Path, port: int, peer: RtpPeer, scenario: str, hold_ms: int = 2000) -> subprocess.Popen:
    return _caller(subprocess.Popen(
        [SIPP, "-sf", str(SCENARIOS / scenario), f"127.0.0.1:{port}", "-s", DID, "-i", CITIZEN,
         "-p", str(free_port(CITIZEN)), "-m", "1", "-d", str(hold_ms), "-nostdin",
         "-inf", str(_csv(tmp / "a.csv", peer.port)), "-trace_msg", "-message_file", str(tmp / "uac_msg.log")],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))


def _caller(proc: subprocess.Popen) -> subprocess.Popen:
    _CALLERS.append(proc)
    return proc


def staff_phone(tmp: Path, uas_port: int, peer: RtpPeer, ring_ms: int = 500):  # noqa: ANN201
    return sipp_background(["-sf", str(SCENARIOS / "uas_rtp_ring.xml"), "-i", STAFF, "-p", str(uas_port),
                            "-d", str(ring_ms), "-inf", str(_csv(tmp / "b.csv", peer.port)),
                            "-trace_msg", "-message_file", str(tmp / "uas_msg.log")], tmp)


def finish(uac: subprocess.Popen, timeout: float = 60) -> str:
    out, _ = uac.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert uac.returncode == 0, text[-3000:]
    return text


@pytest.fixture
def peers() -> Iterator[tuple[RtpPeer, RtpPeer]]:
    a, b = RtpPeer(host=CITIZEN), RtpPeer(host=STAFF)
    yield a, b
    a.close()
    b.close()
    while _CALLERS:
        proc = _CALLERS.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _early_audio(peer: RtpPeer, before: float) -> np.ndarray:
    return decode_in_order([r for r in peer.received if r.pt == 0 and r.at < before], 0)


def _continuous(peer: RtpPeer) -> None:
    """One SSRC, sequence numbers without a gap: prompts and relayed audio are one stream."""
    audio = [r for r in peer.received if r.pt == 0]
    assert len({r.ssrc for r in audio}) == 1
    seqs = [r.seq for r in audio]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))


# -- situational ringback --------------------------------------------------------------------------
@pytest.mark.parametrize("now,prompt", [(OPEN, "city_notice"), (LUNCH, "lunch_break")], ids=["open", "lunch"])
def test_ringback_prompt_for_the_situation_then_the_staff_member_without_a_gap(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer], now: str, prompt: str) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "off", "ringback": {"default": "city_notice", "lunch": "lunch_break"}}
    with staff_phone(tmp_path, uas_port, b, ring_ms=4000):
        proc, port = start(tmp_path, uas_port, policy, now=now)
        try:
            uac = citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=2500)
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:"))
            sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=15)
            answered = time.monotonic()
            talk = speech_like(1.5, seed=3)
            b.send_audio(b_target, talk, 0)
            finish(uac)
        finally:
            proc.stop()
    early = _early_audio(a, answered)
    assert len(early) >= 3 * 8000  # about 4 s of ringing
    samples = PROMPTS.get(prompt)
    assert best_correlation(samples[:3 * 8000], early) > 0.9
    other = "lunch_break" if prompt == "city_notice" else "city_notice"
    assert best_correlation(PROMPTS.get(other)[:3 * 8000], early) < 0.5
    assert best_correlation(talk, a.audio(0)) > 0.95  # then the staff member
    _continuous(a)
    assert "183 Session Progress" in (tmp_path / "uac_msg.log").read_text()
    staff_invite = (tmp_path / "uas_msg.log").read_text()
    for word in ("lunch", "after_hours", "situation"):  # the situation is not revealed in headers
        assert word not in staff_invite.split("\r\n\r\n")[0].lower()


def test_after_hours_plays_the_prompt_then_releases_without_alerting_staff(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "off", "ringback": {"default": "city_notice", "after_hours": "after_hours"},
              "closed": {"after_hours": {"release_status": 480}}}
    with staff_phone(tmp_path, uas_port, b):
        proc, port = start(tmp_path, uas_port, policy, now=AFTER_HOURS)
        try:
            uac = citizen(tmp_path, port, a, "uac_rtp_early_released.xml")
            finish(uac)
        finally:
            proc.stop()
    heard = a.audio(0)
    samples = PROMPTS.get("after_hours")
    assert len(heard) >= 0.9 * len(samples)  # the whole prompt before the 480
    assert best_correlation(samples, heard) > 0.9
    assert not (tmp_path / "uas_msg.log").exists() or "INVITE" not in (tmp_path / "uas_msg.log").read_text()
    assert "cause=closed_after_hours" in proc.log()


def test_holiday_release_status_from_config(tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "off", "ringback": {"default": "city_notice", "holiday": "holiday"},
              "closed": {"holiday": {"release_status": 486}}}
    scenario = tmp_path / "released486.xml"
    scenario.write_text((SCENARIOS / "uac_rtp_early_released.xml").read_text().replace('response="480"',
                                                                                    'response="486"'))
    with staff_phone(tmp_path, uas_port, b):
        proc, port = start(tmp_path, uas_port, policy, now=HOLIDAY)
        try:
            finish(citizen(tmp_path, port, a, str(scenario)))
        finally:
            proc.stop()
    assert best_correlation(PROMPTS.get("holiday"), a.audio(0)) > 0.9


# -- recording notice and full recording ----------------------------------------------------------------
def _recordings(tmp: Path) -> list[dict]:
    store = CdrStore(f"sqlite:///{tmp / 'var' / 'b2bua.sqlite3'}")
    try:
        index = RecordingIndex(store.engine, tmp / "var" / "recordings")
        return index.rows()
    finally:
        store.engine.dispose()


def _read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_recording(path, "pcm_mulaw")  # SIPp's callers send PCMU: stored as they came
    return data[:, 0].copy(), data[:, 1].copy()


def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met")


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
def test_full_recording_notice_before_alerting_and_a_stereo_file_of_both_legs(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer], workers: int) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "full", "ringback": {"default": "city_notice"}}
    up = speech_like(2.0, seed=11)
    down = (np.random.default_rng(12).standard_normal(16000) * 4000).astype(np.int16)  # unlike the caller's
    with staff_phone(tmp_path, uas_port, b, ring_ms=1000):
        proc, port = start(tmp_path, uas_port, policy, media={"workers": workers})
        try:
            uac = citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=3000)
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=20))
            alerted = time.monotonic()
            a_target = ("127.0.0.1", sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=15))
            t1 = threading.Thread(target=a.send_audio, args=(a_target, up, 0))
            t2 = threading.Thread(target=b.send_audio, args=(b_target, down, 0))
            t1.start(), t2.start()
            t1.join(), t2.join()
            finish(uac)
            proc.settle()
            _wait_for(lambda: any(r["status"] == "complete" for r in _recordings(tmp_path)))
        finally:
            proc.stop()
    notice = PROMPTS.get("recording_notice")
    # the notice reached the caller before the staff phone got its INVITE
    before = _early_audio(a, alerted)
    assert len(before) >= 0.8 * len(notice)
    assert best_correlation(notice, before) > 0.9
    rows = _recordings(tmp_path)
    assert len(rows) == 1
    row = rows[0]
    path = Path(row["path"])
    assert row["reason"] == "full" and row["status"] == "complete" and row["department"] == "교통정책과"
    assert row["direction"] == "inbound" and row["end"] > row["start"]
    assert row["size"] == path.stat().st_size and row["sha256"] == sha256_file(path)
    left, right = _read_stereo(path)
    assert abs(row["duration"] - len(left) / 8000) < 0.05
    # the caller on the left, the staff member on the right: every 200 ms of each, intact and in order
    assert heard_in_order(up, left) >= 0.95 and heard_in_order(down, right) >= 0.95
    assert best_correlation(notice, right[: len(notice) + 8000]) > 0.9  # the notice itself is evidence
    assert heard_in_order(down, left) < 0.2 and heard_in_order(up, right) < 0.2


def test_kill_9_mid_call_leaves_a_playable_file_repaired_and_indexed_at_the_next_start(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "full", "recording_notice": "construction", "ringback": {"default": "city_notice"}}
    with staff_phone(tmp_path, uas_port, b, ring_ms=200):
        proc, port = start(tmp_path, uas_port, policy)
        uac = citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=30000)
        try:
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=20))
            talk = speech_like(3.0, seed=5)
            b.send_audio(b_target, talk, 0)
            files = list((tmp_path / "var" / "recordings").rglob("*.wav"))
            assert len(files) == 1
            started = next(r for r in _recordings(tmp_path))["start"]
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGKILL)
            killed = time.time()
            proc.proc.wait(5)
        finally:
            uac.kill()
            uac.wait()
        # playable as it is (8 kHz stereo, asserted by the reader): the header was rewritten within the last second
        lasted = len(read_recording(files[0], "pcm_mulaw")) / 8000
        assert lasted >= (killed - started) - 1.5, (lasted, killed - started)
        assert _recordings(tmp_path)[0]["status"] == "recording"
        proc2 = B2BUAProcess(proc.config, proc.listen, tmp_path / "b2bua2.log").start()
        proc2.stop()
    rows = _recordings(tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == "repaired"
    assert rows[0]["sha256"] == sha256_file(files[0]) and rows[0]["size"] == files[0].stat().st_size
    assert "repaired and indexed 1 recordings" in proc2.log()
    _, right = _read_stereo(files[0])
    assert best_correlation(talk, right) > 0.9
    # the call the crash cut short has its CDR, ending when the process was last seen alive
    store = CdrStore(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}")
    (cdr,) = store.rows()
    store.engine.dispose()
    assert cdr["end_cause"] == "process_restart" and cdr["status"] == 200 and cdr["ended_by"] == "b2bua"
    assert killed - 2.5 <= cdr["end"] <= killed and cdr["answer"] is not None
    assert cdr["duration"] == pytest.approx(cdr["end"] - cdr["answer"]) and cdr["b_call_id"]


def test_unwritable_recordings_directory_keeps_the_call_and_the_next_call_records(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    blocker = tmp_path / "var" / "recordings"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # mkdir below it fails even for root
    policy = {"recording": "full", "recording_notice": "construction", "ringback": {}}
    with staff_phone(tmp_path, uas_port, b, ring_ms=200):
        proc, port = start(tmp_path, uas_port, policy)
        try:
            finish(citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=1000))
            proc.settle()
            _wait_for(lambda: any(r["status"] == "failed" for r in _recordings(tmp_path)))
            blocker.unlink()
            finish(citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=1000))
            proc.settle()
            _wait_for(lambda: any(r["status"] == "complete" for r in _recordings(tmp_path)))
        finally:
            proc.stop()
    log = proc.log()
    assert log.count("end status=200") == 2  # both calls went through
    assert "recording" in log and "failed" in log
    statuses = sorted(r["status"] for r in _recordings(tmp_path))
    assert statuses == ["complete", "failed"]


# -- on-demand recording with SIPp's DTMF pcaps ------------------------------------------------------
def test_on_demand_recording_started_and_stopped_by_the_staff_key(tmp_path: Path,
                                                                 peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, _ = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "on_demand", "recording_key": "*1", "ringback": {}}
    with sipp_background(["-sf", str(SCENARIOS / "uas_dtmf_record.xml"), "-i", STAFF, "-p", str(uas_port),
                          "-mp", str(free_port(STAFF)), "-d", "2000"], tmp_path):
        proc, port = start(tmp_path, uas_port, policy)
        try:
            uac = citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=6000)
            a_target = ("127.0.0.1", sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=15))
            a.send_audio(a_target, speech_like(4.0, seed=9), 0)
            finish(uac)
            proc.settle()
            _wait_for(lambda: any(r["status"] == "complete" for r in _recordings(tmp_path)))
        finally:
            proc.stop()
    log = proc.log()
    assert re.findall(r"dtmf leg=b digit=(\S)", log) == list("*1*1")
    rows = _recordings(tmp_path)
    assert len(rows) == 1
    row = rows[0]
    assert row["reason"] == "on_demand" and row["status"] == "complete"
    assert 1.5 < row["end"] - row["start"] < 6  # from the first *1 to the second
    assert not re.findall(r"dtmf leg=a", log)  # the keys never reached the caller ...
    assert not [r for r in a.received if r.pt == 101]  # ... not even as RFC 4733 packets


# -- key tones in the audio (no telephone-event on either side) --------------------------------------
def _without_telephone_event(scenario: str, tmp: Path) -> Path:
    """A copy of a SIPp scenario whose SDP offers or answers audio only (no RFC 4733)."""
    path = tmp / f"no_te_{scenario}"
    path.write_text((SCENARIOS / scenario).read_text().replace(" 101\n", "\n")
                    .replace("      a=rtpmap:101 telephone-event/8000\n", "").replace("      a=fmtp:101 0-15\n", ""))
    return path


def test_key_tones_are_heard_from_the_staff_member_and_not_looked_for_in_the_citizens_audio(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    staff_scenario = _without_telephone_event("uas_rtp_ring.xml", tmp_path)
    citizen_scenario = _without_telephone_event("uac_rtp_early.xml", tmp_path)
    assert "a=rtpmap:101" not in staff_scenario.read_text() + citizen_scenario.read_text()
    with sipp_background(["-sf", str(staff_scenario), "-i", STAFF, "-p", str(uas_port), "-d", "200",
                          "-inf", str(_csv(tmp_path / "b.csv", b.port)), "-trace_msg",
                          "-message_file", str(tmp_path / "uas_msg.log")], tmp_path):
        proc, port = start(tmp_path, uas_port, {"recording": "off", "ringback": {}})
        try:
            uac = citizen(tmp_path, port, a, str(citizen_scenario), hold_ms=5000)
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=20))
            a_target = ("127.0.0.1", sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=15))
            t = np.arange(160 * 6) / 8000
            key7 = (6000 * np.sin(2 * np.pi * 852 * t) + 6000 * np.sin(2 * np.pi * 1209 * t)).astype(np.int16)
            tones = np.concatenate([speech_like(0.3), key7, np.zeros(480, np.int16), speech_like(0.3)])
            a.send_audio(a_target, tones, 0)  # the citizen's keypad: in the audio, searched by nobody
            b.send_audio(b_target, tones, 0)  # the staff member's: a key for the B2BUA
            finish(uac)
        finally:
            proc.stop()
    log = proc.log()
    assert re.findall(r"dtmf leg=(\w) digit=(\S) source=(\w+)", log) == [("b", "7", "inband")]


# -- the long-call key -------------------------------------------------------------------------------
def test_long_call_key_before_the_limit_does_nothing_after_it_announces_and_hangs_up(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "off", "ringback": {}, "long_call": {"limit_min": 0.1, "key": "*9"}}  # 6 s
    with staff_phone(tmp_path, uas_port, b, ring_ms=200):
        proc, port = start(tmp_path, uas_port, policy)
        try:
            uac = citizen(tmp_path, port, a, "uac_rtp_early_remote_bye.xml")
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=20))
            a_target = ("127.0.0.1", sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=15))
            answered = time.monotonic()
            time.sleep(1.0)
            b.send_digits(b_target, "*9")  # too early: a tone to staff only
            a.send_digits(a_target, "*9")  # the caller's keys never count
            time.sleep(max(0.0, answered + 6.5 - time.monotonic()))
            early_bye = "BYE sip:" in (tmp_path / "uac_msg.log").read_text()
            pressed = time.monotonic()
            b.send_digits(b_target, "*9")
            finish(uac, timeout=40)
        finally:
            proc.stop()
    assert not early_bye
    announcement = PROMPTS.get("long_call_end")
    for peer in (a, b):
        assert best_correlation(announcement, _late_audio(peer, pressed)) > 0.8, peer
    refused = _late_audio(b, answered, until=answered + 3.0)
    heard_by_caller = _late_audio(a, answered, until=answered + 3.0)
    assert _energy_at(refused, 480) > 10 * max(_energy_at(heard_by_caller, 480), 1.0)
    bye = (tmp_path / "uac_msg.log").read_text().split("BYE sip:")[-1]
    assert re.search(r'^Reason: Q\.850;cause=16;text="Long call terminated by staff"', bye, re.M)
    store = CdrStore(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}")
    rows = store.rows()
    store.engine.dispose()
    assert rows[-1]["end_cause"] == "long_call_terminated" and rows[-1]["ended_by"] == "b2bua"


def _late_audio(peer: RtpPeer, after: float, until: float = float("inf")) -> np.ndarray:
    return decode_in_order([r for r in peer.received if r.pt == 0 and after <= r.at < until], 0)


def _energy_at(x: np.ndarray, freq: float) -> float:
    """Goertzel power of ``freq`` Hz over the whole signal."""
    if len(x) == 0:
        return 0.0
    n = np.arange(len(x))
    ref = np.exp(-2j * np.pi * freq * n / 8000)
    return float(abs(np.dot(x.astype(np.float64), ref)) / len(x))


def test_unknown_number_hears_the_configured_prompt_then_404(tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, _ = peers
    uas_port = free_port(STAFF)
    scenario = tmp_path / "released404.xml"
    scenario.write_text((SCENARIOS / "uac_rtp_early_released.xml").read_text().replace('response="480"',
                                                                                    'response="404"'))
    cfg_routing = routing(uas_port, {"recording": "off"})
    cfg_routing["unknown_number"] = {"status": 404, "prompt": "construction"}
    port = free_port()
    cfg = write_config(tmp_path / "config", routing=cfg_routing)
    data = yaml.safe_load(cfg.read_text())
    data["media"] = {**data.get("media", {}), **MEDIA}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
    try:
        uac = _caller(subprocess.Popen(
            [SIPP, "-sf", str(scenario), f"127.0.0.1:{port}", "-s", "0221339999", "-i", CITIZEN,
             "-p", str(free_port(CITIZEN)), "-m", "1", "-nostdin", "-inf", str(_csv(tmp_path / "a.csv", a.port))],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        finish(uac)
    finally:
        proc.stop()
    assert best_correlation(PROMPTS.get("construction"), a.audio(0)) > 0.9
    assert "cause=unknown_number" in proc.log()


def test_moved_office_plays_its_prompt_then_the_fallback_department_answers(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    policy = {"recording": "off", "ringback": {"default": "city_notice", "moved": "office_moved"},
              "closed": {"moved": {"release_status": 480, "fallback": "총무과"}}}
    cfg_routing = routing(uas_port, policy, extra_departments=[
        {"name": "총무과", "display_name": "서울시 총무과", "numbers": ["02-2133-5000"], "trunk": "pbx",
         "extension": "5000", "policy": {"recording": "off", "ringback": {}}}])
    cfg_routing["schedules"][0]["overrides"] = [{"from_date": "2026-12-01", "to_date": "2026-12-03",
                                                 "situation": "moved"}]
    port = free_port()
    cfg = write_config(tmp_path / "config", routing=cfg_routing)
    data = yaml.safe_load(cfg.read_text())
    data["media"] = {**data.get("media", {}), **MEDIA}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    with staff_phone(tmp_path, uas_port, b, ring_ms=300):
        os.environ["B2BUA_FAKE_NOW"] = OPEN
        try:
            proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
        finally:
            del os.environ["B2BUA_FAKE_NOW"]
        try:
            finish(citizen(tmp_path, port, a, "uac_rtp_early.xml", hold_ms=1000), timeout=60)
        finally:
            proc.stop()
    moved = PROMPTS.get("office_moved")
    assert best_correlation(moved, a.audio(0)) > 0.9  # the whole notice of the move first
    staff_log = (tmp_path / "uas_msg.log").read_text()
    assert re.search(r"^INVITE sip:5000@", staff_log, re.M)  # then 총무과's phone, not 2200's
    assert "INVITE sip:2200@" not in staff_log
    assert "end status=200" in proc.log()
