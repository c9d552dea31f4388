"""Filing, alerting and blocking in real Airflow (dag.test) with a real SMTP server and a real HTTP
server for the Slack webhook on 127.0.0.1. The findings are validate's results for the seven kinds
of bad data (the ML tests check that validate produces them); each is filed once, alerted once,
blocks as configured, and the run goes on once they are resolved or accepted."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest
from conftest import ALERTS, WEBHOOK_TOKEN
from pipeline_fixtures import write_pipeline

from pipeline_lib.anomalies.accepting import accept
from pipeline_lib.anomalies.tracker import Tracker

DAY1 = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)
STATS = "/artifacts/taxi_tips/runs/2017-01-01/validate/train.stats.tfrecord"


def finding(feature, kind, description, examples, severity="blocking"):
    return {"feature": feature, "kind": kind, "description": description, "severity": severity,
            "examples": examples, "splits": ["train", "eval"], "statistics": STATS}


FINDINGS = [
    finding("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
            "Examples contain values missing from the schema: Bitcoin (~4%).", ["'Bitcoin'"]),
    finding("trip_seconds", "SCHEMA_MISSING_COLUMN", "Column is completely missing", ["absent from all 960 examples"]),
    finding("fare", "UNEXPECTED_DATA_TYPE", "Expected data of type: FLOAT but got STRING", ["'5.65'", "'5.05'"]),
    finding("trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT",
            "The feature was present in fewer examples than expected: minimum fraction = 0.990000, actual = 0.506250",
            ["missing in 474 of 960 examples (49%)"]),
    finding("company", "DRIFT", "company changed against the previous span: largest change of a value's share "
            "(L-infinity) 0.400 > threshold 0.15 (p-value 1.0e-40 < 0.001)", ["'Taxi Affiliation Services' 10% -> 50%"],
            "warning"),
    finding("(data)", "EMPTY_SPAN", "the span has no rows: nothing in the source for window [2016-12-31, 2017-01-01)", []),
    finding("pickup_latitude", "FLOAT_TYPE_BIG_FLOAT", "Unexpectedly high value: 48.5>42.1(upto six significant digits)",
            ["min 41.7", "max 48.5"]),
]


def gate_dag(config_path, findings):
    """validate (its result given) >> file_anomalies >> wait_for_anomalies >> evaluate >> push,
    with the factory's callbacks; push is skipped the way an unblessed model's push is."""
    from airflow.sdk import DAG, chain, get_current_context, task
    from airflow.sdk.exceptions import AirflowSkipException
    from pipeline_ops.alerts import PUSH_REFUSED, task_notifiers
    from pipeline_ops.anomaly_ops import AnomaliesResolvedSensor, FileAnomaliesOperator
    from pipeline_ops.operators import SKIP_REASON

    from pipeline_lib.config import load_config

    alerts = load_config(config_path).alerts
    with DAG("taxi_tips", schedule=None, default_args={"on_failure_callback": task_notifiers(alerts, "failed")}) as dag:
        @task(task_id="validate")
        def validate():
            return {"anomalies": findings, "statistics": {"train": STATS}}

        evaluate_reasons = ["auc = 0.51 fails lower bound 0.6", "binary_accuracy = 0.7 passes"]

        @task(task_id="evaluate")
        def evaluate():
            return {"blessed": False, "reasons": evaluate_reasons}

        @task(task_id="push", on_skipped_callback=task_notifiers(alerts, "skipped: no model pushed", PUSH_REFUSED))
        def push():  # as PushOperator refuses an unblessed model
            get_current_context()["ti"].xcom_push(key=SKIP_REASON, value="not blessed: " + "; ".join(evaluate_reasons))
            raise AirflowSkipException("model not pushed, serving stays at version 3")

        chain(validate(), FileAnomaliesOperator(config_path=str(config_path)),
              AnomaliesResolvedSensor(config_path=str(config_path)), evaluate(), push())
    return dag


def run(config_path, findings, day):
    dag_run = gate_dag(config_path, findings).test(logical_date=DAY1 + dt.timedelta(days=day))
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


@pytest.mark.usefixtures("airflow_db")
def test_filed_once_alerted_once_blocking_until_resolved_or_accepted(isolated, alert_connections, capfd):
    config_path = write_pipeline(isolated / "pipelines", {
        "alerts": ALERTS, "validation": {"wait_timeout_seconds": 3, "poke_interval_seconds": 1}})
    slack, mail = alert_connections["slack"], alert_connections["email"]

    states = run(config_path, FINDINGS, 0)
    assert states == {"validate": "success", "file_anomalies": "success", "wait_for_anomalies": "failed",
                      "evaluate": "upstream_failed", "push": "upstream_failed"}
    records = Tracker().list(pipeline="taxi_tips")
    assert len(records) == 7 and all(r["occurrences"] == 1 and r["status"] == "open" for r in records)
    by_feature = {r["feature"]: r for r in records}

    anomaly_texts = [body["text"] for _, body in slack if "anomaly #" in body["text"]]
    assert len(anomaly_texts) == 7, "one Slack message per new anomaly"
    anomaly_mails = [m for m in mail if "anomaly #" in m["Subject"]]
    assert len(anomaly_mails) == 7 and all(m["To"] == "ml-team@example.com" for m in anomaly_mails)
    for f in FINDINGS:
        record = by_feature[f["feature"]]
        (text,) = [t for t in anomaly_texts if f"#{record['id']}: {f['feature']} {f['kind']}" in t]
        assert "pipeline: taxi_tips" in text and f"kind: {f['kind']}" in text
        assert f"examples: {', '.join(f['examples']) or '-'}" in text
        assert f"/anomaly-tracker/?pipeline=taxi_tips&id={record['id']}" in text
        (message,) = [m for m in anomaly_mails if f"#{record['id']}: {f['feature']}" in m["Subject"]]
        body = message.get_payload()[0].get_payload(decode=True).decode()
        assert f"feature: {f['feature']}" in body and f"/anomaly-tracker/?pipeline=taxi_tips&amp;id={record['id']}" in body
    assert "warning only: the run goes on" in next(t for t in anomaly_texts if "company" in t)
    assert {p for p, _ in slack} == {f"/services/{WEBHOOK_TOKEN}"}

    (failed,) = [body["text"] for _, body in slack if "task wait_for_anomalies failed" in body["text"]]
    assert "blocking anomalies still open after 3 s" in failed
    assert f"#{by_feature['payment_type']['id']} payment_type ENUM_TYPE_UNEXPECTED_STRING_VALUES (open)" in failed
    assert "company" not in failed, "a warning does not block"
    assert any("task wait_for_anomalies failed" in m["Subject"] for m in mail)

    slack.clear(), mail.clear()
    states = run(config_path, FINDINGS, 1)
    assert states["wait_for_anomalies"] == "failed"
    assert not any("anomaly #" in body["text"] for _, body in slack), "a recurrence of an open anomaly is quiet"
    assert not any("anomaly #" in m["Subject"] for m in mail)
    assert {r["occurrences"] for r in Tracker().list(pipeline="taxi_tips")} == {2}

    tracker = Tracker()
    for record in records:
        if record["kind"] == "DRIFT":
            assert accept(tracker, record["id"], "dana")["status"] == "accepted"
        else:
            tracker.resolve(record["id"], "erin", note="reloaded the export")
    slack.clear(), mail.clear()
    states = run(config_path, [], 2)
    assert states == {"validate": "success", "file_anomalies": "success", "wait_for_anomalies": "success",
                      "evaluate": "success", "push": "skipped"}
    (skipped,) = [body["text"] for _, body in slack]
    assert "task push skipped: no model pushed" in skipped and "not blessed: auc = 0.51 fails lower bound 0.6; binary" in skipped
    assert len(mail) == 1 and "task push skipped" in mail[0]["Subject"]

    captured = capfd.readouterr()
    assert WEBHOOK_TOKEN not in captured.out + captured.err, "the webhook secret never reaches the logs"


@pytest.mark.usefixtures("airflow_db")
def test_a_push_is_announced_only_where_on_push_asks(isolated, alert_connections):
    """The factory's push task carries the success notifiers only with `alerts.on_push`; they
    announce the push's reason and serving version (a stand-in push task, the factory's callbacks)."""
    from airflow.sdk import DAG, task
    from pipeline_ops.dag_factory import build_dag

    quiet = build_dag(write_pipeline(isolated / "quiet", {"alerts": ALERTS})).get_task("push")
    assert not quiet.on_success_callback
    factory_push = build_dag(write_pipeline(isolated / "pipelines", {"alerts": {**ALERTS, "on_push": True}})).get_task("push")

    with DAG("taxi_tips", schedule=None) as dag:
        @task(task_id="push", on_success_callback=factory_push.on_success_callback)
        def push():
            return {"pushed": True, "version": 4, "reason": "blessed"}

        push()
    assert dag.test(logical_date=DAY1).get_task_instance("push").state == "success"
    (text,) = [body["text"] for _, body in alert_connections["slack"]]
    assert "task push succeeded" in text and "blessed: serving version 4" in text
    (mail,) = alert_connections["email"]
    assert "task push succeeded" in mail["Subject"] and mail["To"] == "ml-team@example.com"
    assert "blessed: serving version 4" in mail.get_payload()[0].get_payload(decode=True).decode()


@pytest.mark.usefixtures("airflow_db")
def test_an_alert_that_could_not_be_sent_goes_out_with_the_next_run(isolated, alert_connections, monkeypatch):
    import json
    import os
    import socket

    config_path = write_pipeline(isolated / "pipelines", {
        "alerts": ALERTS, "validation": {"wait_timeout_seconds": 1, "poke_interval_seconds": 1}})
    working = os.environ["AIRFLOW_CONN_SMTP_ALERTS"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps({**json.loads(working), "port": closed_port}))
    assert run(config_path, FINDINGS[:1], 0)["file_anomalies"] == "failed"
    (record,) = Tracker().list()
    assert record["alert_pending"] is True

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", working)
    alert_connections["slack"].clear()
    run(config_path, FINDINGS[:1], 1)
    (message,) = [m for m in alert_connections["email"] if "anomaly #" in m["Subject"]]
    assert f"open blocking anomaly #{record['id']}: payment_type" in message["Subject"]
    assert len([b for _, b in alert_connections["slack"] if "anomaly #" in b["text"]]) == 1
    assert Tracker().get(record["id"])["alert_pending"] is False


def drift(statistic, feature="fare"):
    return {**finding(feature, "DRIFT", f"{feature} changed against the previous span: Wasserstein distance / "
                      f"interdecile range {statistic} > threshold 0.1", ["p50 8 -> 9"], "warning"),
            "statistic": statistic}


def new_values(*values):
    return {**finding("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "Examples contain values missing "
                      "from the schema", list(values)), "values": list(values)}


@pytest.mark.usefixtures("airflow_db")
def test_alerts_wait_for_a_channel_then_go_one_per_cause_and_again_when_worse(isolated, alert_connections):
    """No channel: records stay not alerted (and the DAG's doc says so); with a channel, every
    pending record goes out, one message per feature; an acknowledged record that gets materially
    worse (a statistic beyond the alerted one by the margin, a new value) reopens and alerts."""
    from pipeline_ops.dag_factory import build_dag

    slack, mail = alert_connections["slack"], alert_connections["email"]
    quick = {"validation": {"wait_timeout_seconds": 1, "poke_interval_seconds": 1}}
    config_path = write_pipeline(isolated / "pipelines", quick)
    assert "alerts go nowhere" in build_dag(config_path).doc_md
    run(config_path, [new_values("'Bitcoin'"), drift(0.2, "payment_type"), drift(0.2)], 0)
    records = Tracker().list(pipeline="taxi_tips")
    assert len(records) == 3 and all(r["alert_pending"] for r in records), "not alerted: nowhere to send"
    assert not slack and not mail

    write_pipeline(isolated / "pipelines", {**quick, "alerts": ALERTS})
    assert "alerts go nowhere" not in build_dag(config_path).doc_md
    states = run(config_path, [], 1)
    assert states["wait_for_anomalies"] == "success", "nothing filed in this run blocks it"
    texts = [b["text"] for _, b in slack if "anomaly #" in b["text"]]
    assert len(texts) == 2 and len([m for m in mail if "anomaly #" in m["Subject"]]) == 2, "one per feature"
    (payment,) = [t for t in texts if "payment_type" in t]
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES, DRIFT" in payment and "blocking" in payment.splitlines()[0]
    assert not any(r["alert_pending"] for r in Tracker().list(pipeline="taxi_tips"))

    tracker = Tracker()
    for r in tracker.list(pipeline="taxi_tips"):
        tracker.ack(r["id"], "dana")
    slack.clear(), mail.clear()
    run(config_path, [new_values("'Bitcoin'"), drift(0.25)], 2)
    assert not any("anomaly #" in b["text"] for _, b in slack), "not materially worse: quiet"
    run(config_path, [new_values("'Bitcoin'", "'Dogecoin'"), drift(0.96)], 3)
    texts = [b["text"] for _, b in slack if "anomaly #" in b["text"]]
    assert len(texts) == 2 and all("worse" in t.splitlines()[0] for t in texts)
    assert {r["feature"]: r["status"] for r in Tracker().list(pipeline="taxi_tips", kind="DRIFT")} == {
        "fare": "open", "payment_type": "acknowledged"}


@pytest.mark.usefixtures("airflow_db")
def test_a_span_whose_data_never_arrives_is_filed_as_no_data(isolated, alert_connections):
    from pipeline_ops.dag_factory import build_dag

    dag = build_dag(write_pipeline(isolated / "pipelines", {"alerts": ALERTS}))
    sensor = dag.get_task("wait_for_data")
    sensor.mode, sensor.poke_interval, sensor.timeout = "poke", 0.2, 1
    dag_run = dag.test(logical_date=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert dag_run.get_task_instance("wait_for_data").state == "failed"
    (record,) = Tracker().list(pipeline="taxi_tips")
    assert (record["feature"], record["kind"], record["severity"]) == ("(data)", "NO_DATA", "blocking")
    assert "no data arrived for span 2030-01-01" in record["description"] and "2029-12-29" in record["description"]
    texts = [b["text"] for _, b in alert_connections["slack"]]
    assert len([t for t in texts if "anomaly #" in t and "NO_DATA" in t]) == 1
    assert any("task wait_for_data failed" in t for t in texts)


@pytest.fixture
def info_logs():
    """Airflow's logging at INFO for one test (the suite's is WARNING), then back."""
    from airflow.logging_config import configure_logging

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
        configure_logging()
        yield
    configure_logging()


@pytest.mark.usefixtures("airflow_db", "info_logs")
def test_links_in_alerts_logs_and_the_tracker_follow_airflows_base_url(isolated, alert_connections, monkeypatch, capfd):
    """[api] base_url (AIRFLOW__API__BASE_URL) is where every link points: the anomaly alert's
    tracker link, the failure alert's run link, the run recorded in the tracker and the waiting
    sensor's log."""
    base = "https://airflow.example.com/team"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", base + "/")
    config_path = write_pipeline(isolated / "pipelines", {
        "alerts": ALERTS, "validation": {"wait_timeout_seconds": 1, "poke_interval_seconds": 1}})
    assert run(config_path, FINDINGS[:1], 0)["wait_for_anomalies"] == "failed"
    logs = "".join(capfd.readouterr())
    (record,) = Tracker().list()
    tracker_link = f"{base}/anomaly-tracker/?pipeline=taxi_tips&id={record['id']}"
    (alert,) = [b["text"] for _, b in alert_connections["slack"] if "anomaly #" in b["text"]]
    assert f"tracker: {tracker_link}" in alert
    (message,) = [m for m in alert_connections["email"] if "anomaly #" in m["Subject"]]
    assert f'href="{tracker_link.replace("&", "&amp;")}"' in message.get_payload()[0].get_payload(decode=True).decode()
    run_id, run_link = record["runs"][0]["run_id"], record["runs"][0]["run_url"]
    assert run_link == f"{base}/dags/taxi_tips/runs/{quote(run_id)}"
    (failed,) = [b["text"] for _, b in alert_connections["slack"] if "task wait_for_anomalies failed" in b["text"]]
    assert f"run: {base}/dags/taxi_tips/runs/{quote(run_id)}" in failed
    assert tracker_link in logs, "the sensor logs where to resolve it"
    assert "localhost" not in alert + failed + run_link + logs
