"""Spans: the source's rows of one data interval (`source.span_days`: a day for @daily, a week for
@weekly), each ingested once into its own folder and kept; a run's training window is its last
`window_days` of spans (TFX's ExampleGen spans and RollingRange). Stdlib only: the Airflow side
plans spans too (a BigQuery extract reads only the spans to ingest).

Spans lie on one grid for every pipeline, anchored on a Sunday, so @weekly runs (Sunday
midnight) end exactly on span boundaries. A run for logical date D reads the spans that ended by
D: its newest span is the one that ends at the last grid point at or before D.

Layout: `<artifact root>/<pipeline>/spans/<first day>/` holds `span.json` (rows, duplicates,
the source's fingerprint, an ingest id), the examples (`train/`, `eval/`), and what later steps
keep about the span: validate's `statistics/`, transform's `label.json` and analyzer caches. A
span that is ingested again is replaced whole, and what was kept about it goes with it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

from pipeline_lib import artifacts

ANCHOR = dt.date(1970, 1, 4)  # a Sunday: @weekly (cron 0 0 * * 0) fires on span boundaries
RECORD = "span.json"
FINGERPRINTS = "fingerprints.json"  # what a BigQuery extract hands the ingest step next to its rows
STATISTICS = "statistics"
LABEL = "label.json"


@dataclasses.dataclass(frozen=True, order=True)
class Span:
    start: dt.date
    days: int

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days)

    @property
    def name(self) -> str:
        return self.start.isoformat()

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) as UTC datetimes."""
        return (dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC),
                dt.datetime.combine(self.end, dt.time(), tzinfo=dt.UTC))


def newest(config, run_date: dt.date) -> Span:
    """The span a run for `run_date` adds: the last one that ended by `run_date`."""
    days = config.source.span_days
    end = ANCHOR + dt.timedelta(days=(run_date - ANCHOR).days // days * days)
    return Span(end - dt.timedelta(days=days), days)


def window(config, run_date: dt.date, window_days: int | None = None) -> list[Span]:
    """The run's spans, oldest first: as many as cover `window_days` (default the config's)."""
    last = newest(config, run_date)
    count = math.ceil((window_days or config.source.window_days) / last.days)
    return [Span(last.start - dt.timedelta(days=last.days * i), last.days) for i in reversed(range(count))]


def bounds(spans: list[Span]) -> tuple[dt.datetime, dt.datetime]:
    return spans[0].bounds()[0], spans[-1].bounds()[1]


def of(config, name: str) -> Span:
    return Span(dt.date.fromisoformat(name), config.source.span_days)


def index_of_epoch(config, seconds):
    """The grid index of the span holding each epoch second (works on numbers and numpy arrays):
    (day since the anchor) // span_days."""
    anchor = (ANCHOR - dt.date(1970, 1, 1)).days
    return (seconds // 86_400 - anchor) // config.source.span_days


def from_index(config, index: int) -> Span:
    days = config.source.span_days
    return Span(ANCHOR + dt.timedelta(days=int(index) * days), days)


def root(pipeline: str) -> Path:
    return artifacts.pipeline_root(pipeline) / "spans"


def folder(pipeline: str, name: str) -> Path:
    return root(pipeline) / name


def record(pipeline: str, name: str) -> dict | None:
    """The span's ingest record with its folder (`path`), None if it was never ingested."""
    path = folder(pipeline, name) / RECORD
    return {**json.loads(path.read_text()), "path": str(path.parent)} if path.is_file() else None


def to_ingest(window_spans: list[Span], records: dict[str, dict | None], fingerprints: dict[str, str],
              force: set[str] = frozenset()) -> list[Span]:
    """The spans a run must (re)ingest: never ingested, changed at the source (its fingerprint
    differs from the one it was ingested with), or asked for (`force`)."""
    return [s for s in window_spans
            if s.name in force or not records.get(s.name)
            or records[s.name]["fingerprint"] != fingerprints.get(s.name, EMPTY)]


EMPTY = "rows 0"  # the fingerprint of a span without rows


def contiguous(planned: list[Span]) -> list[tuple[dt.datetime, dt.datetime]]:
    """The planned spans as the fewest [start, end) ranges."""
    out = []
    for s in planned:
        start, end = s.bounds()
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def files(span_entries: list[dict], *splits: str) -> list[str]:
    """The TFRecord files of `splits` of the spans listed in an ingest result (those with rows)."""
    return [str(f) for s in span_entries for split in splits if s["rows"][split]
            for f in sorted((Path(s["path"]) / split).glob("*.tfrecord"))]


def recent(span_entries: list[dict], split: str, min_rows: int | None) -> list[dict]:
    """The newest spans whose `split` rows reach `min_rows` together (all of them: None)."""
    if min_rows is None:
        return list(span_entries)
    chosen, rows = [], 0
    for entry in reversed(span_entries):
        if rows >= min_rows:
            break
        chosen.append(entry)
        rows += entry["rows"][split]
    return chosen[::-1]
