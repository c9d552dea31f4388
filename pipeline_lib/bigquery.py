"""BigQuery, the production source. What a run must ingest is decided from the table's metadata:
each span's fingerprint is its partitions' row count and last modification time
(INFORMATION_SCHEMA.PARTITIONS; without a partition column, a count query), compared with the one
each kept span was ingested with (pipeline_lib.spans). Only those spans are read: a query with
bound parameters (the only values from outside; identifiers come from the validated config) and a
partition filter, its result streamed through the Storage Read API as Arrow record batches into one
Arrow IPC file that the ingest step turns into the same TFRecords as DuckDB's rows.

Runs on the Airflow side (the google provider's BigQueryHook holds the connection and
credentials); the ML environment only reads the Arrow file. No TensorFlow here."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from pipeline_lib import spans

log = logging.getLogger(__name__)


def _bound(config, moment: dt.datetime):
    return int(moment.timestamp()) if config.source.timestamp_unit == "epoch_seconds" else moment


def rows_query(config, ranges: list[tuple[dt.datetime, dt.datetime]], present: set[str] | None = None) -> tuple[str, list]:
    """SQL and its query parameters for the rows in `ranges` ([start, end) each), selecting the
    configured columns that the table has (`present`; all of them when None): validate files a
    missing one."""
    from google.cloud.bigquery import ScalarQueryParameter

    src = config.source
    ts = f"`{src.timestamp_column}`"
    kind = "INT64" if src.timestamp_unit == "epoch_seconds" else "TIMESTAMP"
    where, params = [], []
    for i, (start, end) in enumerate(ranges):
        where.append(f"({ts} >= @start_{i} AND {ts} < @end_{i})")
        params += [ScalarQueryParameter(f"start_{i}", kind, _bound(config, start)),
                   ScalarQueryParameter(f"end_{i}", kind, _bound(config, end))]
    where = [f"({' OR '.join(where)})"]
    if src.partition_column:  # prunes the scan to the spans' daily partitions
        last_day = (ranges[-1][1] - dt.timedelta(microseconds=1)).date()
        where += [f"{src.partition_column} BETWEEN @first_partition AND @last_partition"]
        params += [ScalarQueryParameter("first_partition", "DATE", ranges[0][0].date()),
                   ScalarQueryParameter("last_partition", "DATE", last_day)]
    columns = ", ".join(f"`{c}`" for c in config.raw_columns() if present is None or c in present)
    return f"SELECT {columns} FROM `{src.table}` WHERE {' AND '.join(where)} ORDER BY {ts}", params


def fingerprints(client, config, window_spans: list) -> dict[str, str]:
    """Each span's fingerprint from the table's metadata: its partitions' total rows and last
    modification time (a DATE partition per day, by `source.partition_column`), or without one a
    count of its rows."""
    from google.cloud.bigquery import QueryJobConfig, ScalarQueryParameter

    src = config.source
    first, last = window_spans[0].start, window_spans[-1].end - dt.timedelta(days=1)
    project, dataset, table = src.bigquery_table()
    if src.partition_column:
        sql = (f"SELECT PARSE_DATE('%Y%m%d', partition_id) AS day, total_rows AS row_count, last_modified_time AS modified "
               f"FROM `{project}.{dataset}.INFORMATION_SCHEMA.PARTITIONS` WHERE table_name = @table "
               f"AND partition_id BETWEEN @first AND @last")
        params = [ScalarQueryParameter("table", "STRING", table), ScalarQueryParameter("first", "STRING", f"{first:%Y%m%d}"),
                  ScalarQueryParameter("last", "STRING", f"{last:%Y%m%d}")]
    else:
        seconds = f"`{src.timestamp_column}`" if src.timestamp_unit == "epoch_seconds" else f"UNIX_SECONDS(`{src.timestamp_column}`)"
        sql = (f"SELECT DATE(TIMESTAMP_SECONDS(DIV({seconds}, 86400) * 86400)) AS day, COUNT(*) AS row_count, NULL AS modified "
               f"FROM `{src.table}` WHERE {seconds} >= @first AND {seconds} < @last GROUP BY day")
        start, end = spans.bounds(window_spans)
        params = [ScalarQueryParameter("first", "INT64", int(start.timestamp())),
                  ScalarQueryParameter("last", "INT64", int(end.timestamp()))]
    job = client.query(sql, job_config=QueryJobConfig(query_parameters=params, use_legacy_sql=False))
    by_span: dict[str, list] = {}
    for row in job.result():
        day = row["day"]
        span = spans.from_index(config, spans.index_of_epoch(config, (day - dt.date(1970, 1, 1)).days * 86_400))
        by_span.setdefault(span.name, []).append((row["row_count"], row["modified"]))
    return {name: f"rows {sum(r for r, _ in days)}" + (f", modified {max(m for _, m in days)}" if days[0][1] else "")
            for name, days in by_span.items() if sum(r for r, _ in days)}


def extract(client, read_client, config, window_spans: list, reingest: bool, target: Path) -> list[str]:
    """Plan the window's spans from the table's fingerprints (written next to `target` for the
    step), run the query of the spans to ingest on `client` (google.cloud.bigquery.Client) and
    stream its result through `read_client` (a BigQueryReadClient) into the Arrow IPC file
    `target`; return the spans it holds."""
    import pyarrow as pa
    from google.cloud.bigquery import QueryJobConfig

    found = fingerprints(client, config, window_spans)
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / spans.FINGERPRINTS).write_text(json.dumps(found))
    before = {s.name: spans.record(config.name, s.name) for s in window_spans}
    planned = spans.to_ingest(window_spans, before, found, {window_spans[-1].name} if reingest else set())
    present = {field.name for field in client.get_table(config.source.table).schema}
    missing = [c for c in config.raw_columns() if c not in present]
    if missing:
        log.warning("%s lacks the configured columns %s: left out, validate files them", config.source.table, missing)
    if not planned:  # nothing to read: an empty file with the table's columns is not needed
        pa.ipc.new_file(str(target), pa.schema([])).close()
        return []
    sql, params = rows_query(config, spans.contiguous(planned), present)
    job = client.query(sql, job_config=QueryJobConfig(query_parameters=params, use_legacy_sql=False))
    rows = job.result()
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
    log.info("%s: %d rows of spans %s", config.source.table, count, [s.name for s in planned])
    return [s.name for s in planned]


def extract_with_hook(config, window_spans: list, reingest: bool, target: Path) -> list[str]:
    """`extract` through the google provider's BigQueryHook (source.gcp_conn_id): its client for
    the queries and its credentials for the Storage Read API."""
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from google.cloud.bigquery_storage import BigQueryReadClient

    project = config.source.bigquery_table()[0]
    hook = BigQueryHook(gcp_conn_id=config.source.gcp_conn_id, location=config.source.location)
    return extract(hook.get_client(project_id=project, location=config.source.location),
                   BigQueryReadClient(credentials=hook.get_credentials()), config, window_spans, reingest, target)
