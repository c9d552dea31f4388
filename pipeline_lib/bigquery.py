"""BigQuery, the production source: a run's window read by a query with bound parameters (the
only values from outside; identifiers come from the validated config) and a partition filter,
its result streamed through the Storage Read API as Arrow record batches into one Arrow IPC file
that the ingest step turns into the same TFRecords as a DuckDB window.

Runs on the Airflow side (the google provider's BigQueryHook holds the connection and
credentials); the ML environment only reads the Arrow file. No TensorFlow here."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def window_query(config, start: dt.datetime, end: dt.datetime, present: set[str] | None = None) -> tuple[str, list]:
    """SQL and its query parameters for the window [start, end), selecting the configured columns
    that the table has (`present`; all of them when None): validate files a missing one."""
    from google.cloud.bigquery import ScalarQueryParameter

    src = config.source
    ts = f"`{src.timestamp_column}`"
    if src.timestamp_unit == "epoch_seconds":
        kind, bounds = "INT64", (int(start.timestamp()), int(end.timestamp()))
    else:
        kind, bounds = "TIMESTAMP", (start, end)
    where = [f"{ts} >= @window_start", f"{ts} < @window_end"]
    params = [ScalarQueryParameter("window_start", kind, bounds[0]), ScalarQueryParameter("window_end", kind, bounds[1])]
    if src.partition_column:  # prunes the scan to the window's daily partitions
        last_day = (end - dt.timedelta(microseconds=1)).date()
        where += [f"{src.partition_column} BETWEEN @first_partition AND @last_partition"]
        params += [ScalarQueryParameter("first_partition", "DATE", start.date()),
                   ScalarQueryParameter("last_partition", "DATE", last_day)]
    columns = ", ".join(f"`{c}`" for c in config.raw_columns() if present is None or c in present)
    return f"SELECT {columns} FROM `{src.table}` WHERE {' AND '.join(where)} ORDER BY {ts}", params


def extract(client, read_client, config, start: dt.datetime, end: dt.datetime, target: Path) -> int:
    """Run the window's query on `client` (google.cloud.bigquery.Client), stream its result through
    `read_client` (a BigQueryReadClient) into the Arrow IPC file `target`; return the row count."""
    import pyarrow as pa
    from google.cloud.bigquery import QueryJobConfig

    present = {field.name for field in client.get_table(config.source.table).schema}
    missing = [c for c in config.raw_columns() if c not in present]
    if missing:
        log.warning("%s lacks the configured columns %s: left out, validate files them", config.source.table, missing)
    sql, params = window_query(config, start, end, present)
    job = client.query(sql, job_config=QueryJobConfig(query_parameters=params, use_legacy_sql=False))
    rows = job.result()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.partial")
    count, writer = 0, None
    try:
        for batch in rows.to_arrow_iterable(bqstorage_client=read_client):
            if writer is None:
                writer = pa.ipc.new_file(str(scratch), batch.schema)
            writer.write_batch(batch)
            count += batch.num_rows
        if writer is None:  # no rows: an empty file with the query's schema
            empty = rows.to_arrow(bqstorage_client=read_client)
            writer = pa.ipc.new_file(str(scratch), empty.schema)
        writer.close()
        scratch.rename(target)
    finally:
        scratch.unlink(missing_ok=True)
    return count


def extract_with_hook(config, start: dt.datetime, end: dt.datetime, target: Path) -> int:
    """`extract` through the google provider's BigQueryHook (source.gcp_conn_id): its client for
    the query and its credentials for the Storage Read API."""
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from google.cloud.bigquery_storage import BigQueryReadClient

    project = config.source.bigquery_table()[0]
    hook = BigQueryHook(gcp_conn_id=config.source.gcp_conn_id, location=config.source.location)
    return extract(hook.get_client(project_id=project, location=config.source.location),
                   BigQueryReadClient(credentials=hook.get_credentials()), config, start, end, target)
