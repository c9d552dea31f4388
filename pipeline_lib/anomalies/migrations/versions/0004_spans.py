"""anomaly_occurrence.spans: the spans a run found the anomaly in; anomaly.opened_at: when the
record last became open, so that the spans it blocks are those seen since

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
        batch.add_column(sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE anomaly SET opened_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("anomaly") as batch:
        batch.drop_column("opened_at")
    with op.batch_alter_table("anomaly_occurrence") as batch:
        batch.drop_column("spans")
