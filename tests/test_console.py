"""The operator console without a browser: its words in both languages, the waveform picture, the departments'
situation, call history search, the schema revision it needs, and its pages and routes through a running
B2BUA (login, roles, the audit of every playback, the event stream, HTTPS with a Secure cookie)."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
import wave
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
import yaml
from admin_client import AdminClient, config_with_users
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from harness import ROOT, B2BUAProcess, free_port, make_cert

from b2bua.config import ConfigError, load_config
from b2bua.console.departments import overview
from b2bua.console.i18n import MESSAGES, pick, translate
from b2bua.console.waveform import peaks, render
from b2bua.detection.events import AbuseEvent
from b2bua.routing.schedule import SEOUL
from b2bua.storage.abuse import AbuseEvents
from b2bua.storage.cdr import CdrStore, open_database
from b2bua.storage.history import CallHistory, HistoryQuery
from b2bua.storage.schema import _config as alembic_config
from b2bua.storage.schema import migrate, revision
from b2bua.storage.tables import metadata

TEMPLATES = ROOT / "b2bua" / "console" / "templates"


# -- words --------------------------------------------------------------------------------------------------
def test_every_word_the_pages_use_exists_in_korean_and_english() -> None:
    used = set()
    for page in TEMPLATES.glob("*.html"):
        used.update(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", page.read_text()))
    prefixes = {k for k in used if k.endswith(".")}  # t("dir." ~ value): every value it can take
    assert prefixes == {"dir.", "label.", "role."}
    used = used - prefixes | {"dir.inbound", "dir.outbound", "label.unlabelled", "label.confirmed", "label.rejected",
                              "role.viewer", "role.operator", "role.auditor"}
    assert len(used) > 60
    assert not used - MESSAGES.keys(), f"keys without words: {sorted(used - MESSAGES.keys())}"
    for key, (ko, en) in MESSAGES.items():
        assert ko and en, key
        assert sorted(re.findall(r"{(\w+)}", ko)) == sorted(re.findall(r"{(\w+)}", en)), \
            f"{key}: the two languages fill different blanks"
    assert re.search("[가-힣]", translate("ko", "nav.live")) and translate("en", "nav.live") == "Live calls"
    assert translate("en", "history.limit", n=100) == "Showing the newest 100 at most."
    assert pick(None, None) == "ko" and pick("en", "ko") == "en" and pick("fr", "en") == "en"


# -- the waveform ------------------------------------------------------------------------------------------
def _stereo_wav(path: Path, left: np.ndarray, right: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.stack([left, right], axis=1).astype("<i2").tobytes())


def test_the_waveform_shows_who_spoke_when_on_which_channel(tmp_path: Path) -> None:
    n = 8000 * 6
    t = np.arange(n) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 16000).astype(np.int16)
    left = np.where(t < 3, tone, 0).astype(np.int16)  # the caller speaks first
    right = np.where(t >= 3, tone // 2, 0).astype(np.int16)  # then staff, half as loud
    _stereo_wav(tmp_path / "r.wav", left, right)
    picture = render(tmp_path / "r.wav", ("left: citizen", "right: staff"))
    paths = re.findall(r'<path d="([^"]*)"', picture)
    assert len(paths) == 2 and "left: citizen" in picture and "right: staff" in picture and "0:06" in picture
    columns = [sorted(int(x) for x in re.findall(r"M(\d+) ", d)) for d in paths]
    assert columns[0] and max(columns[0]) < 300 <= min(columns[1])  # left in the first half, right the second
    levels = peaks(np.stack([left, right]).astype(np.float32) / 32768, columns=600)
    assert levels.shape == (2, 600)
    assert abs(levels[0, :290].mean() - 0.49) < 0.02 and levels[0, 310:].max() == 0
    assert abs(levels[1, 310:].mean() - 0.245) < 0.02 and levels[1, :290].max() == 0
    with pytest.raises(ValueError):
        render(tmp_path / "missing.wav", ("l", "r"))


# -- departments -------------------------------------------------------------------------------------------
def test_departments_situation_what_callers_hear_and_the_next_change() -> None:
    config = load_config(ROOT / "config" / "b2bua.yaml")
    wed_10 = datetime(2026, 12, 2, 10, 0, tzinfo=SEOUL)
    now = {d.name: d for d in overview(config, wed_10)}
    traffic = now["교통정책과"]
    assert traffic.situation == "open" and traffic.hears.kind == "ringback"
    assert (traffic.hears.notice, traffic.hears.prompt) == ("recording_notice", "city_notice")  # records all
    assert traffic.next_at == datetime(2026, 12, 2, 12, 0, tzinfo=SEOUL) and traffic.next_situation == "lunch"
    evening = {d.name: d for d in overview(config, datetime(2026, 12, 2, 20, 0, tzinfo=SEOUL))}["교통정책과"]
    assert evening.situation == "after_hours" and evening.hears.kind == "closed"
    assert (evening.hears.prompt, evening.hears.status) == ("after_hours", 480)
    assert evening.next_at == datetime(2026, 12, 3, 9, 0, tzinfo=SEOUL) and evening.next_situation == "open"
    moved = {d.name: d for d in overview(config, datetime(2026, 12, 22, 10, 0, tzinfo=SEOUL))}["민원여권과"]
    assert moved.situation == "moved" and moved.next_at == datetime(2026, 12, 25, 0, 0, tzinfo=SEOUL)


# -- history -----------------------------------------------------------------------------------------------
def _cdr(call_id: str, start: float, *, dept: str | None, direction: str, cause: str = "normal",
         caller: str = "01012345678", callee: str = "0221332200") -> dict:
    return {"call_id": call_id, "a_call_id": f"{call_id}@a", "b_call_id": f"{call_id}@b",
            "from_uri": f"sip:{caller}@192.0.2.1", "to_uri": f"sip:{callee}@192.0.2.2", "route": "r",
            "start": start, "answer": start + 2, "end": start + 62, "duration": 60.0, "status": 200,
            "end_cause": cause, "ended_by": "a", "department": dept, "direction": direction, "a_codec": 8,
            "b_codec": 0}


def _seed_history(db: str) -> None:
    store = CdrStore(db)
    day = datetime(2026, 12, 2, 10, 0, tzinfo=SEOUL).timestamp()
    store.add(_cdr("h1", day, dept="교통정책과", direction="inbound"))
    store.add(_cdr("h2", day + 60, dept="주택정책과", direction="inbound", caller="01099998888"))
    store.add(_cdr("h3", day + 86400, dept="교통정책과", direction="outbound", cause="operator_hangup",
                   caller="2201", callee="01055556666"))
    store.add(_cdr("h4", day - 86400, dept=None, direction="outbound", cause="no_answer"))
    store.flush()
    store.engine.dispose()


def test_history_is_searched_by_dates_department_number_and_cause(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    _seed_history(db)
    history = CallHistory(open_database(db))
    ids = lambda q: [r["call_id"] for r in history.search(q)]  # noqa: E731
    assert ids(HistoryQuery()) == ["h3", "h2", "h1", "h4"]  # newest first
    dec2 = datetime(2026, 12, 2, tzinfo=SEOUL).timestamp()
    assert ids(HistoryQuery(since=dec2, until=dec2 + 86400)) == ["h2", "h1"]
    assert ids(HistoryQuery(department="교통정책과")) == ["h3", "h1"]
    assert ids(HistoryQuery(number="010-9999-8888")) == ["h2"]  # any spelling: the digits are compared
    assert ids(HistoryQuery(number="5555 6666")) == ["h3"]
    assert ids(HistoryQuery(number="%")) == ["h3", "h2", "h1", "h4"]  # no digits: no condition, no wildcard
    assert ids(HistoryQuery(cause="operator_hangup")) == ["h3"]
    assert ids(HistoryQuery(limit=2)) == ["h3", "h2"]
    assert history.causes(since=0) == ["no_answer", "normal", "operator_hangup"]
    assert history.causes(since=dec2 + 86400) == ["operator_hangup"]
    one = history.call(history.search(HistoryQuery(cause="no_answer"))[0]["id"])
    assert one is not None and one["call_id"] == "h4" and one["recordings"] == [] and one["abuse_events"] == []
    assert history.call(10_000) is None


def test_the_department_columns_arrive_by_migration_and_keep_old_rows(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")  # a database of the previous release
        conn.exec_driver_sql("INSERT INTO cdr (call_id, start, \"end\", status) VALUES ('old', 1.0, 2.0, 200)")
    migrate(engine)
    assert revision(engine) == "0003"
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT call_id, department, direction FROM cdr").one()
        assert tuple(row) == ("old", None, None)
        # the migrated schema is the one the code describes (b2bua/storage/tables.py): nothing missing or extra
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


# -- through a running B2BUA -------------------------------------------------------------------------------
def _seed_call_with_recording_and_event(var: Path) -> tuple[Path, Path]:
    """A finished call c1 of 교통정책과 with a stereo recording and an abuse event with a clip."""
    from b2bua.call.protection import RecordingStarted
    from b2bua.storage.recordings import RecordingIndex

    var.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{var / 'b2bua.sqlite3'}"
    start = time.time() - 600
    store = CdrStore(db)
    store.add(_cdr("c1", start, dept="교통정책과", direction="inbound", caller="01012345678"))
    store.flush()
    store.engine.dispose()
    wav = var / "recordings" / "c1-1.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    tone = (np.sin(np.arange(16000) / 8000 * 2 * np.pi * 300) * 8000).astype(np.int16)
    _stereo_wav(wav, tone, tone // 3)
    index = RecordingIndex(open_database(db), wav.parent)
    index.started(RecordingStarted("c1", "교통정책과", "inbound", "full", str(wav), start + 2))
    index.finished(str(wav), 2.0, wav.stat().st_size, None).result()
    index.close()
    events = AbuseEvents(open_database(db), wav.parent)
    events.record(AbuseEvent("e1", "c1", "c1@a", "교통정책과", 12.5, "insult", 0.91, "이 개새끼야", "whisper", "m1",
                             "warned", None, tone[:4000].tobytes()))
    events.flush()
    clip = Path(events.event("e1")["clip_path"])  # type: ignore[index]
    events.close()
    return wav, clip


def test_pages_follow_the_login_and_the_role_and_every_playback_is_on_record(tmp_path: Path) -> None:
    cfg, admin = config_with_users(tmp_path)
    wav, clip = _seed_call_with_recording_and_event(tmp_path / "var")
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{free_port()}"], tmp_path / "b2bua.log").start()
    try:
        anonymous = AdminClient(admin)
        status, _, headers = anonymous.fetch("GET", "/history?department=x")
        assert status == 302 and headers["Location"].startswith("/login?next=")  # pages need a login
        assert parse_qs(urlsplit(headers["Location"]).query) == {"next": ["/history?department=x"]}  # and back
        assert anonymous.fetch("GET", "/login")[0] == 200 and anonymous.fetch("GET", "/static/console.js")[0] == 200
        assert anonymous.fetch("GET", "/api/cdrs")[0] == 401 and anonymous.fetch("GET", "/api/calls/stream")[0] == 401
        viewer, operator, auditor = AdminClient(admin), AdminClient(admin), AdminClient(admin)
        for client, name in ((viewer, "kim"), (operator, "lee"), (auditor, "park")):
            assert client.login(name) == 200
        status, body = viewer.call("GET", f"/api/cdrs?department={quote('교통정책과')}")
        (row,) = body["cdrs"]
        assert status == 200 and row["call_id"] == "c1" and row["caller"] == "*******5678"  # the citizen masked
        assert row["callee"] == "0221332200" and "from_uri" not in row
        assert (row["a_codec"], row["b_codec"]) == ("PCMA", "PCMU")  # payload types by name
        assert viewer.call("GET", "/api/cdrs?number=01012345678")[1]["cdrs"][0]["call_id"] == "c1"
        assert viewer.call("GET", "/api/cdrs?since=2020-13-45")[0] == 400
        status, page, headers = viewer.fetch("GET", f"/calls/{row['id']}")
        text = page.decode()
        assert status == 200 and "통화 상세" in text and "*******5678" in text and "01012345678" not in text
        assert "default-src 'self'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
        assert "<audio" not in text and "이 개새끼야" in text  # a viewer reads the events, hears nothing
        rec_id = re.search(r'data-recording="(\d+)"', text).group(1)  # type: ignore[union-attr]
        assert viewer.fetch("GET", f"/api/recordings/{rec_id}/waveform.svg")[0] == 403
        assert viewer.fetch("GET", "/api/abuse/events/e1/clip")[0] == 403
        assert viewer.fetch("GET", "/audit")[0] == 403 and operator.fetch("GET", "/audit")[0] == 403
        assert "label-btn" not in text and "label-btn" in operator.fetch("GET", f"/calls/{row['id']}")[1].decode()
        assert "<audio" not in operator.fetch("GET", f"/calls/{row['id']}")[1].decode()
        # the auditor: the picture, the player, the clip; one audit row per playback, none for later ranges
        text = auditor.fetch("GET", f"/calls/{row['id']}")[1].decode()
        assert f'src="/api/recordings/{rec_id}/audio"' in text and 'preload="none"' in text
        status, svg, headers = auditor.fetch("GET", f"/api/recordings/{rec_id}/waveform.svg")
        assert status == 200 and headers["Content-Type"].startswith("image/svg+xml") and b"<path" in svg
        status, audio, _ = auditor.fetch("GET", f"/api/recordings/{rec_id}/audio", headers={"Range": "bytes=0-"})
        assert status == 206 and audio == wav.read_bytes()
        assert auditor.fetch("GET", f"/api/recordings/{rec_id}/audio", headers={"Range": "bytes=4000-"})[0] == 206
        status, got, headers = auditor.fetch("GET", "/api/abuse/events/e1/clip")
        assert status == 200 and got == clip.read_bytes() and len(headers["X-Content-SHA256"]) == 64
        audit = auditor.call("GET", "/api/audit")[1]["audit"]
        plays = [(r["user"], r["action"], r["target"]) for r in audit if r["action"] in ("play", "play_clip")]
        assert plays == [("park", "play", str(wav)), ("park", "play_clip", "e1")]
        assert "play_clip" in auditor.fetch("GET", "/audit")[1].decode()
        # English on request, remembered
        status, page, headers = viewer.fetch("GET", "/live?lang=en")
        assert status == 200 and "Live calls" in page.decode() and "b2bua_lang=en" in headers["Set-Cookie"]
        assert "Call history" in viewer.fetch("GET", "/history")[1].decode()
        assert "부서 상황" in viewer.fetch("GET", "/departments?lang=ko")[1].decode()
        depts = viewer.call("GET", "/api/departments")[1]["departments"]
        assert {d["name"] for d in depts} >= {"교통정책과", "주택정책과"} and all("situation" in d for d in depts)
        system = viewer.call("GET", "/api/system")[1]
        assert system["ready"] is True and system["config"] == str(cfg) and "active" in system["figures"]
    finally:
        proc.stop()


def test_the_live_stream_sends_calls_every_second_and_never_holds_a_stop(tmp_path: Path) -> None:
    cfg, admin = config_with_users(tmp_path)
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{free_port()}"], tmp_path / "b2bua.log").start()
    try:
        client = AdminClient(admin)
        assert client.login("kim") == 200
        cookie = next(c for c in client.jar if c.name == "b2bua_session")
        sock = socket.create_connection(("127.0.0.1", admin), timeout=10)
        sock.sendall(f"GET /api/calls/stream HTTP/1.1\r\nHost: x\r\nCookie: b2bua_session={cookie.value}\r\n\r\n"
                     .encode())
        got = b""
        while got.count(b"data: ") < 2:
            chunk = sock.recv(4096)
            assert chunk, got
            got += chunk
        assert b"text/event-stream" in got
        event = json.loads(got.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])
        assert event == {"calls": [], "draining": False}
        # a reload refused: the system page says so, with the file and line of each problem
        assert "시작 후 다시 읽은 적 없음" in client.fetch("GET", "/system")[1].decode()
        operator = AdminClient(admin)
        assert operator.login("lee") == 200
        routing = cfg.parent / "routing.yaml"
        routing.write_text(routing.read_text() + "\nnot_a_key: 1\n")
        status, body = operator.call("POST", "/api/reload")
        assert status == 422 and body["problems"]
        page = client.fetch("GET", "/system")[1].decode()
        assert "거부됨" in page and f"{routing}:" in page
        routing.write_text(routing.read_text().replace("\nnot_a_key: 1\n", "\n"))
        assert operator.call("POST", "/api/reload")[0] == 200
        page = client.fetch("GET", "/system")[1].decode()
        assert "정상 적용" in page and "거부됨" not in page
        began = time.monotonic()
        assert proc.stop() == 0  # the open stream ends with the listener
        assert time.monotonic() - began < 10
        sock.close()
    finally:
        proc.stop()


def test_https_on_the_admin_listener_makes_the_session_cookie_secure(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    cfg, admin = config_with_users(tmp_path, admin={"tls_cert": str(cert), "tls_key": str(key)})
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{free_port()}"], tmp_path / "b2bua.log").start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        client = AdminClient(admin, ctx)
        assert client.login("park") == 200
        cookie = client.set_cookie
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.fetch("GET", "/live")[0] == 200
        plain = AdminClient(admin)
        with pytest.raises(OSError):
            plain.fetch("GET", "/healthz")
    finally:
        proc.stop()


def test_half_a_tls_pair_or_an_unreadable_certificate_is_refused_with_its_line(tmp_path: Path) -> None:
    cfg, _ = config_with_users(tmp_path, admin={"tls_cert": "missing.crt"})
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load_config(cfg)
    data = yaml.safe_load(cfg.read_text())
    data["admin"]["tls_key"] = "missing.key"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    (problem,) = err.value.problems
    assert re.match(rf"{re.escape(str(cfg))}:\d+: admin.tls_cert: cannot load", problem), problem
