"""The whole taxi DAG (dag.test, real steps) when a week's new span brings a payment type never seen
before: run 1 is blocked before transform, alerts once, pushes nothing; run 2 (the next week, clean)
trains without the blocked span, which stays out of training while its anomaly is open, and pushes
version 1; once someone accepts it, the span is back in the window."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from conftest import ALERTS
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, report, serving, settings
from pipeline_lib.anomalies.accepting import accept
from pipeline_lib.anomalies.tracker import Tracker

DAY1 = dt.datetime(2016, 12, 18, tzinfo=dt.UTC)  # a Sunday: its new span is the week before
BAD_SPAN = "2016-12-11"
SMALL = {"start_date": "2016-01-03", "source": {"window_days": 365}, "training": {"steps": 300}, "alerts": ALERTS,
         "validation": {"wait_timeout_seconds": 3, "poke_interval_seconds": 1}}


def run_dag(config_path, logical_date):
    from pipeline_ops.dag_factory import build_dag

    run = build_dag(config_path).test(logical_date=logical_date)
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.mark.usefixtures("airflow_db")
def test_a_blocked_span_holds_its_run_and_stays_out_of_training_until_accepted(isolated, alert_connections):
    start = int(dt.datetime(2016, 12, 11, tzinfo=dt.UTC).timestamp())
    with duckdb.connect(str(settings.warehouse_path())) as con:  # the bad week's first trip paid in Bitcoin
        con.execute("UPDATE taxi_trips SET payment_type = 'Bitcoin' WHERE trip_start_timestamp = "
                    "(SELECT min(trip_start_timestamp) FROM taxi_trips WHERE trip_start_timestamp >= ?)", [start])
    config_path = write_pipeline(isolated / "pipelines", SMALL)
    slack, mail = alert_connections["slack"], alert_connections["email"]
    model_dir = settings.serving_root() / "taxi_tips"

    states = run_dag(config_path, DAY1)
    assert states == {"wait_for_data": "success", "ingest": "success", "validate": "success",
                      "file_anomalies": "success", "wait_for_anomalies": "failed", "transform": "upstream_failed",
                      "file_transform_anomalies": "upstream_failed", "wait_for_transform_anomalies": "upstream_failed",
                      "train": "upstream_failed",
                      "evaluate": "upstream_failed", "infra_validate": "upstream_failed",
                      "push": "upstream_failed"}
    assert serving.versions(model_dir) == [], "nothing pushed from a blocked run"
    (record,) = Tracker().list(pipeline="taxi_tips")
    assert (record["feature"], record["kind"]) == ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")
    assert record["examples"] == ["'Bitcoin'"] and record["runs"][0]["spans"] == [BAD_SPAN]
    assert record["runs"][0]["statistics"].endswith(f"{BAD_SPAN}/statistics/stats.tfrecord")
    text, failed = report.summary("taxi_tips", DAY1.date())
    assert failed and text.endswith(f"NOT PUSHED: blocked by anomalies #{record['id']} payment_type "
                                    "(ENUM_TYPE_UNEXPECTED_STRING_VALUES) (python -m pipeline_lib.anomalies show ID)")
    alerts = [b["text"] for _, b in slack if "anomaly #" in b["text"]]
    assert len(alerts) == 1 and "payment_type ENUM_TYPE_UNEXPECTED_STRING_VALUES" in alerts[0] and "'Bitcoin'" in alerts[0]
    assert len([m for m in mail if "anomaly #" in m["Subject"]]) == 1
    assert any("wait_for_anomalies failed" in b["text"] and "payment_type" in b["text"] for _, b in slack)
    assert Tracker().blocked_spans("taxi_tips") == [BAD_SPAN]

    slack.clear(), mail.clear()
    day2 = DAY1 + dt.timedelta(days=7)
    states = run_dag(config_path, day2)
    assert set(states.values()) == {"success"}, states
    transform = artifacts.read_result(artifacts.step_dir("taxi_tips", day2.date(), "transform"))
    assert transform["excluded"] == [BAD_SPAN] and BAD_SPAN not in [s["span"] for s in transform["spans"]]
    assert serving.versions(model_dir) == [1] and serving.record(model_dir, 1)["spans"]["excluded"] == [BAD_SPAN]
    assert not any("anomaly #" in b["text"] for _, b in slack), "the clean week alerted nothing"

    done = accept(Tracker(), record["id"], "dana", note="Bitcoin is a real payment type now")
    assert done["status"] == "accepted" and done["resolved_by"] == "dana"
    assert '+  value: "Bitcoin"' in done["diff"]
    assert 'value: "Bitcoin"' in (config_path.parent / "schema.pbtxt").read_text()
    assert Tracker().blocked_spans("taxi_tips") == [], "accepted: the span is training data again"
