"""After validate (and after transform, for the label): file the step's anomalies in the tracker and
alert the new, reopened and worse ones (FileAnomaliesOperator); then hold the run while blocking
ones stay open (AnomaliesResolvedSensor, reschedule mode: no worker slot is held while it waits).
`file_no_data` files the span whose data never arrived."""

from __future__ import annotations

import logging

from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSensorTimeout
from sqlalchemy.engine import URL

from pipeline_lib import artifacts
from pipeline_lib.anomalies.tracker import Tracker
from pipeline_lib.config import load_config
from pipeline_ops import alerts
from pipeline_ops.operators import span_date

NO_DATA = "NO_DATA"

TRACKER_CONN_ID = "anomaly_tracker"


def tracker() -> Tracker:
    """The tracker's database: the `anomaly_tracker` connection when there is one (a postgres
    connection, or any type with extra {"url": ...}), else PIPELINE_ANOMALY_DB or the SQLite file."""
    try:
        conn = BaseHook.get_connection(TRACKER_CONN_ID)
    except AirflowNotFoundException:
        return Tracker()
    url = conn.extra_dejson.get("url") or URL.create(
        "postgresql", username=conn.login, password=conn.password, host=conn.host, port=conn.port,
        database=conn.schema)
    return Tracker(url if isinstance(url, str) else url.render_as_string(hide_password=False))


def file_and_alert(config, context, findings: list[dict], statistics: str | None, log, task: str) -> list[dict]:
    """File one run's findings, then send every pending alert of the pipeline (these, and earlier
    ones that failed or had no channel), one message per feature. With no channel configured they
    stay pending, shown as not alerted, and go out once a channel exists. The records filed are
    kept in the run's folder under `task` (the step or sensor that found them), for the report."""
    run_id = context["run_id"]
    t = tracker()
    filed = t.file(config.name, span_date(context), run_id, findings, owner=config.owner,
                   run_url=alerts.run_url(context["dag"].dag_id, run_id), statistics=statistics,
                   worse_margin=config.validation.worse_margin)
    kept = artifacts.filed_anomalies_path(config.name, span_date(context), task)
    kept.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(kept, [{k: r[k] for k in ("id", "feature", "kind", "severity", "status", "description")}
                                for r in filed])
    for record in filed:
        log.info("anomaly #%s %s/%s %s: %s (%s)", record["id"], record["feature"], record["kind"],
                 record["severity"], record["outcome"], record["status"])
    pending = t.pending_alerts(config.name)
    if pending and not alerts.channels(config.alerts):
        log.warning("NOT alerted, no alert channel configured (alerts.slack_conn_id, alerts.email_to): "
                    "anomalies %s stay pending", ", ".join(f"#{r['id']}" for r in pending))
        return filed
    outcomes = {r["id"]: r["outcome"] for r in filed}
    by_feature: dict[str, list[dict]] = {}
    for record in pending:
        by_feature.setdefault(record["feature"], []).append({**record, "outcome": outcomes.get(record["id"], "open")})
    for feature, records in by_feature.items():
        alerts.send(config.alerts, *alerts.anomaly_message(records))
        for record in records:
            t.alerted(record["id"])
        log.info("alerted anomalies %s (%s) via %s", ", ".join(f"#{r['id']}" for r in records), feature,
                 ", ".join(alerts.channels(config.alerts)))
    return filed


class FileAnomaliesOperator(BaseOperator):
    """Files a step's findings (validate's; transform's label findings) and alerts them. An alert
    that fails fails the task and stays pending: the retry or the next run sends it (at least
    once). Returns the filed ids and the blocking open ones."""

    ui_color = "#fde8e8"

    def __init__(self, *, config_path: str, step: str = "validate", **kwargs):
        kwargs.setdefault("task_id", "file_anomalies" if step == "validate" else f"file_{step}_anomalies")
        super().__init__(**kwargs)
        self.config_path = config_path
        self.step = step

    def execute(self, context):
        config = load_config(self.config_path)
        result = context["ti"].xcom_pull(task_ids=self.step)
        filed = file_and_alert(config, context, result["anomalies"], result.get("statistics"), self.log, self.step)
        blocking = [r["id"] for r in filed if r["severity"] == "blocking" and r["status"] in ("open", "acknowledged")]
        return {"filed": [r["id"] for r in filed], "blocking": blocking}


def no_data_filer(config_path: str):
    """wait_for_data's failure callback: a span whose data never arrived is an anomaly (kind
    NO_DATA), filed and alerted like the others; the task still fails."""

    def file_no_data(context) -> None:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        if not isinstance(context.get("exception"), AirflowSensorTimeout):
            return
        config = load_config(config_path)
        finding = {"feature": "(data)", "kind": NO_DATA, "severity": config.validation.severity_of("(data)", NO_DATA),
                   "description": f"no data arrived for span {span_date(context)}: {context['exception']}",
                   "examples": [], "statistics": None}
        file_and_alert(config, context, [finding], None, logging.getLogger(__name__), context["ti"].task_id)

    return file_no_data


class AnomaliesResolvedSensor(BaseSensorOperator):
    """Succeeds once none of the run's blocking anomalies is open (resolved or accepted); fails
    after the config's wait_timeout_seconds naming the ones still open."""

    ui_color = "#fff4e5"

    def __init__(self, *, config_path: str, step: str = "validate", **kwargs):
        config = load_config(config_path)
        validation = config.validation
        kwargs.setdefault("task_id", "wait_for_anomalies" if step == "validate" else f"wait_for_{step}_anomalies")
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("timeout", validation.wait_timeout_seconds)
        kwargs.setdefault("poke_interval", validation.poke_interval_seconds)
        super().__init__(**kwargs)
        self.pipeline = config.name
        self.filing_task = "file_anomalies" if step == "validate" else f"file_{step}_anomalies"
        self.still_open: list[dict] = []

    def poke(self, context) -> bool:
        ids = context["ti"].xcom_pull(task_ids=self.filing_task)["blocking"]
        self.still_open = tracker().open_blocking(self.pipeline, ids) if ids else []
        for a in self.still_open:
            self.log.info("waiting for anomaly #%s %s/%s (%s): %s", a["id"], a["feature"], a["kind"], a["status"],
                          alerts.page_url(a["pipeline"], a["id"]))
        return not self.still_open

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout as e:
            reasons = "; ".join(f"#{a['id']} {a['feature']} {a['kind']} ({a['status']})" for a in self.still_open)
            raise AirflowSensorTimeout(f"blocking anomalies still open after {self.timeout:.0f} s: {reasons}. {e}") from None
