"""A run's span: the window of rows it reads, relative to its logical date. No heavy imports
(the Airflow side computes it too, e.g. for a BigQuery extract)."""

from __future__ import annotations

import datetime as dt


def window(config, span_date: dt.date, window_days: int | None = None) -> tuple[dt.datetime, dt.datetime]:
    """[span_date - window_days, span_date) in UTC; window_days defaults to the config's."""
    end = dt.datetime.combine(span_date, dt.time(), tzinfo=dt.UTC)
    return end - dt.timedelta(days=window_days or config.source.window_days), end
