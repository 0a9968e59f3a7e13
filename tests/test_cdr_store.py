"""The CDR store (b2bua/storage/cdr.py): batched rows, late amendments, and the calls in progress kept in
``live_calls`` so that the next start after a crash writes their CDRs (cause ``process_restart``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from b2bua.storage.cdr import CdrStore
from b2bua.storage.tables import live_calls_table


def _store(tmp: Path, node: str = "node-1") -> CdrStore:
    return CdrStore(f"sqlite:///{tmp / 'cdr.sqlite3'}", node=node)


def _call(call_id: str, start: float = 1000.0, answer: float | None = None) -> dict:
    return {"call_id": call_id, "a_call_id": f"{call_id}@a", "b_call_id": f"{call_id}@b" if answer else "",
            "from_uri": "sip:01012345678@carrier", "to_uri": "sip:0221332200@city", "route": "lab",
            "start": start, "answer": answer}


def _live(store: CdrStore) -> dict[str, dict]:
    with store.engine.connect() as db:
        return {r.call_id: dict(r._mapping) for r in db.execute(select(live_calls_table))}


def test_calls_in_progress_are_kept_until_they_end(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.live(_call("c1"))
    store.live(_call("c2"))
    store.flush(now=1001.0)
    assert set(_live(store)) == {"c1", "c2"} and _live(store)["c1"]["seen"] == 1001.0
    store.live(_call("c1", answer=1003.0))  # answered
    store.gone("c2")
    store.flush(now=1004.0)
    live = _live(store)
    assert set(live) == {"c1"} and live["c1"]["answer"] == 1003.0 and live["c1"]["b_call_id"] == "c1@b"
    store.flush(now=1010.0)  # nothing new: the node is still seen alive
    assert _live(store)["c1"]["seen"] == 1010.0
    store.live(_call("c3"))
    store.gone("c3")  # started and ended within one batch: never written
    store.gone("c1")
    store.flush(now=1011.0)
    assert _live(store) == {}


def test_the_next_start_writes_the_cdrs_of_the_calls_a_crash_cut_short(tmp_path: Path) -> None:
    crashed = _store(tmp_path)
    crashed.live(_call("c1", start=1000.0, answer=1002.0))
    crashed.live(_call("c2", start=1005.0))  # still ringing
    crashed.flush(now=1060.0)
    other = _store(tmp_path, node="node-2")  # another B2BUA sharing the database
    other.live(_call("x1"))
    other.flush(now=1060.0)
    crashed.engine.dispose()  # kill -9: nothing more is written
    restarted = _store(tmp_path)
    assert restarted.recover() == 2
    rows = {r["call_id"]: r for r in restarted.rows()}
    assert set(rows) == {"c1", "c2"}
    assert rows["c1"]["end_cause"] == "process_restart" and rows["c1"]["ended_by"] == "b2bua"
    assert (rows["c1"]["end"], rows["c1"]["status"]) == (1060.0, 200)
    assert rows["c1"]["duration"] == pytest.approx(58.0)
    assert (rows["c2"]["status"], rows["c2"]["duration"], rows["c2"]["answer"]) == (0, 0.0, None)
    assert set(_live(restarted)) == {"x1"}  # the other node's calls are its own business
    assert restarted.recover() == 0  # once


def test_a_failed_write_keeps_the_calls_for_the_next_try(tmp_path: Path) -> None:
    """The database loses a table: what goes elsewhere is written one by one, the rest waits for the table."""
    from b2bua.storage.tables import cdr_table

    store = _store(tmp_path)
    store.live(_call("c1"))
    store.add({"call_id": "c0", "start": 1.0, "end": 2.0})
    live_calls_table.drop(store.engine)  # the batch fails; the CDR alone goes in
    assert store.flush(now=1001.0) == 1 and store.failures == 1 and store.dropped == 0
    live_calls_table.create(store.engine)
    assert store.flush(now=1002.0) == 0
    assert set(_live(store)) == {"c1"} and [r["call_id"] for r in store.rows()] == ["c0"]
    cdr_table.drop(store.engine)  # now nothing goes in: everything is kept, nothing dropped
    for n in range(5):
        store.add({"call_id": f"d{n}", "start": 1.0, "end": 2.0})
    assert store.flush(now=1003.0) == 0 and store.failures == 2 and store.dropped == 0
    cdr_table.create(store.engine)
    assert store.flush(now=1004.0) == 5 and {r["call_id"] for r in store.rows()} == {f"d{n}" for n in range(5)}


def test_a_cdr_the_database_refuses_on_its_own_is_dropped_not_retried_forever(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.add({"call_id": "before", "start": 1.0, "end": 2.0})
    store.add({"call_id": "poison", "start": object(), "end": 2.0})  # a value no driver binds
    store.add({"call_id": "after", "start": 1.0, "end": 2.0})
    store.amend("before", {"a_packets_received": 7})
    assert store.flush(now=3.0) == 2 and store.failures == 1 and store.dropped == 1
    store.add({"call_id": "next", "start": 3.0, "end": 4.0})
    assert store.flush(now=5.0) == 1 and store.failures == 1  # the next batch is not blocked
    rows = {r["call_id"]: r for r in store.rows()}
    assert set(rows) == {"before", "after", "next"} and rows["before"]["a_packets_received"] == 7


def test_sqlite_runs_in_wal_mode_so_a_reader_never_meets_a_locked_database(tmp_path: Path) -> None:
    import sqlite3

    store = _store(tmp_path)
    store.add({"call_id": "c0", "start": 1.0, "end": 2.0})
    store.flush()
    with store.engine.connect() as db:
        assert db.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    writer = sqlite3.connect(tmp_path / "cdr.sqlite3")
    writer.execute("BEGIN IMMEDIATE")  # the writer thread in the middle of a batch
    writer.execute("INSERT INTO cdr (call_id, start, \"end\") VALUES ('c1', 1, 2)")
    reader = sqlite3.connect(tmp_path / "cdr.sqlite3", timeout=0.1)  # an operator's query meanwhile
    assert [r[0] for r in reader.execute("SELECT call_id FROM cdr")] == ["c0"]
    writer.commit()
    assert [r[0] for r in reader.execute("SELECT call_id FROM cdr ORDER BY id")] == ["c0", "c1"]
    reader.close()
    writer.close()


def test_a_uri_with_bytes_that_are_not_utf8_is_stored_and_does_not_block_the_others(tmp_path: Path) -> None:
    """The parser keeps a peer's non-UTF-8 bytes as surrogates; the row is stored with U+FFFD for them, and the
    rows around it are written too (once this failed the whole batch, every second: found by fuzzing)."""
    from b2bua.sip.message import Request, parse_message

    raw = (b"INVITE sip:+1650555\xff2222@ss1.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
           b"From: <sip:+1303555\xc31111@example.net>;tag=a\r\nTo: <sip:b@example.net>\r\nCall-ID: odd\r\n"
           b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    req = parse_message(raw)
    assert isinstance(req, Request) and "\udcc3" in req.from_.uri  # what reaches the CDR
    store = _store(tmp_path)
    store.add({"call_id": "before", "start": 1.0, "end": 2.0})
    store.add({"call_id": "odd", "from_uri": req.from_.uri, "to_uri": str(req.uri), "start": 1.0, "end": 2.0})
    store.live({"call_id": "odd-live", "from_uri": req.from_.uri, "start": 1.0})
    store.add({"call_id": "after", "start": 1.0, "end": 2.0, "a_packets_received": 150})
    assert store.flush(now=3.0) == 3 and store.failures == 0
    rows = {r["call_id"]: r for r in store.rows()}
    assert rows["odd"]["from_uri"] == "sip:+1303555\ufffd1111@example.net" and set(rows) == {"before", "odd", "after"}
    # the first row of the batch had neither URIs nor media figures: the others' were kept all the same
    assert rows["after"]["a_packets_received"] == 150


def test_empty_final_figures_do_not_block_the_cdrs(tmp_path: Path) -> None:
    """Worker mode amends a CDR with a call's exact media figures after it ended. A call refused for want of
    media ports had no leg, so its figures are empty: that must not become an UPDATE without columns, which
    failed every batch from then on (found by a soak with the media workers)."""
    store = _store(tmp_path)
    store.add({"call_id": "written", "start": 1.0, "end": 2.0})
    assert store.flush(now=3.0) == 1
    store.amend("refused", {})  # after its row was written: an amendment of nothing
    store.amend("written", {"a_packets_received": 50})
    store.add({"call_id": "next", "start": 3.0, "end": 4.0})
    assert store.flush(now=5.0) == 1 and store.failures == 0
    rows = {r["call_id"]: r for r in store.rows()}
    assert set(rows) == {"written", "next"} and rows["written"]["a_packets_received"] == 50
