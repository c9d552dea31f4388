"""anomaly.alert_pending: a new or reopened anomaly whose alert is not delivered yet

Records that exist already were alerted when they were filed.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("anomaly") as batch:
        batch.add_column(sa.Column("alert_pending", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("anomaly") as batch:
        batch.drop_column("alert_pending")
