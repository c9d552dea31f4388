"""The anomaly tracker on a real SQLite file: Alembic migrations, one record per (pipeline,
feature, kind) with recurrences counted and resolved ones reopened, the status transitions, and
the CLI (accept through the ML environment's schema change)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest
from conftest import REPO
from pipeline_fixtures import write_pipeline

from pipeline_lib.anomalies.tracker import (
    NEW,
    RECURRING,
    REOPENED,
    Tracker,
    TrackerError,
)

DAY = dt.date(2017, 1, 1)
NEW_VALUE = {"feature": "payment_type", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "severity": "blocking",
             "description": "Examples contain values missing from the schema: Bitcoin (~4%).", "examples": ["'Bitcoin'"]}
DRIFT = {"feature": "fare", "kind": "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH", "severity": "warning",
         "description": "The Jensen-Shannon divergence is 0.2, above the threshold 0.05.", "examples": ["max 99"]}


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'anomalies.db'}"


def outcomes(filed):
    return [(a["feature"], a["outcome"]) for a in filed]


def test_migrations_create_the_tables_in_a_sqlite_file(db_url, tmp_path):
    Tracker(db_url)
    Tracker(db_url)  # a second start finds the schema current
    with sqlite3.connect(tmp_path / "anomalies.db") as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"anomaly", "anomaly_occurrence", "alembic_version"} <= tables
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("0004",)]


def test_trackers_started_in_parallel_threads_all_work(db_url):
    """Threads of one process (the anomaly UI's requests, dag.test's tasks) each start a tracker;
    alembic keeps its context in module globals, which raced (KeyError: 'script')."""
    Tracker(db_url)
    errors = []

    def start():
        try:
            Tracker(db_url).list()
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(e))

    threads = [threading.Thread(target=start) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_an_existing_database_is_upgraded_with_its_records(db_url):
    from sqlalchemy import text

    old = Tracker(db_url, revision="0001")
    with old.engine.begin() as con:
        con.execute(text("INSERT INTO anomaly (pipeline, feature, kind, description, severity, examples, status, "
                         "first_span, last_span, occurrences, created_at, updated_at) VALUES ('taxi', 'fare', "
                         "'UNEXPECTED_DATA_TYPE', 'strings', 'blocking', '[]', 'open', '2016-12-31', '2016-12-31', 1, "
                         "'2016-12-31 10:00:00', '2016-12-31 10:00:00')"))
    (record,) = Tracker(db_url).list()
    assert (record["feature"], record["status"], record["alert_pending"]) == ("fare", "open", False)
    assert record["opened_by"] is None, "opened before occurrences were recorded"


def test_the_spans_of_open_blocking_records_seen_since_they_opened_are_blocked(db_url):
    """What transform leaves out of training: a record's spans while it is open and blocking; after
    a resolution, only the spans it was found in again."""
    tracker = Tracker(db_url)
    (bad,) = tracker.file("taxi", DAY, "run1", [{**NEW_VALUE, "spans": ["2016-12-11", "2016-12-18"]}])
    tracker.file("taxi", DAY, "run1", [{**DRIFT, "spans": ["2016-12-25"]}])  # a warning blocks nothing
    assert tracker.blocked_spans("taxi") == ["2016-12-11", "2016-12-18"] and tracker.blocked_spans("other") == []
    assert bad["runs"][0]["span"] == DAY.isoformat(), "the run's date; the data spans it was found in apart"
    tracker.resolve(bad["id"], "dana")
    assert tracker.blocked_spans("taxi") == []
    (again,) = tracker.file("taxi", DAY + dt.timedelta(days=7), "run2", [{**NEW_VALUE, "spans": ["2017-01-01"]}])
    assert again["outcome"] == REOPENED and tracker.blocked_spans("taxi") == ["2017-01-01"]
    assert [r["spans"] for r in again["runs"]] == [["2016-12-11", "2016-12-18"], ["2017-01-01"]]


def test_an_alert_stays_pending_until_delivered(db_url):
    tracker = Tracker(db_url)
    (record,) = tracker.file("taxi", DAY, "run1", [NEW_VALUE])
    assert record["alert_pending"] is True
    assert tracker.file("taxi", DAY, "run1", [NEW_VALUE])[0]["alert_pending"] is True, "a failed alert is retried"
    tracker.alerted(record["id"])
    assert tracker.file("taxi", DAY + dt.timedelta(1), "run2", [NEW_VALUE])[0]["alert_pending"] is False
    tracker.resolve(record["id"], "alice")
    assert tracker.file("taxi", DAY + dt.timedelta(2), "run3", [NEW_VALUE])[0]["alert_pending"] is True


def test_a_recurrence_counts_links_the_run_and_reopens_a_resolved_one(db_url):
    tracker = Tracker(db_url)
    first = tracker.file("taxi", DAY, "run1", [NEW_VALUE, DRIFT], owner="ml-platform", run_url="http://ui/run1",
                         statistics="/stats/1")
    assert outcomes(first) == [("payment_type", NEW), ("fare", NEW)]
    again = tracker.file("taxi", DAY + dt.timedelta(1), "run2", [NEW_VALUE])
    assert outcomes(again) == [("payment_type", RECURRING)]
    assert tracker.file("taxi", DAY + dt.timedelta(1), "run2", [NEW_VALUE])[0]["occurrences"] == 2, \
        "a retried task does not count twice"
    (record,) = tracker.list(feature="payment_type")
    assert record["occurrences"] == 2 and record["status"] == "open" and record["owner"] == "ml-platform"
    assert [r["run_id"] for r in record["runs"]] == ["run1", "run2"]
    assert record["runs"][0]["run_url"] == "http://ui/run1" and record["runs"][0]["statistics"] == "/stats/1"
    assert (record["first_span"], record["last_span"]) == ("2017-01-01", "2017-01-02")
    assert len(tracker.list(pipeline="taxi")) == 2
    assert tracker.file("other", DAY, "run1", [NEW_VALUE])[0]["outcome"] == NEW, "per pipeline"

    tracker.resolve(record["id"], "alice", note="upstream fixed the export")
    assert tracker.list(status="open", pipeline="taxi", feature="payment_type") == []
    reopened = tracker.file("taxi", DAY + dt.timedelta(2), "run3", [NEW_VALUE])
    assert outcomes(reopened) == [("payment_type", REOPENED)]
    assert reopened[0]["status"] == "open" and reopened[0]["occurrences"] == 3 and reopened[0]["resolved_by"] is None


def test_status_moves_and_blocking_records(db_url):
    tracker = Tracker(db_url)
    blocking, warning = tracker.file("taxi", DAY, "run1", [NEW_VALUE, DRIFT])
    assert [a["id"] for a in tracker.open_blocking("taxi")] == [blocking["id"]]
    acked = tracker.ack(blocking["id"], "bob")
    assert acked["status"] == "acknowledged" and acked["owner"] == "bob"
    assert [a["id"] for a in tracker.open_blocking("taxi")] == [blocking["id"]], "acknowledged still blocks"
    with pytest.raises(TrackerError, match="is acknowledged; only open ones can be acknowledged"):
        tracker.ack(blocking["id"], "bob")
    done = tracker.accept(blocking["id"], "carol", schema_diff="+ value: 'Bitcoin'")
    assert (done["status"], done["resolved_by"], done["schema_diff"]) == ("accepted", "carol", "+ value: 'Bitcoin'")
    assert tracker.open_blocking("taxi") == []
    with pytest.raises(TrackerError, match="is accepted; only open or acknowledged ones can be resolved"):
        tracker.resolve(blocking["id"], "bob")
    with pytest.raises(TrackerError, match="no anomaly #999"):
        tracker.get(999)
    with pytest.raises(TrackerError, match="severity 'fatal'"):
        tracker.file("taxi", DAY, "run2", [{**DRIFT, "severity": "fatal"}])
    assert tracker.get(warning["id"])["occurrences"] == 1, "the refused filing left nothing behind"


def cli(db_url, *args, **env):
    return subprocess.run([sys.executable, "-m", "pipeline_lib.anomalies", "--db", db_url, *args],
                          capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, check=False)


def test_cli_lists_shows_and_works_anomalies(db_url, tmp_path):
    config = write_pipeline(tmp_path / "pipelines")
    shutil.copy(REPO / "pipelines" / "taxi_tips" / "schema.pbtxt", config.parent)
    schema_before = (config.parent / "schema.pbtxt").read_text()
    tracker = Tracker(db_url)
    empty = {"feature": "(data)", "kind": "EMPTY_SPAN", "severity": "blocking", "examples": [],
             "description": "the span has no rows"}
    drift, empty = tracker.file("taxi_tips", DAY, "run1", [DRIFT, empty])

    listed = cli(db_url, "list", "--pipeline", "taxi_tips")
    assert listed.returncode == 0
    assert f"#{drift['id']}" in listed.stdout and "taxi_tips/fare: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in listed.stdout
    shown = cli(db_url, "show", str(drift["id"]))
    assert "above the threshold 0.05" in shown.stdout and "run1" in shown.stdout

    env = {"PIPELINES_DIR": str(tmp_path / "pipelines")}
    accepted = cli(db_url, "accept", str(drift["id"]), "--by", "dana", **env)
    assert accepted.returncode == 0, accepted.stderr
    assert "no schema change" in accepted.stdout and "accepted" in accepted.stdout and "by dana" in accepted.stdout
    assert (config.parent / "schema.pbtxt").read_text() == schema_before
    refused = cli(db_url, "accept", str(empty["id"]), "--by", "dana", **env)
    assert refused.returncode == 1
    assert "cannot accept anomaly" in refused.stderr and "fix the data and resolve" in refused.stderr
    assert Tracker(db_url).get(empty["id"])["status"] == "open"
    resolved = cli(db_url, "resolve", str(empty["id"]), "--by", "erin", "--note", "reloaded the day")
    assert resolved.returncode == 0 and "resolved" in resolved.stdout
    assert cli(db_url, "list", "--pipeline", "taxi_tips").stdout.strip() == "no anomalies"
    assert "resolved" in cli(db_url, "list", "--all").stdout
    bad = cli(db_url, "ack", "12345")
    assert bad.returncode == 1 and "no anomaly #12345" in bad.stderr
