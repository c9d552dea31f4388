"""The new-data sensor before ingest (DuckDB locally, the google provider's BigQuery partition
sensor in production) and the Asset that ingest emits for other DAGs."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from pipeline_fixtures import write_pipeline

from pipeline_lib import settings

DAY = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)  # the sample's last trip is on 2016-12-30


def build(isolated, overrides=None):
    from pipeline_ops.dag_factory import build_dag

    return build_dag(write_pipeline(isolated / "pipelines", overrides))


def test_the_sensor_waits_for_the_landed_day_in_duckdb(isolated):
    from pipeline_ops.sensors import DuckDBNewDataSensor

    dag = build(isolated, {"source": {"freshness": {"lag_days": 1, "poke_seconds": 60, "timeout_minutes": 90}}})
    sensor = dag.get_task("wait_for_data")
    assert isinstance(sensor, DuckDBNewDataSensor)
    assert (sensor.mode, sensor.poke_interval, sensor.timeout) == ("reschedule", 60, 90 * 60)
    assert dag.get_task("ingest").upstream_task_ids == {"wait_for_data"}

    assert sensor.poke({"logical_date": DAY}) is False  # nothing on 2016-12-31 or later
    assert sensor.poke({"logical_date": DAY - dt.timedelta(days=1)}) is True  # 2016-12-30 has trips
    with duckdb.connect(str(settings.warehouse_path())) as con:
        con.execute("INSERT INTO taxi_trips (trip_start_timestamp, fare) VALUES (?, 5.0)",
                    [int(dt.datetime(2016, 12, 31, 23, tzinfo=dt.UTC).timestamp())])
    assert sensor.poke({"logical_date": DAY}) is True


def test_a_timed_out_sensor_says_what_it_waited_for(isolated):
    from airflow.sdk.exceptions import AirflowSensorTimeout
    from pipeline_ops.sensors import DuckDBNewDataSensor

    config_path = write_pipeline(isolated / "pipelines")  # taxi_tips: freshness.lag_days 3
    sensor = DuckDBNewDataSensor(task_id="wait", config_path=str(config_path), mode="poke",
                                 poke_interval=0.2, timeout=1)
    with pytest.raises(AirflowSensorTimeout,
                       match=r"no new data after 1 s: still no rows of taxi_trips from 2029-12-29 on"):
        sensor.execute({"logical_date": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)})


def test_a_bigquery_source_waits_for_its_partition_through_the_google_provider(isolated):
    from airflow.providers.google.cloud.sensors.bigquery import (
        BigQueryTablePartitionExistenceSensor,
    )
    from airflow.sdk.execution_time import macros

    dag = build(isolated, {"source": {"kind": "bigquery", "table": "acme-prod.taxi.trips",
                                      "gcp_conn_id": "bq_prod",
                                      "freshness": {"lag_days": 2, "poke_seconds": 120, "timeout_minutes": 60}}})
    sensor = dag.get_task("wait_for_data")
    assert isinstance(sensor, BigQueryTablePartitionExistenceSensor)
    assert (sensor.project_id, sensor.dataset_id, sensor.table_id, sensor.gcp_conn_id) == (
        "acme-prod", "taxi", "trips", "bq_prod")
    assert sensor.deferrable is True and sensor.timeout == 3600 and sensor.poke_interval == 120
    assert sensor.render_template(sensor.partition_id, {"logical_date": DAY, "macros": macros}) == "20161230"


def test_ingest_emits_the_pipelines_examples_asset(isolated):
    from pipeline_ops.assets import examples_asset

    dag = build(isolated)
    assert dag.get_task("ingest").outlets == [examples_asset("taxi_tips")]
    assert examples_asset("taxi_tips").name == "taxi_tips_examples"
