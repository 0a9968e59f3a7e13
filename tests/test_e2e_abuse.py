"""Abuse detection end to end: a SIPp citizen (carrier trunk, 127.0.0.2) calls a department with detection
on, a SIPp staff phone (PBX trunk, 127.0.0.3) answers, and the citizen's RTP carries real Korean speech
(Zeroth-Korean clips through G.711). The real embedded Whisper engine and the text classifier run in the
B2BUA's detection processes; the test's lexicon lists a word of two clips as an insult.

One call walks the whole policy: a clean sentence (nothing happens), the same sentence shouted (the cue is
kept, nothing else), the first insult (the warning, heard by both), the second (the termination prompt to
both, BYE on both legs with a Reason, CDR cause ``abuse_terminated``), with every event's row and clip.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from harness import ROOT, B2BUAProcess, free_port
from rtp_peer import RtpPeer, best_correlation, sdp_port
from sqlalchemy import create_engine
from test_detection_workers import _phone
from test_e2e_protection import (
    PROMPTS,
    STAFF,
    _late_audio,
    citizen,
    finish,
    peers,
    staff_phone,
    start,
)

from b2bua.storage.abuse import AbuseEvents
from b2bua.storage.cdr import CdrStore
from b2bua.storage.recordings import sha256_file

pytestmark = [pytest.mark.usefixtures("sipp_installed"),
              pytest.mark.slow]
__all__ = ["peers"]  # the fixture, used by name

CLEAN = "zeroth_104_003_0352.wav"  # 다른 지역에서는 그곳이 아무리 넓다 하더라도 ... (nothing abusive)
FIRST = "zeroth_104_003_0294.wav"  # 한 잔의 커피가 소비자에게 ... (커피: an insult in this test's lexicon)
SECOND = "zeroth_104_003_0280.wav"  # 또한 박 전 대통령 측은 ... (대통령: an insult too)


def _said(name: str, gain_db: float = 0.0) -> np.ndarray:
    """A clip as the phone sends it, then 1.5 s of silence (the end of the utterance)."""
    x = _phone(name).astype(np.float64) * 10 ** (gain_db / 20)
    return np.concatenate([np.clip(x, -32768, 32767).astype(np.int16), np.zeros(12000, np.int16)])


def _rms_dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean((x.astype(np.float64) / 32768) ** 2))))


def _start(tmp: Path, uas_port: int, metrics: int) -> tuple[B2BUAProcess, int]:
    policy = {"recording": "off", "ringback": {},
              "abuse": {"enabled": True, "end_after": 2, "cooldown_s": 2, "threshold": 0.6}}
    lexicon = (ROOT / "config" / "abuse_lexicon.yaml").read_text(encoding="utf-8")
    for word in ("커피", "대통령"):  # words of two clips, insults for this test
        lexicon = _with_entry_text(lexicon, "insult", word)
    # the speech model and the trained text model are shared by every test run on this machine
    detection = {"threads": 2, "model_dir": str(ROOT / "var" / "whisper-base"),
                 "model_cache": str(ROOT / "var" / "abuse-models")}
    return start(tmp, uas_port, policy, media={"rtp_timeout_s": 300},
                 process={"detection": detection, "metrics": {"address": f"127.0.0.1:{metrics}"}},
                 files={"abuse_lexicon.yaml": lexicon})


def _metric(port: int, name: str, label: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(rf'^{name}(?:_total)?{{[a-z]+="{re.escape(label)}"}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _metrics_reach(port: int, wanted: dict[tuple[str, str], float], timeout: float = 10.0) -> dict:
    """The metrics once each has reached its wanted value (the processes report once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        got = {key: _metric(port, *key) for key in wanted}
        if all(got[k] >= v for k, v in wanted.items()) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def _with_entry_text(text: str, category: str, word: str) -> str:
    data = yaml.safe_load(text)
    data["categories"][category]["entries"].append(word)
    return yaml.safe_dump(data, allow_unicode=True)


def _events(tmp: Path) -> list[dict]:
    engine = create_engine(f"sqlite:///{tmp / 'var' / 'b2bua.sqlite3'}")
    try:
        return AbuseEvents(engine, tmp / "var" / "recordings").events()
    finally:
        engine.dispose()


def _wait_for_events(tmp: Path, n: int, proc: B2BUAProcess, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _events(tmp)
        if len(rows) >= n:
            return rows
        assert proc.alive(), proc.log()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{len(_events(tmp))} of {n} events after {timeout:.0f} s:\n{proc.log()[-4000:]}")


def test_a_citizen_is_warned_then_cut_off_and_every_event_is_kept(tmp_path: Path,
                                                                   peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    uas_port = free_port(STAFF)
    clean, shouted = _said(CLEAN), _said(CLEAN, gain_db=20.0)
    assert _rms_dbfs(shouted[:-12000]) > -8.0 > _rms_dbfs(clean[:-12000]) + 10  # loud against the own voice
    with staff_phone(tmp_path, uas_port, b, ring_ms=200):
        metrics = free_port()
        proc, port = _start(tmp_path, uas_port, metrics)
        try:
            uac = citizen(tmp_path, port, a, "uac_rtp_early_remote_bye.xml")
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=20))
            a_target = ("127.0.0.1", sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=15))
            b.send_audio(b_target, np.zeros(1600, np.int16), 0)  # the staff phone's first words: latching
            a.send_audio(a_target, clean, 0)
            a.send_audio(a_target, shouted, 0)
            # the first call starts the detection processes: the speech model loads, the text model
            # may train (its cache is shared, so only once per machine)
            rows = _wait_for_events(tmp_path, 1, proc, timeout=300)
            a.send_audio(a_target, _said(FIRST), 0)
            rows = _wait_for_events(tmp_path, 2, proc, timeout=120)
            warned = time.monotonic()
            time.sleep(6.0)  # the warning plays
            a.send_audio(a_target, _said(SECOND), 0)
            ended = time.monotonic()
            finish(uac, timeout=120)
            rows = _wait_for_events(tmp_path, 3, proc, timeout=30)
            wanted = {("b2bua_abuse", "monitored"): 1, ("b2bua_abuse", "warned"): 1, ("b2bua_abuse", "terminated"): 1,
                      ("b2bua_abuse", "shouting"): 1, ("b2bua_detection", "utterances"): 4,
                      ("b2bua_detection", "detections"): 4, ("b2bua_abuse_evidence", "written"): 3}
            seen = _metrics_reach(metrics, wanted)
        finally:
            proc.stop()
    assert all(seen[k] >= v for k, v in wanted.items()), sorted(seen.items())
    assert [(r["category"], r["action"]) for r in rows] == [("shouting", "recorded"), ("insult", "warned"),
                                                            ("insult", "terminated")], rows
    assert rows[0]["shout_excess_db"] >= 10 and "커피" not in rows[0]["transcript"]
    assert "커피" in rows[1]["transcript"].replace(" ", "") and "대통령" in rows[2]["transcript"].replace(" ", "")
    for row in rows:
        assert row["department"] == "교통정책과" and row["asr_engine"] and row["model_version"]
        assert row["label"] == "unlabelled" and row["reported_by"] == "detector"
        assert sha256_file(Path(row["clip_path"])) == row["clip_sha256"]
    # each clip is the whole one: the utterance and (of the silence the phone sent after it) more than a second
    for row in rows:
        with av.open(row["clip_path"]) as f:
            clip = np.concatenate([fr.to_ndarray().ravel() for fr in f.decode(audio=0)])
        spoken = np.flatnonzero(np.abs(clip.astype(np.int32)) > 1000)
        assert len(spoken) and len(clip) - spoken[-1] >= 8000, (row["category"], len(clip), spoken[-1:])
    # what the parties heard: the warning after the first insult, the termination prompt after the second
    warning, termination = PROMPTS.get("abuse_warning"), PROMPTS.get("abuse_termination")
    assert best_correlation(warning, _late_audio(a, warned - 8.0, until=ended)) > 0.8
    assert best_correlation(warning, _late_audio(b, warned - 8.0, until=ended)) > 0.5  # after the tone
    for peer in (a, b):
        assert best_correlation(termination, _late_audio(peer, ended)) > 0.8, peer
    bye = (tmp_path / "uac_msg.log").read_text().split("BYE sip:")[-1]
    assert re.search(r'^Reason: Q\.850;cause=16;text="Call ended: abusive language"', bye, re.M)
    assert "BYE sip:" in (tmp_path / "uas_msg.log").read_text()  # the staff phone was hung up too
    store = CdrStore(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}")
    cdr = store.rows()
    store.engine.dispose()
    assert cdr[-1]["end_cause"] == "abuse_terminated" and cdr[-1]["ended_by"] == "b2bua"
