"""The CDR names the call's department and direction, so that call history can be searched by them (issue #14).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before migrations (b2bua/storage/schema.py) had its missing tables made from
    # the newest table definitions: what is there already is not added twice.
    found = sa.inspect(op.get_bind())
    columns = {c["name"] for c in found.get_columns("cdr")}
    indexes = {i["name"] for i in found.get_indexes("cdr")}
    with op.batch_alter_table("cdr") as batch:  # batch: SQLite alters a table by copying it
        if "department" not in columns:
            batch.add_column(sa.Column("department", sa.String(128)))
        if "direction" not in columns:
            batch.add_column(sa.Column("direction", sa.String(16)))
        if "ix_cdr_department" not in indexes:
            batch.create_index("ix_cdr_department", ["department"])


def downgrade() -> None:
    with op.batch_alter_table("cdr") as batch:
        batch.drop_index("ix_cdr_department")
        batch.drop_column("direction")
        batch.drop_column("department")
