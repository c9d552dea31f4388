"""Tables of the tracker. Change them only together with a new migration in migrations/versions/."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("open", "acknowledged", "resolved", "accepted")
OPEN = ("open", "acknowledged")  # still needs someone; blocking ones hold their runs
SEVERITIES = ("blocking", "warning")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Base(DeclarativeBase):
    pass


class Anomaly(Base):
    """One data problem of a pipeline: the same (pipeline, feature, kind) seen again is a recurrence
    of this record, never a second one."""

    __tablename__ = "anomaly"
    __table_args__ = (UniqueConstraint("pipeline", "feature", "kind", name="uq_anomaly_identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(250), index=True)
    feature: Mapped[str] = mapped_column(String(250))
    kind: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(20))
    examples: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    owner: Mapped[str | None] = mapped_column(String(250))
    first_span: Mapped[dt.date] = mapped_column(Date)
    last_span: Mapped[dt.date] = mapped_column(Date)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    opened_by: Mapped[int | None] = mapped_column(Integer, doc="the occurrence that last opened it (new or reopened)")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    resolved_by: Mapped[str | None] = mapped_column(String(250))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    schema_diff: Mapped[str | None] = mapped_column(Text, doc="what `accept` changed in the schema")
    alert_pending: Mapped[bool] = mapped_column(Boolean, default=False,
                                                doc="new or reopened, and its alert not yet delivered")
    statistic: Mapped[float | None] = mapped_column(Float, doc="drift/skew statistic when last alerted")
    runs: Mapped[list[Occurrence]] = relationship(back_populates="anomaly", order_by="Occurrence.id",
                                                  cascade="all, delete-orphan")

    def as_dict(self) -> dict:
        out = {c.name: getattr(self, c.name) for c in self.__table__.columns}
        out["runs"] = [r.as_dict() for r in self.runs]
        return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in out.items()}


class Occurrence(Base):
    """A run that saw the anomaly: links to the run and to the statistics it was found in."""

    __tablename__ = "anomaly_occurrence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    anomaly_id: Mapped[int] = mapped_column(ForeignKey("anomaly.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(String(250))
    span: Mapped[dt.date] = mapped_column(Date)
    spans: Mapped[list | None] = mapped_column(JSON, doc="the spans the run found it in")
    run_url: Mapped[str | None] = mapped_column(Text)
    statistics: Mapped[str | None] = mapped_column(Text, doc="statistics file(s) of that run")
    description: Mapped[str] = mapped_column(Text)
    examples: Mapped[list] = mapped_column(JSON, default=list)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    anomaly: Mapped[Anomaly] = relationship(back_populates="runs")

    def as_dict(self) -> dict:
        out = {c.name: getattr(self, c.name) for c in self.__table__.columns if c.name != "anomaly_id"}
        return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in out.items()}
