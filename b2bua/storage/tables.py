"""Every table of the database, in one leaf module: the stores write them, the migrations
(:mod:`.schema`) keep them up to date. A change here needs a new revision in ``migrations/versions``."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

_LEG_COLUMNS = ("codec", "packets_received", "packets_sent", "packets_lost", "jitter_ms")

def _call_columns(start_index: bool) -> list[Column]:
    """What a CDR and a call in progress both record: each leg's Call-ID, the parties, the route, the times."""
    return [Column("a_call_id", String(255)), Column("b_call_id", String(255)), Column("from_uri", String(255)),
            Column("to_uri", String(255)), Column("route", String(64)),
            Column("start", Float, nullable=False, index=start_index),  # Unix time, seconds
            Column("answer", Float)]


cdr_table = Table(
    "cdr", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False, index=True),
    *_call_columns(start_index=True),
    Column("end", Float, nullable=False),
    Column("duration", Float),  # answered seconds
    Column("status", Integer),
    Column("end_cause", String(64)),
    Column("ended_by", String(16)),
    Column("department", String(128), index=True),  # inbound: the one called; outbound: the staff's (0003)
    Column("direction", String(16)),  # inbound | outbound (0003)
    *[Column(f"{leg}_{name}", Float if name == "jitter_ms" else Integer)
      for leg in ("a", "b") for name in _LEG_COLUMNS],
)


live_calls_table = Table(
    "live_calls", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("node", String(255), nullable=False, index=True),
    *_call_columns(start_index=False),
    Column("seen", Float, nullable=False),  # this node was alive then (Unix time)
)

#: what a live_calls row keeps of a CDR row
LIVE_COLUMNS = ("call_id", "a_call_id", "b_call_id", "from_uri", "to_uri", "route", "start", "answer")


recordings_table = Table(
    "recordings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False, index=True),
    Column("department", String(128)),
    Column("direction", String(16)),  # inbound | outbound
    Column("reason", String(16)),  # full | on_demand | unknown (found after a crash)
    Column("path", String(1024), nullable=False, unique=True),
    Column("start", Float, nullable=False, index=True),  # Unix time
    Column("end", Float),
    Column("duration", Float),  # seconds of audio in the file
    Column("size", Integer),
    Column("sha256", String(64)),
    Column("status", String(16), nullable=False),  # recording | complete | failed | repaired
    Column("format", String(8)),  # wav | opus | mp3 (what the file at ``path`` is)
    Column("error", String(255)),
)


abuse_events_table = Table(
    "abuse_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False, unique=True),
    Column("call_id", String(64), nullable=False, index=True),
    Column("sip_call_id", String(255)),
    Column("department", String(128), index=True),
    Column("created", Float, nullable=False, index=True),  # Unix time
    Column("offset", Float),  # seconds since the answer
    Column("category", String(32), nullable=False),
    Column("score", Float),
    Column("transcript", Text),
    Column("asr_engine", String(64)),
    Column("model_version", String(128)),
    Column("action", String(16), nullable=False),  # warned | terminated | recorded
    Column("shout_excess_db", Float),
    Column("reported_by", String(16)),  # detector | staff
    Column("clip_path", String(1024)),
    Column("clip_sha256", String(64)),
    Column("label", String(16), nullable=False),  # unlabelled | confirmed | rejected
    Column("labelled_by", String(128)),
    Column("labelled_at", Float),
)


audit_table = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),  # Unix time
    Column("user", String(128), nullable=False),  # a user, "token" (automation) or "socket" (the local CLI)
    Column("role", String(16)),
    Column("action", String(32), nullable=False),  # login | login_failed | hangup | drain | reload | ...
    Column("target", String(255)),  # a call id, an event id, a recording's path
    Column("remote", String(64)),
    Column("detail", String(255)),
)


__all__ = ["LIVE_COLUMNS", "abuse_events_table", "audit_table", "cdr_table", "live_calls_table", "metadata",
           "recordings_table"]
