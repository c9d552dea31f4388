"""Every pipeline config becomes a DAG: wait_for_data >> ingest >> validate >> file_anomalies >>
wait_for_anomalies >> transform >> file_transform_anomalies >> wait_for_transform_anomalies (the
label) >> train >> evaluate >> infra_validate >> push. Failed tasks and a
skipped push alert (config `alerts`), a successful push too where `alerts.on_push` asks for it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, Param, chain

from pipeline_lib import run_params
from pipeline_lib.config import discover, load_config
from pipeline_ops.alerts import PUSHED, PUSH_REFUSED, channels, task_notifiers
from pipeline_ops.anomaly_ops import AnomaliesResolvedSensor, FileAnomaliesOperator, no_data_filer
from pipeline_ops.assets import examples_asset
from pipeline_ops.links import pages_doc
from pipeline_ops.operators import OPERATORS, IngestOperator
from pipeline_ops.sensors import new_data_sensor


def build_dag(config_path: Path) -> DAG:
    """Raises ConfigError (naming the field) for a bad config: Airflow shows it as an import error."""
    config = load_config(config_path)
    path = str(config_path)
    with DAG(
        dag_id=config.name,
        description=config.description,
        doc_md=f"**{config.name}**: {config.description}\n\nConfig: `{path}`\n\n{pages_doc(config.name)}" + (
            "" if channels(config.alerts) else "\n\n**Warning: alerts go nowhere** (no `alerts.slack_conn_id` or "
            "`alerts.email_to`): anomalies stay *not alerted* in the tracker until a channel is configured."),
        schedule=config.schedule,
        start_date=dt.datetime.combine(config.start_date, dt.time(), tzinfo=dt.timezone.utc),
        end_date=config.end_date and dt.datetime.combine(config.end_date, dt.time(), tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": config.owner, "retries": 0,
                      "on_failure_callback": task_notifiers(config.alerts, "failed")},
        tags=["ml-pipeline", config.name],
        params={p.name: Param(p.default, description=p.description, **p.schema) for p in run_params.RUN_PARAMS},
    ) as dag:
        tasks = [operator(config_path=path, **({"outlets": [examples_asset(config.name)]}
                                               if operator is IngestOperator else {}))
                 for operator in OPERATORS]
        tasks[-1].on_skipped_callback = task_notifiers(config.alerts, "skipped: no model pushed", PUSH_REFUSED)
        if config.alerts.on_push:
            tasks[-1].on_success_callback = task_notifiers(config.alerts, "succeeded", PUSHED)
        gates = {step: [FileAnomaliesOperator(config_path=path, step=step), AnomaliesResolvedSensor(config_path=path, step=step)]
                 for step in ("validate", "transform")}
        ordered = [t for task in tasks for t in (task, *gates.get(task.task_id, []))]
        sensor = new_data_sensor(config, path)
        sensor.on_failure_callback = [no_data_filer(path), *task_notifiers(config.alerts, "failed")]
        chain(sensor, *ordered)
    return dag


def build_all(pipelines_dir: Path | None = None) -> dict[str, DAG]:
    dags = (build_dag(path) for path in discover(pipelines_dir))
    return {dag.dag_id: dag for dag in dags}
