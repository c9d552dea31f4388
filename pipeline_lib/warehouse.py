"""Put a table into the embedded DuckDB warehouse (the local stand-in for BigQuery).

    python -m pipeline_lib.warehouse load FILE --table NAME --timestamp-column COL [--append]

FILE is CSV or Parquet (by its suffix). Column types are inferred (DuckDB's CSV sniffer, Parquet's
own types); the timestamp column becomes a TIMESTAMP (from ISO strings, or from epoch seconds with
`--timestamp-unit epoch_seconds`), so a pipeline reads it with `timestamp_unit: timestamp`.
`--append` adds the rows to an existing table whose columns must match; otherwise the table is
replaced. Either way it happens in one transaction: a bad file leaves the table as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import duckdb

from pipeline_lib import settings

READERS = {".csv": "read_csv", ".parquet": "read_parquet"}
TimestampUnit = Literal["timestamp", "epoch_seconds"]


class LoadError(ValueError):
    """A file that cannot be loaded as asked; the message says why."""


def _reader(file: Path, columns: dict[str, str] | None) -> tuple[str, list]:
    """The SELECT that reads `file`: DuckDB infers types unless `columns` (CSV) fixes them."""
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        raise LoadError(f"{file}: expected one of {sorted(READERS)}")
    if not file.is_file():
        raise LoadError(f"{file}: no such file")
    options = ""
    if reader == "read_csv":
        options = ", header=true, nullstr=''" + (f", columns={columns!r}" if columns else "")
    return f"SELECT * FROM {reader}(?{options})", [str(file)]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select_with_timestamp(con, select: str, params: list, column: str | None, unit: TimestampUnit | None) -> str:
    """`select` with `column` converted to TIMESTAMP (unit None: the column's types stay as read)."""
    if column is None or unit is None:
        return select
    described = [row[0] for row in con.execute(f"DESCRIBE {select}", params).fetchall()]
    if column not in described:
        raise LoadError(f"--timestamp-column {column!r} is not a column of the file; its columns: {described}")
    source = _quote(column)
    converted = f"to_timestamp({source})::TIMESTAMP" if unit == "epoch_seconds" else f"{source}::TIMESTAMP"
    return f"SELECT * REPLACE ({converted} AS {source}) FROM ({select})"


def load(file: str | Path, table: str, *, database: str | Path | None = None, timestamp_column: str | None = None,
         timestamp_unit: TimestampUnit | None = "timestamp", append: bool = False,
         columns: dict[str, str] | None = None) -> int:
    """Load `file` into `table` of the warehouse (default: settings.warehouse_path()); returns the
    table's row count afterwards. `timestamp_unit=None` keeps the timestamp column as read."""
    file, database = Path(file), Path(database or settings.warehouse_path())
    select, params = _reader(file, columns)
    database.parent.mkdir(parents=True, exist_ok=True)
    new = not database.exists()
    try:
        with duckdb.connect(str(database)) as con:
            select = _select_with_timestamp(con, select, params, timestamp_column, timestamp_unit)
            con.begin()
            try:
                if append:
                    _append(con, table, select, params)
                else:
                    con.execute(f"CREATE OR REPLACE TABLE {_quote(table)} AS {select}", params)
                rows = con.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0]
                con.commit()
            except BaseException:
                con.rollback()
                raise
    except BaseException:
        if new:  # no empty warehouse left behind to be taken as loaded
            database.unlink(missing_ok=True)
        raise
    return rows


def table_columns(con, table: str) -> dict[str, str]:
    """The table's columns and their SQL types, as the warehouse has them now (`table` as a
    pipeline config names it, schema-qualified or not)."""
    return {name: kind for name, kind, *_ in con.sql(f"DESCRIBE {table}").fetchall()}


def _append(con, table: str, select: str, params: list) -> None:
    try:
        existing = table_columns(con, table)
    except duckdb.CatalogException:
        raise LoadError(f"--append: table {table!r} does not exist (load it once without --append)") from None
    incoming = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE {select}", params).fetchall()}
    if set(incoming) != set(existing):
        raise LoadError(f"--append: the file's columns differ from table {table!r}: "
                        f"missing {sorted(set(existing) - set(incoming))}, extra {sorted(set(incoming) - set(existing))}")
    names = ", ".join(_quote(c) for c in existing)
    con.execute(f"INSERT INTO {_quote(table)} ({names}) SELECT {names} FROM ({select})", params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pipeline_lib.warehouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("load", help="load a CSV or Parquet file as a table")
    p.add_argument("file", type=Path)
    p.add_argument("--table", required=True)
    p.add_argument("--timestamp-column", required=True, help="the column a pipeline's window reads")
    p.add_argument("--timestamp-unit", choices=["timestamp", "epoch_seconds"], default="timestamp",
                   help="how the file holds it: timestamps (ISO strings) or epoch seconds")
    p.add_argument("--append", action="store_true", help="add rows to the table instead of replacing it")
    p.add_argument("--database", type=Path, help="DuckDB file (default: PIPELINE_WAREHOUSE or .data/warehouse.duckdb)")
    args = parser.parse_args(argv)
    try:
        rows = load(args.file, args.table, database=args.database, timestamp_column=args.timestamp_column,
                    timestamp_unit=args.timestamp_unit, append=args.append)
    except (LoadError, duckdb.Error) as e:
        raise SystemExit(f"not loaded: {e}") from None
    print(f"table {args.table} now holds {rows:,} rows ({args.database or settings.warehouse_path()})")


if __name__ == "__main__":
    main()
