"""anomaly_occurrence.spans: the spans a run found the anomaly in; anomaly.opened_by: the occurrence
that last opened the record (new or reopened), so that the spans it blocks are those seen since

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("anomaly_occurrence") as batch:
        batch.add_column(sa.Column("spans", sa.JSON, nullable=True))
    with op.batch_alter_table("anomaly") as batch:
        batch.add_column(sa.Column("opened_by", sa.Integer, nullable=True))
    op.execute("UPDATE anomaly SET opened_by = (SELECT min(o.id) FROM anomaly_occurrence o WHERE o.anomaly_id = anomaly.id)")


def downgrade() -> None:
    with op.batch_alter_table("anomaly") as batch:
        batch.drop_column("opened_by")
    with op.batch_alter_table("anomaly_occurrence") as batch:
        batch.drop_column("spans")
