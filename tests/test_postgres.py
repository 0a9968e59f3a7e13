"""PostgreSQL for real (a server the test starts itself, tests/pg.py): the migrations, every store, and a
B2BUA process whose CDRs go there; SQLite databases made before migrations are adopted."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import ROOT, B2BUAProcess, free_port, sipp, sipp_background, write_config
from pg import postgres_server
from sqlalchemy import create_engine, inspect, text

from b2bua.call.protection import RecordingStarted
from b2bua.detection.events import AbuseEvent
from b2bua.storage.abuse import AbuseEvents
from b2bua.storage.cdr import CdrStore, open_database
from b2bua.storage.recordings import RecordingIndex
from b2bua.storage.schema import migrate, revision
from b2bua.storage.tables import metadata

pytestmark = pytest.mark.slow
HEAD = "0003"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_migrations_build_the_schema_once(pg_url: str) -> None:
    engine = open_database(pg_url)
    migrate(engine)
    assert revision(engine) == HEAD
    tables = set(inspect(engine).get_table_names())
    assert {"cdr", "live_calls", "recordings", "abuse_events", "audit", "alembic_version"} <= tables
    migrate(open_database(pg_url))  # another process starting: nothing to do, nothing broken
    assert revision(engine) == HEAD
    engine.dispose()


def test_cdrs_and_the_calls_in_progress_on_postgresql(pg_url: str) -> None:
    store = CdrStore(pg_url, node="pg-node")
    store.add({"call_id": "p1", "a_call_id": "a@x", "start": 1000.0, "answer": 1001.0, "end": 1060.0,
               "duration": 59.0, "status": 200, "end_cause": "normal", "ended_by": "a"})
    store.live({"call_id": "p2", "a_call_id": "b@x", "start": 1000.0, "answer": 1002.0})
    assert store.flush(now=1100.0) == 1
    store.amend("p1", {"a_packets_received": 2950})
    store.flush(now=1101.0)
    store.engine.dispose()
    restarted = CdrStore(pg_url, node="pg-node")
    assert restarted.recover() == 1
    rows = {r["call_id"]: r for r in restarted.rows()}
    assert rows["p1"]["a_packets_received"] == 2950 and rows["p1"]["end"] == 1060.0
    assert rows["p2"]["end_cause"] == "process_restart" and rows["p2"]["end"] == 1101.0
    restarted.engine.dispose()


def test_recordings_and_abuse_events_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    engine = open_database(pg_url)
    index = RecordingIndex(engine, tmp_path / "rec")
    path = tmp_path / "rec" / "c1-1.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF")
    index.started(RecordingStarted("c1", "교통정책과", "inbound", "full", str(path), 1000.0))
    index.finished(str(path), 1.0, 4, None).result()
    (row,) = index.rows()
    assert row["status"] == "complete" and row["department"] == "교통정책과"
    index.close()
    events = AbuseEvents(engine, tmp_path / "rec")
    events.record(AbuseEvent("e1", "c1", "sip@x", "교통정책과", 12.5, "insult", 0.9, "이 개새끼야", "whisper", "m1",
                             "warned", None, b"\x00\x01" * 800))
    events.flush()
    (ev,) = events.events()
    assert ev["offset"] == 12.5 and ev["transcript"] == "이 개새끼야" and ev["clip_sha256"]
    assert events.label("e1", confirmed=True, who="kim") and events.events()[0]["label"] == "confirmed"
    events.close()
    engine.dispose()


def test_a_sqlite_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = create_engine(url)
    metadata.tables["cdr"].create(old)  # what an earlier version left: the CDR table alone, no alembic_version
    with old.begin() as db:
        db.execute(text("INSERT INTO cdr (call_id, start, \"end\") VALUES ('old', 1, 2)"))
    old.dispose()
    store = CdrStore(url)
    assert revision(store.engine) == HEAD and [r["call_id"] for r in store.rows()] == ["old"]
    assert {"live_calls", "recordings", "abuse_events"} <= set(inspect(store.engine).get_table_names())
    store.engine.dispose()


def test_a_b2bua_writes_its_cdrs_to_postgresql(pg_url: str, tmp_path: Path) -> None:
    uas_port = free_port()
    cfg = write_config(tmp_path / "config", routing={"routes": [{"name": "lab", "prefix": "",
                                                                 "targets": [f"sip:127.0.0.1:{uas_port}"]}]})
    data = yaml.safe_load(cfg.read_text())
    data["storage"]["url"] = pg_url
    cfg.write_text(yaml.safe_dump(data))
    check = subprocess.run([sys.executable, "-m", "b2bua", "check-config", "--config", str(cfg)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path):
        proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
        try:
            res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "3",
                        "-r", "10", "-d", "200"], tmp_path)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
            proc.settle()
        finally:
            proc.stop()
    store = CdrStore(pg_url)
    deadline = time.monotonic() + 10
    rows = [r for r in store.rows() if r["route"] == "lab"]
    while len(rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = [r for r in store.rows() if r["route"] == "lab"]
    store.engine.dispose()
    assert len(rows) == 3 and all(r["status"] == 200 and r["end_cause"] == "normal" for r in rows), rows
