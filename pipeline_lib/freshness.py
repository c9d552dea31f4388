"""Has the source received the data a run needs? A run for logical date D reads the window
before D; it may start once the source holds rows from D - `source.freshness.lag_days` on
(BigQuery: that day's partition exists). Plain functions; the Airflow sensors call them."""

from __future__ import annotations

import datetime as dt


def landed_day(config, span_date: dt.date) -> dt.date:
    """The day whose data must be in the source before the run starts."""
    return span_date - dt.timedelta(days=config.source.freshness.lag_days)


def duckdb_rows_since(config, since: dt.date) -> int:
    """Rows of the DuckDB source table at or after the start of `since` (UTC)."""
    import duckdb

    src = config.source
    bound = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    value = int(bound.timestamp()) if src.timestamp_unit == "epoch_seconds" else bound
    with duckdb.connect(str(src.database_path()), read_only=True) as con:
        return con.execute(f'SELECT count(*) FROM {src.table} WHERE "{src.timestamp_column}" >= ?',
                           [value]).fetchone()[0]
