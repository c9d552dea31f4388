"""Clean and faulty spans of the real taxi rows, for judging validation (the ML tests and
bench/validation_trial.py share them; no Airflow or TensorFlow imports at module level).

Clean: a chain of spans in date order, windows of 30 days to a year, some resampled (a random 80% of
the window's rows), each validated against the previous one. Faults: one later span per case,
changed the way warehouse data goes wrong, each validated against the same history span.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HISTORY = (dt.date(2016, 1, 1), 365)  # (span, window days) the fault cases are compared against
CASE_SPAN, CASE_WINDOW = dt.date(2016, 4, 1), 90


def clean_spans(count: int = 21) -> list[tuple[dt.date, int, float]]:
    """(span, window days, fraction of rows kept) in date order: monthly spans of 2015-2016."""
    windows = [30, 60, 90, 180, 365]
    out = []
    for i in range(count):
        span = dt.date(2015 + (i + 1) // 12, (i + 1) % 12 + 1, 1)
        out.append((span, windows[i % len(windows)], 0.8 if i % 3 == 2 else 1.0))
    return out


def resample(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    if fraction >= 1:
        return table
    keep = np.random.default_rng(seed).random(table.num_rows) < fraction
    return table.filter(pa.array(keep))


def _set(table: pa.Table, column: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(column), column, values)


def _head(table: pa.Table, column: str, value, count: int) -> pa.Table:
    rest = table[column].to_pylist()[count:]
    return _set(table, column, pa.array([value] * count + rest, table.schema.field(column).type))


def _share_moved(table: pa.Table, column: str, to: str, points: float) -> pa.Table:
    """`points` of all rows (taken from other values) now hold `to`."""
    values = table[column].to_pylist()
    others = [i for i, v in enumerate(values) if v != to]
    for i in others[: int(points * len(values))]:
        values[i] = to
    return _set(table, column, pa.array(values, table.schema.field(column).type))


# name -> (change to the span's rows, feature expected, "blocking" or "any": caught as what)
FAULTS = {
    "column dropped": (lambda t: t.drop(["company"]), "company", "blocking"),
    "type changed": (lambda t: _set(t, "fare", pc.cast(t["fare"], pa.string())), "fare", "blocking"),
    "column all null": (lambda t: _head(t, "company", None, t.num_rows), "company", "blocking"),
    "empty span": (lambda t: t.slice(0, 0), "(data)", "blocking"),
    "new category": (lambda t: _head(t, "payment_type", "Bitcoin", 60), "payment_type", "blocking"),
    "null spike": (lambda t: _head(t, "trip_miles", None, t.num_rows // 2), "trip_miles", "blocking"),
    "out of range": (lambda t: _head(t, "pickup_latitude", 48.5, 10), "pickup_latitude", "blocking"),
    "fares x1.2": (lambda t: _set(t, "fare", pc.multiply(t["fare"], 1.2)), "fare", "any"),
    "category share +20 points": (lambda t: _share_moved(t, "payment_type", "Credit Card", 0.2), "payment_type", "any"),
    "trip seconds x3": (lambda t: _set(t, "trip_seconds", pc.multiply(t["trip_seconds"], 3)), "trip_seconds", "any"),
}
