"""After validate: file the step's anomalies in the tracker and alert the new and reopened ones
(FileAnomaliesOperator); then hold the run before transform while blocking ones stay open
(AnomaliesResolvedSensor, reschedule mode: no worker slot is held while it waits)."""

from __future__ import annotations

from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSensorTimeout
from sqlalchemy.engine import URL

from pipeline_lib.anomalies.tracker import Tracker
from pipeline_lib.config import load_config
from pipeline_ops import alerts
from pipeline_ops.operators import span_date

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


class FileAnomaliesOperator(BaseOperator):
    """Files validate's findings; a new or reopened anomaly alerts once (Slack and email), a
    recurrence of an open one only counts. An alert that fails fails the task and stays pending:
    the retry or the next run sends it (at least once). Returns the filed ids and the blocking
    open ones."""

    ui_color = "#fde8e8"

    def __init__(self, *, config_path: str, **kwargs):
        kwargs.setdefault("task_id", "file_anomalies")
        super().__init__(**kwargs)
        self.config_path = config_path

    def execute(self, context):
        config = load_config(self.config_path)
        result = context["ti"].xcom_pull(task_ids="validate")
        run_id = context["run_id"]
        t = tracker()
        filed = t.file(config.name, span_date(context), run_id, result["anomalies"], owner=config.owner,
                               run_url=alerts.run_url(self.dag_id, run_id),
                               statistics=",".join(result["statistics"].values()) or None)
        alerted = []
        for record in filed:
            self.log.info("anomaly #%s %s/%s %s: %s (%s)", record["id"], record["feature"], record["kind"],
                          record["severity"], record["outcome"], record["status"])
            if record["alert_pending"]:  # new or reopened, here or in a run whose alert failed
                channels = alerts.send(config.alerts, *alerts.anomaly_message(record))
                t.alerted(record["id"])
                self.log.info("alerted anomaly #%s via %s", record["id"], ", ".join(channels) or "nothing configured")
                alerted.append(record["id"])
        blocking = [r["id"] for r in filed if r["severity"] == "blocking" and r["status"] in ("open", "acknowledged")]
        return {"filed": [r["id"] for r in filed], "alerted": alerted, "blocking": blocking}


class AnomaliesResolvedSensor(BaseSensorOperator):
    """Succeeds once none of the run's blocking anomalies is open (resolved or accepted); fails
    after the config's wait_timeout_seconds naming the ones still open."""

    ui_color = "#fff4e5"

    def __init__(self, *, config_path: str, **kwargs):
        config = load_config(config_path)
        validation = config.validation
        kwargs.setdefault("task_id", "wait_for_anomalies")
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("timeout", validation.wait_timeout_seconds)
        kwargs.setdefault("poke_interval", validation.poke_interval_seconds)
        super().__init__(**kwargs)
        self.pipeline = config.name
        self.still_open: list[dict] = []

    def poke(self, context) -> bool:
        ids = context["ti"].xcom_pull(task_ids="file_anomalies")["blocking"]
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
