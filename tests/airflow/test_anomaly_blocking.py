"""The whole taxi DAG (dag.test, real steps) on a span with a payment type never seen before:
run 1 is blocked before transform, alerts once, pushes nothing; run 2 sees the same anomaly (no
new alert) and waits until someone accepts it, then goes through and pushes version 1."""

from __future__ import annotations

import datetime as dt
import threading
import time

import duckdb
import pytest
from conftest import ALERTS
from pipeline_fixtures import write_pipeline

from pipeline_lib import report, serving, settings
from pipeline_lib.anomalies.accepting import accept
from pipeline_lib.anomalies.tracker import Tracker

DAY1 = dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc)
SMALL = {"source": {"window_days": 365}, "training": {"steps": 300}, "alerts": ALERTS}


def run_dag(config_path, logical_date):
    from pipeline_ops.dag_factory import build_dag

    run = build_dag(config_path).test(logical_date=logical_date)
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def accept_when_filed_again(done: list):
    """What a person does on the alert: accept the anomaly once run 2 has filed it (is waiting)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        records = Tracker().list(feature="payment_type")
        if records and records[0]["occurrences"] == 2:
            done.append(accept(Tracker(), records[0]["id"], "dana", note="Bitcoin is a real payment type now"))
            return
        time.sleep(1)


@pytest.mark.usefixtures("airflow_db")
def test_a_blocking_anomaly_holds_the_run_until_accepted(isolated, alert_connections):
    with duckdb.connect(str(settings.warehouse_path())) as con:
        con.execute("INSERT INTO taxi_trips SELECT * REPLACE ('Bitcoin' AS payment_type) FROM taxi_trips "
                    "WHERE trip_start_timestamp >= ? LIMIT 300", [int(dt.datetime(2016, 6, 1).timestamp())])
    config_path = write_pipeline(isolated / "pipelines", {
        **SMALL, "validation": {"wait_timeout_seconds": 3, "poke_interval_seconds": 1}})
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
    assert record["examples"] == ["'Bitcoin'"] and record["runs"][0]["statistics"].endswith("eval.stats.tfrecord")
    text, failed = report.summary("taxi_tips", DAY1.date())
    assert failed and text.endswith(f"NOT PUSHED: blocked by anomalies #{record['id']} payment_type "
                                    "(ENUM_TYPE_UNEXPECTED_STRING_VALUES) (python -m pipeline_lib.anomalies show ID)")
    alerts = [b["text"] for _, b in slack if "anomaly #" in b["text"]]
    assert len(alerts) == 1 and "payment_type ENUM_TYPE_UNEXPECTED_STRING_VALUES" in alerts[0] and "'Bitcoin'" in alerts[0]
    assert len([m for m in mail if "anomaly #" in m["Subject"]]) == 1
    assert any("wait_for_anomalies failed" in b["text"] and "payment_type" in b["text"] for _, b in slack)

    write_pipeline(isolated / "pipelines", {**SMALL, "validation": {"wait_timeout_seconds": 300, "poke_interval_seconds": 2}})
    slack.clear(), mail.clear()
    accepted: list[dict] = []
    person = threading.Thread(target=accept_when_filed_again, args=(accepted,))
    person.start()
    states = run_dag(config_path, DAY1 + dt.timedelta(days=1))
    person.join()
    assert set(states.values()) == {"success"}, states
    (done,) = accepted
    assert done["status"] == "accepted" and done["resolved_by"] == "dana"
    assert '+  value: "Bitcoin"' in done["diff"]
    assert 'value: "Bitcoin"' in (config_path.parent / "schema.pbtxt").read_text()
    assert not any("anomaly #" in b["text"] for _, b in slack), "the recurrence alerted nothing new"
    assert serving.versions(model_dir) == [1]
