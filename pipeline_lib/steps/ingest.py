"""Ingest: the spans of the run's window that the pipeline does not have yet (normally only the new
one), each into its own folder of tf.Examples in TFRecords (pipeline_lib.spans), split train/eval by
a deterministic hash of the row's `split.key` columns (the same row always lands in the same split,
whatever happens to its other columns). A span is ingested again when the source says it changed
(its fingerprint: DuckDB, the row count and a checksum of the rows; BigQuery, its partitions' row
count and modification time) or when the run asks for its own span (`reingest`).

Rows stream through in batches, one span at a time, so memory stays flat however many rows the
window holds. A configured column the table lacks is left out (validate files it as missing), not
an error. Each span records its duplicated rows (whole, or by `validation.duplicates.key`) for
validate to judge."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tfx_bsl.coders import example_coder

from pipeline_lib import artifacts, preflight, spans, tfrecord
from pipeline_lib.spans import Span
from pipeline_lib.warehouse import table_columns

log = logging.getLogger(__name__)
SPLITS = ("train", "eval")
BATCH_ROWS = 65_536
SHARD_ROWS = 50_000


def _seconds_sql(config) -> str:
    ts = f'"{config.source.timestamp_column}"'
    return ts if config.source.timestamp_unit == "epoch_seconds" else f"epoch({ts})::BIGINT"


def _ranges_sql(config, ranges: list[tuple[dt.datetime, dt.datetime]]) -> tuple[str, list]:
    """`(ts >= ? AND ts < ?) OR ...` over the ranges, with its parameters."""
    ts, params = f'"{config.source.timestamp_column}"', []
    for start, end in ranges:
        params += [int(start.timestamp()), int(end.timestamp())] if config.source.timestamp_unit == "epoch_seconds" \
            else [start, end]
    return " OR ".join([f"({ts} >= ? AND {ts} < ?)"] * len(ranges)), params


def duckdb_fingerprints(config, window_spans: list[Span]) -> dict[str, str]:
    """Each span's row count and checksum (a sum of row hashes over the configured columns the table
    has) in one pass over the window: a changed, added or removed row changes it."""
    src = config.source
    with duckdb.connect(str(src.database_path()), read_only=True) as con:
        present = table_columns(con, src.table)
        cols = ", ".join(f'"{c}"' for c in config.raw_columns() if c in present)
        where, params = _ranges_sql(config, [spans.bounds(window_spans)])
        anchor = (spans.ANCHOR - dt.date(1970, 1, 1)).days
        rows = con.execute(f"SELECT ({_seconds_sql(config)} // 86400 - {anchor}) // {src.span_days} AS i, count(*), "
                           f"sum(hash({cols})::HUGEINT) FROM {src.table} WHERE {where} GROUP BY i", params).fetchall()
    return {spans.from_index(config, i).name: f"rows {n}, checksum {checksum}" for i, n, checksum in rows}


def batches(config, ranges: list[tuple[dt.datetime, dt.datetime]], rows_file: Path | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of `ranges`, in time order, a batch at a time: from `rows_file` (an Arrow IPC file,
    memory-mapped) when given, otherwise from the DuckDB source."""
    if rows_file:
        with pa.memory_map(str(rows_file)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        return
    src = config.source
    with duckdb.connect(str(src.database_path()), read_only=True) as con:
        present = table_columns(con, src.table)
        missing = [c for c in config.raw_columns() if c not in present]
        if missing:
            log.warning("%s lacks the configured columns %s: left out, validate files them", src.table, missing)
        cols = ", ".join(f'"{c}"' for c in config.raw_columns() if c in present)
        where, params = _ranges_sql(config, ranges)
        sql = f'SELECT {cols} FROM {src.table} WHERE {where} ORDER BY "{src.timestamp_column}"'
        yield from con.sql(sql, params=params).to_arrow_reader(BATCH_ROWS)


def _as_feature_list(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A nullable scalar column as the list column tf.Example expects (null -> no value)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        arr = arr.cast(pa.int64())
    elif pa.types.is_timestamp(t):
        arr = arr.cast(pa.timestamp("s")).cast(pa.int64())
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        arr = arr.cast(pa.float64()).cast(pa.float32())
    else:
        arr = arr.cast(pa.binary())
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int64)
    # a null offset makes that row's list null: the example then lacks the feature altogether
    null_list = np.append(~valid, False)
    return pa.LargeListArray.from_arrays(pa.array(offsets, mask=null_list), arr.filter(pa.array(valid)))


def to_examples(table: pa.Table | pa.RecordBatch) -> list[bytes]:
    batch = pa.RecordBatch.from_arrays([_as_feature_list(table[c]) for c in table.schema.names],
                                       table.schema.names)
    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def split_key(config) -> list[str]:
    return config.split.key or [config.source.timestamp_column]


def row_keys(table: pa.Table | pa.RecordBatch, key: list[str]) -> list[str]:
    """Each row's `key` values as one string: the split's hash input (a key column the table
    lacks counts as null)."""
    columns = [pc.fill_null(table[c].cast(pa.string()), "\x00") if c in table.schema.names
               else pa.array(["\x00"] * table.num_rows) for c in key]
    return pc.binary_join_element_wise(*columns, "\x1f").to_pylist()


def split_of(row_key: str, eval_percent: int) -> str:
    bucket = int.from_bytes(hashlib.md5(row_key.encode()).digest()[:8], "little") % 100
    return "eval" if bucket < eval_percent else "train"


class _ShardWriter:
    """One split's TFRecord shards, `data-00000.tfrecord`, ..., a new one every SHARD_ROWS rows:
    Beam reads a TFRecord file whole, so the shards are what lets the steps' runners (DirectRunner
    worker processes, Dataflow) spread a large split over more than one worker."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder, self.rows = folder, 0
        self.file = self._open(0)  # an empty split is one empty shard

    def _open(self, index: int):
        return open(self.folder / f"data-{index:05d}.tfrecord", "wb")

    def write(self, example: bytes) -> None:
        if self.rows and self.rows % SHARD_ROWS == 0:
            self.file.close()
            self.file = self._open(self.rows // SHARD_ROWS)
        tfrecord.write_record(self.file, example)
        self.rows += 1

    def close(self) -> None:
        self.file.close()


def write_splits(config, batches: Iterable[pa.RecordBatch], folder: Path) -> dict:
    """Each row as a tf.Example into the shards of `folder/<split>/`; the rows written per split,
    `duplicates` (rows that repeat an earlier row, whole or by validation.duplicates.key) and
    `content`, a digest of the rows whatever their order (what identifies the span's ingest)."""
    key = config.validation.duplicates.key
    seen, duplicates, content = set(), 0, 0
    with ExitStack() as stack:
        out = {}
        for split in SPLITS:
            out[split] = _ShardWriter(folder / split)
            stack.callback(out[split].close)
        for batch in batches:
            # a row's identity from its values (a serialized tf.Example's map order is not stable)
            rows = [hashlib.md5(r.encode()).digest() for r in row_keys(batch, batch.schema.names)]
            keys = [hashlib.md5(r.encode()).digest() for r in row_keys(batch, key)] if key else rows
            for split_by, example, row, identity in zip(row_keys(batch, split_key(config)), to_examples(batch), rows, keys):
                out[split_of(split_by, config.split.eval_percent)].write(example)
                content += int.from_bytes(row, "little")
                duplicates += identity in seen
                seen.add(identity)
    return {**{split: writer.rows for split, writer in out.items()}, "duplicates": duplicates,
            "content": f"{content % 2**128:032x}"}


def _epoch_seconds(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.timestamp("s")).cast(pa.int64())
    return arr.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.int64)


def _by_span(config, batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The (time-ordered) rows cut at span boundaries: (span index, rows of that span)."""
    for batch in batches:
        index = spans.index_of_epoch(config, _epoch_seconds(batch.column(config.source.timestamp_column)))
        cuts = np.flatnonzero(np.diff(index)) + 1
        for lo, hi in zip([0, *cuts], [*cuts, len(index)]):
            if hi > lo:
                yield int(index[lo]), batch.slice(lo, hi - lo)


def write_spans(config, planned: list[Span], batches: Iterable[pa.RecordBatch], fingerprints: dict[str, str]) -> None:
    """Each planned span into its folder, streamed, replacing what was there in one rename; rows
    outside the planned spans are skipped, a planned span without rows is written empty."""
    wanted = {spans.index_of_epoch(config, int(s.bounds()[0].timestamp())): s for s in planned}
    written = set()
    for index, parts in itertools.groupby(_by_span(config, batches), key=lambda pair: pair[0]):
        if index in wanted:
            _write_span(config, wanted[index], (part for _, part in parts), fingerprints)
            written.add(index)
    for index in wanted.keys() - written:
        _write_span(config, wanted[index], [], fingerprints)


def _write_span(config, span: Span, parts: Iterable[pa.RecordBatch], fingerprints: dict[str, str]) -> None:
    final = spans.folder(config.name, span.name)
    with artifacts.atomic_dir(final) as tmp:
        counts = write_splits(config, parts, tmp)
        rows = {split: counts[split] for split in SPLITS}
        # what the span's kept statistics, label and analyzer results are of: the same rows ingested
        # again keep them valid
        ingest_id = hashlib.sha1(json.dumps([counts["content"], rows, counts["duplicates"]]).encode()).hexdigest()[:16]
        artifacts.write_json(tmp / spans.RECORD, {
            "span": span.name, "end": span.end.isoformat(), "rows": rows, "duplicates": counts["duplicates"],
            "fingerprint": fingerprints.get(span.name, spans.EMPTY), "ingest_id": ingest_id,
            "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


def run(config, output_dir: Path, span_date: dt.date, window_days: int | None = None,
        rows_file: Path | None = None, reingest: bool = False) -> dict:
    """`rows_file`: the rows of the spans to ingest, already extracted as an Arrow IPC file
    (BigQuery, read on the Airflow side through the provider's hook, with the window's
    fingerprints next to it); otherwise the DuckDB source is asked for both."""
    preflight.check(config)  # a config or module mistake stops here, in a second, before data moves
    window_spans = spans.window(config, span_date, window_days)
    if rows_file:
        fingerprints = json.loads((rows_file.parent / spans.FINGERPRINTS).read_text())
    else:
        fingerprints = duckdb_fingerprints(config, window_spans)
    before = {s.name: spans.record(config.name, s.name) for s in window_spans}
    planned = spans.to_ingest(window_spans, before, fingerprints, {window_spans[-1].name} if reingest else set())
    if planned:
        log.info("ingesting %d of the window's %d spans (%s .. %s)", len(planned), len(window_spans),
                 planned[0].name, planned[-1].name)
        write_spans(config, planned, batches(config, spans.contiguous(planned), rows_file), fingerprints)
    return record_window(config, output_dir, window_spans, planned, before)


def record_window(config, output_dir: Path, window_spans: list[Span], planned: list[Span], before: dict) -> dict:
    """The run's result: the window's spans as kept, which of them this run ingested, and which of
    those it ingested again (`changed`: validate checks them like a new one)."""
    entries = [spans.record(config.name, s.name) for s in window_spans]
    start, end = spans.bounds(window_spans)
    rows = {split: sum(e["rows"][split] for e in entries) for split in SPLITS}
    if not sum(rows.values()):
        log.warning("no rows in %s for window [%s, %s)", config.source.table, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}")
    with artifacts.atomic_dir(output_dir) as tmp:
        result = {"examples": str(output_dir), "rows": rows, "span": window_spans[-1].name,
                  "window": {"start": start.isoformat(), "end": end.isoformat()},
                  "spans": [{k: e[k] for k in ("span", "path", "rows", "duplicates", "ingest_id")} for e in entries],
                  "ingested": [s.name for s in planned], "changed": [s.name for s in planned if before[s.name]]}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
