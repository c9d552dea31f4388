"""Ingest: the span's rows from the warehouse -> tf.Examples in TFRecords, split train/eval by a
deterministic hash of the row's `split.key` columns (the same row always lands in the same split,
whatever happens to its other columns). Rows stream through in batches, so memory stays flat however
many rows the window holds. A configured column the table lacks is left out (validate files it as
missing), not an error."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tfx_bsl.coders import example_coder

from pipeline_lib import artifacts, preflight, tfrecord
from pipeline_lib.span import window
from pipeline_lib.warehouse import table_columns

log = logging.getLogger(__name__)
SPLITS = ("train", "eval")
BATCH_ROWS = 65_536
SHARD_ROWS = 50_000


def batches(config, start: dt.datetime, end: dt.datetime, rows_file: Path | None = None) -> Iterator[pa.RecordBatch]:
    """The window's rows, in time order, a batch at a time: from `rows_file` (an Arrow IPC file,
    memory-mapped) when given, otherwise from the DuckDB source."""
    if rows_file:
        with pa.memory_map(str(rows_file)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        return
    src = config.source
    bounds = [start, end]
    if src.timestamp_unit == "epoch_seconds":
        bounds = [int(b.timestamp()) for b in bounds]
    with duckdb.connect(str(src.database_path()), read_only=True) as con:
        present = table_columns(con, src.table)
        missing = [c for c in config.raw_columns() if c not in present]
        if missing:
            log.warning("%s lacks the configured columns %s: left out, validate files them", src.table, missing)
        cols = ", ".join(f'"{c}"' for c in config.raw_columns() if c in present)
        sql = (f'SELECT {cols} FROM {src.table} WHERE "{src.timestamp_column}" >= ? '
               f'AND "{src.timestamp_column}" < ? ORDER BY "{src.timestamp_column}"')
        yield from con.sql(sql, params=bounds).to_arrow_reader(BATCH_ROWS)


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


def write_splits(config, batches: Iterable[pa.RecordBatch], folder: Path) -> dict[str, int]:
    """Each row as a tf.Example into the shards of `folder/<split>/`; the rows written per split."""
    with ExitStack() as stack:
        out = {}
        for split in SPLITS:
            out[split] = _ShardWriter(folder / split)
            stack.callback(out[split].close)
        for batch in batches:
            for key, example in zip(row_keys(batch, split_key(config)), to_examples(batch)):
                out[split_of(key, config.split.eval_percent)].write(example)
    return {split: writer.rows for split, writer in out.items()}


def run(config, output_dir: Path, span_date: dt.date, window_days: int | None = None,
        rows_file: Path | None = None) -> dict:
    """`rows_file`: the window's rows already extracted as an Arrow IPC file (BigQuery, read on
    the Airflow side through the provider's hook); otherwise the DuckDB source is queried."""
    preflight.check(config)  # a config or module mistake stops here, in a second, before data moves
    start, end = window(config, span_date, window_days)
    with artifacts.atomic_dir(output_dir) as tmp:
        rows = write_splits(config, batches(config, start, end, rows_file), tmp)
        if not sum(rows.values()):  # written as an empty span: validate files it as an anomaly
            log.warning("no rows in %s for window [%s, %s)", config.source.table, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}")
        result = {"examples": str(output_dir), "rows": rows,
                  "window": {"start": start.isoformat(), "end": end.isoformat()}}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
