"""Every pipeline config becomes a DAG: wait_for_data >> ingest >> validate >> file_anomalies >>
wait_for_anomalies >> transform >> file_transform_anomalies >> wait_for_transform_anomalies (the
label) >> train >> evaluate >> infra_validate >> push. Failed tasks and a
skipped push alert (config `alerts`), a successful push too where `alerts.on_push` asks for it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, Param, chain
from airflow.sdk.exceptions import AirflowFailException

from pipeline_lib import run_params, settings
from pipeline_lib.config import CONFIG_FILENAME, discover, load_config
from pipeline_ops.alerts import PUSH_REFUSED, PUSHED, channels, task_notifiers
from pipeline_ops.anomaly_ops import (
    AnomaliesResolvedSensor,
    FileAnomaliesOperator,
    no_data_filer,
)
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
        start_date=dt.datetime.combine(config.start_date, dt.time(), tzinfo=dt.UTC),
        end_date=config.end_date and dt.datetime.combine(config.end_date, dt.time(), tzinfo=dt.UTC),
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
        sensor = new_data_sensor(config, path, pre_execute=refuse_outside(config, path))
        sensor.on_failure_callback = [no_data_filer(path), *task_notifiers(config.alerts, "failed")]
        chain(sensor, *ordered)
    # Airflow creates no task instance for a logical date outside the tasks' start/end dates, so
    # such a run would end "success" having run nothing: every task exists for every date, and the
    # first one fails the run with the reason (start_date/end_date still bound the schedule)
    for task in dag.tasks:
        task.start_date, task.end_date = EARLIEST, None
    return dag


EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def refuse_outside(config, config_path: str):
    """The pre-execute hook that fails a run whose logical date is outside [start_date, end_date]."""
    def refuse(context):
        logical_date = context.get("logical_date")
        if logical_date is None:
            return
        day = logical_date.date()
        if day < config.start_date or (config.end_date and day > config.end_date):
            bounds = f"start_date {config.start_date}" + (f", end_date {config.end_date}" if config.end_date else "")
            raise AirflowFailException(
                f"logical date {day} is outside this pipeline's {bounds} ({config_path}): "
                "run a date within them, or change them in the config")
    return refuse


def pipeline_dag(dag_file: str) -> DAG | None:
    """The DAG of the pipeline named like its DAG file (`dags/<name>.py` -> `PIPELINES_DIR/<name>/`).
    One file per pipeline because Airflow keeps one import error per DAG file and marks every DAG
    of a file with an error stale: so a broken config, module or schema is this file's import
    error (naming the file and field) and every other pipeline's DAG parses and runs. None (no
    DAG) where PIPELINES_DIR has no such pipeline."""
    path = settings.pipelines_dir() / Path(dag_file).stem / CONFIG_FILENAME
    return build_dag(path) if path.exists() else None


def build_all(pipelines_dir: Path | None = None, skip: set[str] = frozenset()) -> dict[str, DAG]:
    """A DAG per config, except the pipelines named in `skip` (those with a DAG file of their own)."""
    dags = (build_dag(path) for path in discover(pipelines_dir) if path.parent.name not in skip)
    return {dag.dag_id: dag for dag in dags}
