"""Who may use the admin API (b2bua/admin_auth.py and the middleware of b2bua/admin.py): scrypt hashes,
roles, sessions with CSRF, the login lockout, the audit trail; in process and through a real B2BUA."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from admin_client import HASHES, PASSWORDS, ROLES, AdminClient, config_with_users
from harness import ROOT, SCENARIOS, SIPP, B2BUAProcess, free_port, sipp_background

from b2bua.admin_auth import (
    FAILURE_WINDOW_S,
    LOCKOUT_S,
    MAX_FAILURES,
    SESSION_IDLE_S,
    Authenticator,
    User,
    hash_password,
    parse_hash,
    verify_password,
)
from b2bua.storage.audit import AuditLog
from b2bua.storage.cdr import open_database


def _auth() -> Authenticator:
    return Authenticator(users={n: User(n, HASHES[n], ROLES[n]) for n in PASSWORDS})


def test_passwords_are_stored_as_salted_scrypt_and_checked_in_constant_form() -> None:
    encoded = HASHES["kim"]
    n, r, p, salt, digest = parse_hash(encoded)
    assert (n, r, p, len(salt), len(digest)) == (2**14, 8, 1, 16, 32) and PASSWORDS["kim"] not in encoded
    assert hash_password(PASSWORDS["kim"]) != encoded  # a new salt each time
    assert verify_password(PASSWORDS["kim"], encoded) and not verify_password("viewer-password-2", encoded)
    assert not verify_password("x", "plaintext-password")
    with pytest.raises(ValueError, match="scrypt"):
        parse_hash("s3cret")


def test_sessions_roles_idle_expiry_and_the_lockout() -> None:
    auth = _auth()
    session = auth.login("lee", PASSWORDS["lee"], "192.0.2.7", 0.0)
    assert session is not None and session.role == "operator" and session.may("control")
    assert not session.may("listen") and len(session.csrf) >= 24
    cookie = auth.cookie_of(session)
    assert auth.session(cookie, SESSION_IDLE_S - 1) is session
    assert auth.session(cookie, 2 * SESSION_IDLE_S) is None  # idle too long
    viewer = auth.login("kim", PASSWORDS["kim"], "192.0.2.7", 0.0)
    assert viewer is not None and not viewer.may("control") and not viewer.may("listen")
    auditor = auth.login("park", PASSWORDS["park"], "192.0.2.7", 0.0)
    assert auditor is not None and auditor.may("listen") and not auditor.may("control")
    for i in range(MAX_FAILURES):
        assert not auth.locked(("addr:198.51.100.9", "user:lee"), float(i))
        assert auth.login("lee", "guess", "198.51.100.9", float(i)) is None
    locked_at = float(MAX_FAILURES - 1)
    assert auth.locked(("addr:198.51.100.9",), locked_at + 1) and auth.locked(("user:lee",), locked_at + 1)
    assert not auth.locked(("addr:198.51.100.9",), locked_at + LOCKOUT_S + 1)
    assert auth.login("nobody", "x", "203.0.113.1", 0.0) is None  # unknown names fail the same way
    assert FAILURE_WINDOW_S > LOCKOUT_S


def test_audit_rows_are_written_and_readable(tmp_path: Path) -> None:
    audit = AuditLog(open_database(f"sqlite:///{tmp_path / 'a.sqlite3'}"))
    audit.record("park", "auditor", "play", "/rec/c1-1.wav", "192.0.2.7")
    audit.flush()
    (row,) = audit.rows()
    assert (row["user"], row["role"], row["action"], row["target"], row["remote"]) == \
        ("park", "auditor", "play", "/rec/c1-1.wav", "192.0.2.7") and row["at"] > 0
    audit.close()


def test_hash_password_command_reads_stdin_and_refuses_short_passwords() -> None:
    run = [sys.executable, "-m", "b2bua", "admin", "hash-password"]
    res = subprocess.run(run, input="a-long-enough-password\n", capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert res.returncode == 0 and verify_password("a-long-enough-password", res.stdout.strip())
    short = subprocess.run(run, input="short\n", capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert short.returncode == 1 and "12 characters" in short.stderr


@pytest.mark.usefixtures("sipp_installed")
def test_roles_csrf_lockout_and_audit_through_a_running_b2bua(tmp_path: Path) -> None:
    uas_port = free_port()
    cfg, admin = config_with_users(tmp_path, uas_port)
    port = free_port()
    assert SIPP
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path):
        proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
        try:
            caller = subprocess.Popen([SIPP, "-sf", str(SCENARIOS / "uac_remote_bye.xml"), f"127.0.0.1:{port}",
                                       "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1", "-nostdin"],
                                      cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            anonymous = AdminClient(admin)
            assert anonymous.call("GET", "/api/calls")[0] == 401  # nothing without a login
            viewer = AdminClient(admin)
            assert viewer.login("kim", PASSWORDS["kim"]) == 200
            assert "HttpOnly" in viewer.set_cookie and "SameSite=Strict" in viewer.set_cookie
            calls: list = []
            deadline = time.monotonic() + 15
            while not calls and time.monotonic() < deadline:
                status, body = viewer.call("GET", "/api/calls")
                assert status == 200
                calls = [c for c in body["calls"] if c["state"] == "confirmed"]
                time.sleep(0.2)
            assert calls, "the SIPp call never showed up"
            call_id = calls[0]["id"]
            assert viewer.call("POST", f"/api/calls/{call_id}/hangup")[0] == 403  # a viewer may not
            operator = AdminClient(admin)
            assert operator.login("lee", PASSWORDS["lee"]) == 200
            assert operator.call("POST", f"/api/calls/{call_id}/hangup", csrf=False)[0] == 403  # no CSRF token
            assert operator.call("POST", f"/api/calls/{call_id}/hangup")[0] == 200
            assert caller.wait(20) == 0  # the caller got the BYE and answered it
            for _ in range(MAX_FAILURES):
                assert AdminClient(admin).login("lee", "wrong") == 401
            assert AdminClient(admin).login("lee", PASSWORDS["lee"]) == 429  # locked out for now, even rightly
            proc.settle()
        finally:
            proc.stop()
    audit = AuditLog(open_database(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}"))
    rows = [(r["user"], r["action"], r["target"]) for r in audit.rows()]
    audit.close()
    assert ("kim", "login", "") in rows and ("lee", "login", "") in rows
    assert ("lee", "hangup", call_id) in rows and rows.count(("lee", "login_failed", "")) == MAX_FAILURES
    assert not any(action == "hangup" and user == "kim" for user, action, _ in rows)


def test_recordings_and_abuse_events_reviewed_by_role_and_on_the_record(tmp_path: Path) -> None:
    from b2bua.call.protection import RecordingStarted
    from b2bua.detection.events import AbuseEvent
    from b2bua.storage.abuse import AbuseEvents
    from b2bua.storage.recordings import RecordingIndex, sha256_file

    cfg, admin = config_with_users(tmp_path)
    (tmp_path / "var").mkdir()
    wav = tmp_path / "var" / "recordings" / "2020" / "01" / "01" / "c1-1.wav"  # an earlier call's recording
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    index = RecordingIndex(open_database(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}"), wav.parent)
    index.started(RecordingStarted("c1", "교통정책과", "inbound", "full", str(wav), 1000.0))
    index.finished(str(wav), 1.0, wav.stat().st_size, None).result()
    index.close()
    events = AbuseEvents(open_database(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}"), wav.parent)
    events.record(AbuseEvent("e1", "c1", "sip@x", "교통정책과", 12.5, "insult", 0.9, "이 개새끼야", "whisper", "m1",
                             "warned", None, b"\x00\x01" * 800))
    events.flush()
    events.close()
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{free_port()}"], tmp_path / "b2bua.log").start()
    try:
        viewer, auditor, operator = AdminClient(admin), AdminClient(admin), AdminClient(admin)
        assert viewer.login("kim", PASSWORDS["kim"]) == 200 and auditor.login("park", PASSWORDS["park"]) == 200
        assert operator.login("lee", PASSWORDS["lee"]) == 200
        status, body = viewer.call("GET", "/api/recordings?call=c1")
        (rec,) = body["recordings"]
        assert status == 200 and rec["sha256"] == sha256_file(wav) and rec["status"] == "complete"
        assert "path" not in rec  # where files live is not the viewer's business
        audio = f"{viewer.base}/api/recordings/{rec['id']}/audio"
        with pytest.raises(urllib.error.HTTPError) as denied:
            viewer.opener.open(audio, timeout=10)
        assert denied.value.code == 403
        with auditor.opener.open(audio + "?download=1", timeout=10) as resp:
            assert resp.read() == wav.read_bytes() and resp.headers["X-Content-SHA256"] == rec["sha256"]
            assert "attachment" in resp.headers["Content-Disposition"]
        assert operator.call("GET", "/api/audit")[0] == 403  # the audit trail is the auditors'
        status, body = auditor.call("GET", "/api/audit")
        assert status == 200
        assert [(r["user"], r["action"], r["target"]) for r in body["audit"] if r["action"] == "download"] == \
            [("park", "download", str(wav))]
        # abuse events: listed for review, labelled by an operator only, the label kept for retraining
        status, body = viewer.call("GET", "/api/abuse/events?label=unlabelled")
        (event,) = body["events"]
        assert status == 200 and event["event_id"] == "e1" and "clip_path" not in event
        assert viewer.call("POST", "/api/abuse/events/e1/label", {"confirm": True})[0] == 403
        assert operator.call("POST", "/api/abuse/events/e1/label", {"confirm": "yes"})[0] == 400
        assert operator.call("POST", "/api/abuse/events/nope/label", {"confirm": True})[0] == 404
        assert operator.call("POST", "/api/abuse/events/e1/label", {"confirm": True})[0] == 200
        status, body = viewer.call("GET", "/api/abuse/events?label=confirmed")
        assert [(e["event_id"], e["labelled_by"]) for e in body["events"]] == [("e1", "lee")]
        assert viewer.call("GET", "/api/abuse/events?label=unlabelled")[1]["events"] == []
        labels = [(r["user"], r["target"], r["detail"]) for r in auditor.call("GET", "/api/audit")[1]["audit"]
                  if r["action"] == "label"]
        assert labels == [("lee", "e1", "confirmed")]
    finally:
        proc.stop()
