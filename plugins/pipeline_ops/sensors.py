"""The new-data sensor that starts each run: it waits for the logical date's data in the source.
DuckDB (local): a reschedule-mode sensor of our own (no maintained DuckDB sensor is installed);
BigQuery (production): the google provider's partition sensor, deferrable (the triggerer waits)."""

from __future__ import annotations

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

from pipeline_lib import freshness
from pipeline_lib.config import load_config
from pipeline_ops.operators import span_date

TASK_ID = "wait_for_data"


class DuckDBNewDataSensor(BaseSensorOperator):
    """Succeeds once the DuckDB source table holds rows from the landed day on; frees its worker
    slot between checks (reschedule mode)."""

    ui_color = "#fff4e0"

    def __init__(self, *, config_path: str, **kwargs):
        self.config_path = config_path
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)

    def _what(self, context) -> tuple[object, str]:
        config = load_config(self.config_path)
        day = freshness.landed_day(config, span_date(context))
        return config, f"rows of {config.source.table} from {day} on ({config.source.database_path()})"

    def poke(self, context) -> bool:
        config, what = self._what(context)
        rows = freshness.duckdb_rows_since(config, freshness.landed_day(config, span_date(context)))
        self.log.info("%s: %d", what, rows)
        return rows > 0

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout as e:
            raise AirflowSensorTimeout(f"no new data after {self.timeout:.0f} s: still no {self._what(context)[1]}; "
                                       f"load it, or clear this task once it is there ({e})") from None


def new_data_sensor(config, config_path: str, **kwargs) -> BaseSensorOperator:
    """The sensor for the pipeline's source kind, timing from `source.freshness`."""
    wait = config.source.freshness
    common = {"task_id": TASK_ID, "poke_interval": wait.poke_seconds, "timeout": wait.timeout_minutes * 60, **kwargs}
    if config.source.kind == "bigquery":
        # imported only here: the google provider costs ~1.5 s of every parse
        from airflow.providers.google.cloud.sensors.bigquery import (
            BigQueryTablePartitionExistenceSensor,
        )

        project, dataset, table = config.source.bigquery_table()
        return BigQueryTablePartitionExistenceSensor(
            project_id=project, dataset_id=dataset, table_id=table, gcp_conn_id=config.source.gcp_conn_id,
            partition_id=f"{{{{ (logical_date - macros.timedelta(days={wait.lag_days})).strftime('%Y%m%d') }}}}",
            deferrable=True, **common)
    return DuckDBNewDataSensor(config_path=config_path, **common)
