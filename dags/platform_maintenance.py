"""The platform's daily maintenance (plugins/pipeline_ops/maintenance.py): every pipeline's
retention (pipeline_lib/retention.py) and freshness deadline (pipeline_lib/deadline.py), and task
logs older than PIPELINE_AIRFLOW_RETENTION_DAYS (default 30; Airflow's metadata database is
cleaned beside Airflow, by scripts/airflow_db_clean.sh). The tasks are independent: one failing
stops none of the others."""

import datetime as dt

from airflow.sdk import DAG, task
from pipeline_ops import maintenance

from pipeline_lib import settings

with DAG(
    dag_id="platform_maintenance",
    description="retention, freshness deadlines, task logs",
    schedule="@daily",
    start_date=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),  # any logical date may be run (a backfill's season)
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 0},
    tags=["platform"],
    doc_md=__doc__,
) as dag:

    @task
    def retention(**context) -> dict:
        return maintenance.apply_retention(context)

    @task
    def deadline(**context) -> dict:
        return maintenance.check_deadlines(context)

    @task
    def task_logs() -> dict:
        return maintenance.clean_task_logs(settings.airflow_retention_days())

    retention(), deadline(), task_logs()
