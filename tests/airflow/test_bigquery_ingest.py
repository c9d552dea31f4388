"""BigQuery ingest (source.kind: bigquery) through the production code path: the google provider's
BigQueryHook, the spans' fingerprints from INFORMATION_SCHEMA.PARTITIONS, a query of the spans to
ingest with bound parameters and a partition filter, the Storage Read API's Arrow batches, then the
ML environment's ingest step. BigQuery is not reachable here, so the hook hands out a fake client
at the client boundary that runs the very SQL it receives (BigQuery dialect mapped to DuckDB's) on
the taxi sample, its partitions' metadata a view of it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, settings
from pipeline_lib.bigquery import rows_query
from pipeline_lib.config import load_config

SPAN = dt.datetime(2016, 12, 1, tzinfo=dt.UTC)
BIGQUERY = {"name": "taxi_bq", "source": {"kind": "bigquery", "table": "acme-prod.taxi.trips",
                                          "timestamp_unit": "epoch_seconds", "partition_column": "trip_day",
                                          "gcp_conn_id": "bq_prod", "location": "EU"}}


class FakeRows:
    """RowIterator's side: Arrow batches, served only to a Storage Read API client."""

    def __init__(self, table):
        self.table = table

    def to_arrow_iterable(self, bqstorage_client):
        from google.cloud.bigquery_storage import BigQueryReadClient

        assert isinstance(bqstorage_client, BigQueryReadClient)
        return iter(self.table.to_batches(max_chunksize=100))

    def to_arrow(self, bqstorage_client):
        return self.table

    def __iter__(self):  # rows by column name, as the RowIterator gives them
        return iter(self.table.to_pylist())


class FakeClient:
    """google.cloud.bigquery.Client at its boundary: `query` runs the SQL with its bound
    parameters on a DuckDB copy of the sample, partitioned by day as `trip_day`."""

    def __init__(self, warehouse: Path, dropped: tuple[str, ...] = ()):
        self.warehouse, self.dropped, self.queries = warehouse, dropped, []

    def _trips(self, con):
        con.execute("CREATE OR REPLACE TEMP VIEW trips AS SELECT * EXCLUDE (" + ", ".join(["_x", *self.dropped])
                    + ") FROM (SELECT *, NULL AS _x, CAST(to_timestamp(trip_start_timestamp) AS DATE) AS trip_day "
                    "FROM taxi_trips)")
        # the table's daily partitions as BigQuery describes them (modified: a day's latest trip)
        con.execute("CREATE OR REPLACE TEMP VIEW partitions AS SELECT 'trips' AS table_name, "
                    "strftime(trip_day, '%Y%m%d') AS partition_id, count(*) AS total_rows, "
                    "max(to_timestamp(trip_start_timestamp)) AS last_modified_time FROM trips GROUP BY trip_day")

    def get_table(self, table):
        from google.cloud.bigquery import SchemaField

        assert table == "acme-prod.taxi.trips"
        with duckdb.connect(str(self.warehouse)) as con:
            self._trips(con)
            names = [row[0] for row in con.execute("DESCRIBE trips").fetchall()]
        return type("Table", (), {"schema": [SchemaField(name, "STRING") for name in names]})()

    def query(self, sql, job_config):
        self.queries.append((sql, job_config))
        params = {p.name: p.value for p in job_config.query_parameters}
        duck_sql = re.sub(r"@(\w+)", r"$\1", sql.replace("`acme-prod.taxi.trips`", "trips")
                          .replace("`acme-prod.taxi.INFORMATION_SCHEMA.PARTITIONS`", "partitions")
                          .replace("PARSE_DATE('%Y%m%d', partition_id)", "strptime(partition_id, '%Y%m%d')::DATE")
                          .replace("`", '"'))
        with duckdb.connect(str(self.warehouse)) as con:
            self._trips(con)
            table = con.execute(duck_sql, params).to_arrow_table()
        return type("Job", (), {"result": lambda _: FakeRows(table)})()


@pytest.fixture
def fake_bigquery(monkeypatch, isolated):
    """The provider's BigQueryHook, its client replaced by FakeClient; records the hook's arguments."""
    from airflow.providers.google.cloud.hooks import bigquery as provider
    from google.auth.credentials import AnonymousCredentials

    client, made = FakeClient(settings.warehouse_path()), []
    monkeypatch.setenv("AIRFLOW_CONN_BQ_PROD", '{"conn_type": "google_cloud_platform", "extra": {"project": "acme-prod"}}')

    class Hook(provider.BigQueryHook):
        def get_client(self, project_id=None, location=None):
            made.append({"conn": self.gcp_conn_id, "project": project_id, "location": location})
            return client

        def get_credentials(self):
            return AnonymousCredentials()

    monkeypatch.setattr(provider, "BigQueryHook", Hook)
    return client, made


def test_the_query_binds_the_spans_and_filters_partitions(tmp_path):
    config = load_config(write_pipeline(tmp_path, BIGQUERY))
    ranges = [(SPAN - dt.timedelta(days=30), SPAN - dt.timedelta(days=23)), (SPAN - dt.timedelta(days=7), SPAN)]
    sql, params = rows_query(config, ranges)
    assert sql.startswith("SELECT `trip_miles`, `fare`")
    assert sql.endswith("FROM `acme-prod.taxi.trips` WHERE ((`trip_start_timestamp` >= @start_0 AND "
                        "`trip_start_timestamp` < @end_0) OR (`trip_start_timestamp` >= @start_1 AND "
                        "`trip_start_timestamp` < @end_1)) AND trip_day BETWEEN @first_partition AND "
                        "@last_partition ORDER BY `trip_start_timestamp`")
    assert not re.search(r"\d{4}|14[0-9]{8}", sql), "values are bound, never formatted into the SQL"
    at = lambda day: int(dt.datetime(2016, 11, day, tzinfo=dt.UTC).timestamp())
    assert [(p.name, p.type_, p.value) for p in params] == [
        ("start_0", "INT64", at(1)), ("end_0", "INT64", at(8)), ("start_1", "INT64", at(24)),
        ("end_1", "INT64", int(SPAN.timestamp())),
        ("first_partition", "DATE", dt.date(2016, 11, 1)), ("last_partition", "DATE", dt.date(2016, 11, 30))]


def test_a_bigquery_table_must_be_fully_qualified(tmp_path):
    from pipeline_lib.config import ConfigError

    with pytest.raises(ConfigError, match="a bigquery table is written project.dataset.table"):
        load_config(write_pipeline(tmp_path, {"source": {"kind": "bigquery", "table": "trips"}}))


def ingest_with(task_config: Path, day: dt.datetime, **params):
    from airflow.sdk import DAG
    from pipeline_ops.operators import IngestOperator

    with DAG(load_config(task_config).name, schedule=None):
        task = IngestOperator(config_path=str(task_config))
    return task.execute({"logical_date": day, "run_id": f"manual-{day:%F}", "params": {"window_days": 30, **params}})


def test_bigquery_ingest_writes_the_same_spans_as_duckdb_and_reads_only_the_new_one_next(isolated, fake_bigquery):
    client, made = fake_bigquery
    configs = {name: write_pipeline(isolated / "pipelines", overrides)
               for name, overrides in {"taxi_bq": BIGQUERY, "taxi_tips": {}}.items()}
    results = {name: ingest_with(path, SPAN) for name, path in configs.items()}

    assert made[0] == {"conn": "bq_prod", "project": "acme-prod", "location": "EU"}
    partitions, (rows_sql, job_config) = client.queries
    assert "INFORMATION_SCHEMA.PARTITIONS" in partitions[0] and job_config.use_legacy_sql is False
    bq, local = results["taxi_bq"], results["taxi_tips"]
    assert bq["rows"] == local["rows"] and sum(bq["rows"].values()) > 50
    # 30 days of weekly spans to the last Sunday by 2016-12-01
    assert bq["window"] == local["window"] == {"start": "2016-10-23T00:00:00+00:00", "end": "2016-11-27T00:00:00+00:00"}
    assert bq["ingested"] == local["ingested"] and len(bq["ingested"]) == 5
    for a, b in zip(bq["spans"], local["spans"]):
        for split in ("train", "eval"):
            sizes = [(Path(e["path"]) / split / "data-00000.tfrecord").stat().st_size for e in (a, b)]
            assert sizes[0] == sizes[1], (a["span"], split)
    assert (artifacts.run_dir("taxi_bq", SPAN.date()) / "source" / "rows.arrow").is_file()

    client.queries.clear()
    week = ingest_with(configs["taxi_bq"], SPAN + dt.timedelta(days=7))
    assert week["ingested"] == ["2016-11-27"], "the partitions say the rest is unchanged: only the new week is read"
    _, (rows_sql, job_config) = client.queries
    assert [p.name for p in job_config.query_parameters][:2] == ["start_0", "end_0"] and "@start_1" not in rows_sql


def test_a_column_the_bigquery_table_lost_is_left_for_validate(isolated, fake_bigquery):
    """Like DuckDB's: ingest reads what the table has, so validate files the missing column."""
    client, _ = fake_bigquery
    client.dropped = ("company",)
    result = ingest_with(write_pipeline(isolated / "pipelines", BIGQUERY), SPAN)
    _, (sql, _) = client.queries
    assert "`company`" not in sql and "`payment_type`" in sql
    assert sum(result["rows"].values()) > 50
