"""The schema as it stood when migrations began: CDRs, the calls in progress, the recordings index and
abuse events (a frozen copy: later changes are later revisions, never edits of this one).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_LEG = ("codec", "packets_received", "packets_sent", "packets_lost", "jitter_ms")


def _call(start_index: bool) -> list[sa.Column]:
    return [sa.Column("a_call_id", sa.String(255)), sa.Column("b_call_id", sa.String(255)),
            sa.Column("from_uri", sa.String(255)), sa.Column("to_uri", sa.String(255)),
            sa.Column("route", sa.String(64)), sa.Column("start", sa.Float, nullable=False, index=start_index),
            sa.Column("answer", sa.Float)]


def upgrade() -> None:
    op.create_table(
        "cdr",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False, index=True),
        *_call(start_index=True),
        sa.Column("end", sa.Float, nullable=False),
        sa.Column("duration", sa.Float),
        sa.Column("status", sa.Integer),
        sa.Column("end_cause", sa.String(64)),
        sa.Column("ended_by", sa.String(16)),
        *[sa.Column(f"{leg}_{name}", sa.Float if name == "jitter_ms" else sa.Integer)
          for leg in ("a", "b") for name in _LEG],
    )
    op.create_table(
        "live_calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(255), nullable=False, index=True),
        *_call(start_index=False),
        sa.Column("seen", sa.Float, nullable=False),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False, index=True),
        sa.Column("department", sa.String(128)),
        sa.Column("direction", sa.String(16)),
        sa.Column("reason", sa.String(16)),
        sa.Column("path", sa.String(1024), nullable=False, unique=True),
        sa.Column("start", sa.Float, nullable=False, index=True),
        sa.Column("end", sa.Float),
        sa.Column("duration", sa.Float),
        sa.Column("size", sa.Integer),
        sa.Column("sha256", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("format", sa.String(8)),
        sa.Column("error", sa.String(255)),
    )
    op.create_table(
        "abuse_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(32), nullable=False, unique=True),
        sa.Column("call_id", sa.String(64), nullable=False, index=True),
        sa.Column("sip_call_id", sa.String(255)),
        sa.Column("department", sa.String(128), index=True),
        sa.Column("created", sa.Float, nullable=False, index=True),
        sa.Column("offset", sa.Float),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("transcript", sa.Text),
        sa.Column("asr_engine", sa.String(64)),
        sa.Column("model_version", sa.String(128)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("shout_excess_db", sa.Float),
        sa.Column("reported_by", sa.String(16)),
        sa.Column("clip_path", sa.String(1024)),
        sa.Column("clip_sha256", sa.String(64)),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("labelled_by", sa.String(128)),
        sa.Column("labelled_at", sa.Float),
    )


def downgrade() -> None:
    for table in ("abuse_events", "recordings", "live_calls", "cdr"):
        op.drop_table(table)
