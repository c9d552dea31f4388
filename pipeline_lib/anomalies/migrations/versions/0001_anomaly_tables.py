"""anomaly and anomaly_occurrence tables

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anomaly",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline", sa.String(250), nullable=False, index=True),
        sa.Column("feature", sa.String(250), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("examples", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("owner", sa.String(250)),
        sa.Column("first_span", sa.Date, nullable=False),
        sa.Column("last_span", sa.Date, nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by", sa.String(250)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("note", sa.Text),
        sa.Column("schema_diff", sa.Text),
        sa.UniqueConstraint("pipeline", "feature", "kind", name="uq_anomaly_identity"),
    )
    op.create_table(
        "anomaly_occurrence",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("anomaly_id", sa.Integer, sa.ForeignKey("anomaly.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("span", sa.Date, nullable=False),
        sa.Column("run_url", sa.Text),
        sa.Column("statistics", sa.Text),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("examples", sa.JSON, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("anomaly_occurrence")
    op.drop_table("anomaly")
