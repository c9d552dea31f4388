"""Filing and working with anomalies.

Recurrence rule: the same (pipeline, feature, kind) never opens a second record. Seen again it
counts one more occurrence and links the new run; an open or acknowledged record stays as it is
(no new alert) unless it is materially worse, a resolved or accepted one is reopened (and alerted
again). Reopening an accepted record is deliberate: `accept` changed the schema so that the data it
saw passes, so the same anomaly again means data the acceptance did not cover (another new value,
drift beyond it). Materially worse: a statistic (drift, skew) above the one last alerted by more
than `worse_margin`, or a value (`values`: e.g. unexpected strings) not seen in any earlier run; an
open or acknowledged record is then reopened and alerted again (outcome "worse").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, selectinload, sessionmaker

from pipeline_lib import settings
from pipeline_lib.anomalies.models import OPEN, SEVERITIES, Anomaly, Occurrence, now

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# alembic's command API keeps its context in module globals: one migration at a time per process
_MIGRATING = threading.Lock()
NEW, REOPENED, RECURRING, WORSE = "new", "reopened", "recurring", "worse"


class TrackerError(ValueError):
    """A request the tracker refuses (unknown id, a transition that does not exist)."""


def _sqlite_foreign_keys(dbapi_connection, _record):
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _worse(record: Anomaly, finding: dict, margin: float) -> bool:
    """Beyond the alerted statistic by `margin`, or a value no earlier run showed."""
    statistic = finding.get("statistic")
    if statistic is not None and record.statistic is not None and statistic > record.statistic * (1 + margin):
        return True
    seen = {v for r in record.runs for v in r.examples}
    return bool(set(finding.get("values") or ()) - seen)


class Tracker:
    """The tracker on one database; the schema is migrated to the newest revision on first use
    (`revision` pins an older one, for testing upgrades)."""

    def __init__(self, url: str | None = None, revision: str = "head"):
        url = make_url(url or settings.anomaly_db_url())
        sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if sqlite_file:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one writer at a time: pipelines filing at once wait for it
        self.engine = create_engine(url, **({"connect_args": {"timeout": settings.SQLITE_LOCK_WAIT_S}}
                                            if sqlite_file else {}))
        self._migration_lock = Path(f"{url.database}.migrate.lock") if sqlite_file else None
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_foreign_keys)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.migrate(revision)

    def migrate(self, revision: str = "head") -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with _MIGRATING, self._between_processes(), self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

    @contextlib.contextmanager
    def _between_processes(self):
        """One migration at a time across processes on a SQLite file: its DDL is not transactional
        under pysqlite, so tasks of several pipelines starting on a new file all created the tables
        ("table anomaly already exists"). Postgres is migrated once, by the stack's init."""
        if self._migration_lock is None:
            yield
            return
        with open(self._migration_lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def session(self) -> Session:
        return self._session()

    # -- filing ---------------------------------------------------------------------------------

    def file(self, pipeline: str, span: dt.date, run_id: str, findings: list[dict], *,
             owner: str | None = None, run_url: str | None = None, statistics: str | None = None,
             worse_margin: float = 0.5) -> list[dict]:
        """Record one run's findings (dicts with feature, kind, description, severity, examples and
        optionally the data spans and the statistics they were found in, else the run's `span` (its
        logical date) and `statistics`; a `statistic` value and new `values` to judge a recurrence by). Returns each
        record with `outcome` (new, reopened, worse or recurring) and `alert_pending`: a new,
        reopened or worse record stays pending until `alerted`, so an alert that failed or had no
        channel goes out later."""
        out = []
        with self.session() as s, s.begin():
            for f in findings:
                if f["severity"] not in SEVERITIES:
                    raise TrackerError(f"severity {f['severity']!r} is not one of {SEVERITIES}")
                record = s.scalars(select(Anomaly).where(
                    Anomaly.pipeline == pipeline, Anomaly.feature == f["feature"], Anomaly.kind == f["kind"])
                ).one_or_none()
                examples = list(f.get("examples") or [])
                found_in = sorted(f.get("spans") or [span.isoformat()])
                if record is None:
                    record = Anomaly(pipeline=pipeline, feature=f["feature"], kind=f["kind"], status="open",
                                     owner=owner, first_span=span, last_span=span, occurrences=0, alert_pending=True)
                    s.add(record)
                    outcome = NEW
                elif record.status in OPEN and not _worse(record, f, worse_margin):
                    outcome = RECURRING
                elif record.status in OPEN:
                    outcome = WORSE
                    record.status, record.alert_pending = "open", True
                else:
                    outcome = REOPENED
                    record.status, record.resolved_by, record.resolved_at = "open", None, None
                    record.alert_pending = True
                record.description, record.severity, record.examples = f["description"], f["severity"], examples
                if outcome != RECURRING and f.get("statistic") is not None:
                    record.statistic = f["statistic"]
                record.last_span, record.updated_at = max(record.last_span, span), now()
                already = any(r.run_id == run_id for r in record.runs)  # a retried task files again
                if not already:
                    record.occurrences += 1
                    occurrence = Occurrence(run_id=run_id, span=span, spans=found_in, run_url=run_url,
                                            statistics=f.get("statistics") or statistics,
                                            description=f["description"], examples=examples)
                    record.runs.append(occurrence)
                    s.flush()
                    if outcome in (NEW, REOPENED):  # the spans it blocks are those seen from here on
                        record.opened_by = occurrence.id
                s.flush()
                out.append({**record.as_dict(), "outcome": outcome})
        return out

    def pending_alerts(self, pipeline: str) -> list[dict]:
        """Records whose alert has not gone out (failed, or no channel was configured)."""
        with self.session() as s:
            query = select(Anomaly).options(selectinload(Anomaly.runs)).where(
                Anomaly.pipeline == pipeline, Anomaly.alert_pending.is_(True)).order_by(Anomaly.id)
            return [a.as_dict() for a in s.scalars(query)]

    def alerted(self, anomaly_id: int) -> None:
        with self.session() as s, s.begin():
            self._record(s, anomaly_id).alert_pending = False

    # -- reading --------------------------------------------------------------------------------

    def list(self, *, pipeline: str | None = None, status: str | list[str] | None = None,
             severity: str | None = None, feature: str | None = None, kind: str | None = None) -> list[dict]:
        query = select(Anomaly).options(selectinload(Anomaly.runs)).order_by(Anomaly.updated_at.desc(), Anomaly.id.desc())
        statuses = [status] if isinstance(status, str) else status
        for column, value in ((Anomaly.pipeline, pipeline), (Anomaly.severity, severity),
                              (Anomaly.feature, feature), (Anomaly.kind, kind)):
            if value:
                query = query.where(column == value)
        if statuses:
            query = query.where(Anomaly.status.in_(statuses))
        with self.session() as s:
            return [a.as_dict() for a in s.scalars(query)]

    def get(self, anomaly_id: int) -> dict:
        with self.session() as s:
            return self._record(s, anomaly_id).as_dict()

    def open_blocking(self, pipeline: str, ids: list[int] | None = None) -> list[dict]:
        """Blocking records still open (among `ids` if given): what holds a run before transform."""
        found = self.list(pipeline=pipeline, status=list(OPEN), severity="blocking")
        return [a for a in found if ids is None or a["id"] in ids]

    def blocked_spans(self, pipeline: str) -> list[str]:
        """The spans that open blocking records were found in since they last became open: they
        stay out of training until resolved or accepted."""
        query = select(Occurrence.spans).join(Anomaly).where(
            Anomaly.pipeline == pipeline, Anomaly.status.in_(OPEN), Anomaly.severity == "blocking",
            Occurrence.id >= Anomaly.opened_by)
        with self.session() as s:  # (occurrences filed before spans were recorded have none)
            return sorted({name for found_in in s.scalars(query) for name in found_in or []})

    # -- working --------------------------------------------------------------------------------

    def ack(self, anomaly_id: int, who: str, note: str | None = None) -> dict:
        """Someone owns it now; a blocking one still blocks until resolved or accepted."""
        return self._move(anomaly_id, ("open",), "acknowledged", who, note, owner=who)

    def resolve(self, anomaly_id: int, who: str, note: str | None = None) -> dict:
        """The data was fixed; a recurrence reopens it."""
        return self._move(anomaly_id, OPEN, "resolved", who, note)

    def accept(self, anomaly_id: int, who: str, schema_diff: str, note: str | None = None) -> dict:
        """The data changed and that is fine: `schema_diff` is the change made to the schema."""
        return self._move(anomaly_id, OPEN, "accepted", who, note, schema_diff=schema_diff)

    def _record(self, s: Session, anomaly_id: int) -> Anomaly:
        record = s.get(Anomaly, anomaly_id, options=[selectinload(Anomaly.runs)])
        if record is None:
            raise TrackerError(f"no anomaly #{anomaly_id}")
        return record

    def _move(self, anomaly_id, allowed, status, who, note, **fields) -> dict:
        if not who:
            raise TrackerError("say who does it (--by / the logged-in user)")
        with self.session() as s, s.begin():
            record = self._record(s, anomaly_id)
            if record.status not in allowed:
                raise TrackerError(f"anomaly #{anomaly_id} is {record.status}; only {' or '.join(allowed)} "
                                   f"ones can be {status}")
            record.status, record.updated_at = status, now()
            if status in ("resolved", "accepted"):
                record.resolved_by, record.resolved_at = who, now()
            if note:
                record.note = note
            for key, value in fields.items():
                setattr(record, key, value)
            s.flush()
            return record.as_dict()
