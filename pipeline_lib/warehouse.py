"""Put a table into the embedded DuckDB warehouse (the local stand-in for BigQuery).

    python -m pipeline_lib.warehouse load FILE --table NAME --timestamp-column COL [--append] [--null NA ...]

FILE is CSV or Parquet (by its suffix). Column types are inferred (DuckDB's CSV sniffer, Parquet's
own types); the timestamp column becomes a TIMESTAMP (from ISO strings, or from epoch seconds with
`--timestamp-unit epoch_seconds`), so a pipeline reads it with `timestamp_unit: timestamp`.
`--append` adds the rows to an existing table whose columns must match; otherwise the table is
replaced. Either way it happens in one transaction: a bad file leaves the table as it was.

Missing values in a CSV: an empty cell is always null. The common words for a missing value
(MISSING_MARKERS: NA, N/A, NaN, null, ...) are null in a column whose other values are numbers or
dates, where they cannot be data; in a text column they stay text (NA may be Namibia), with a
warning. `--null NA` makes that word null in every column. The command prints each column's type
and null count, and warns about a text column that holds such words.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from pipeline_lib import settings

READERS = {".csv": "read_csv", ".parquet": "read_parquet"}
TimestampUnit = Literal["timestamp", "epoch_seconds"]
# words a CSV writes for a missing value (R's and pandas' among them)
MISSING_MARKERS = ("NA", "N/A", "n/a", "#N/A", "NaN", "nan", "null", "NULL", "None")


class LoadError(ValueError):
    """A file that cannot be loaded as asked; the message says why."""


@dataclass
class Loaded:
    """What a load left: the table's row count and its columns' (SQL type, null count); the
    missing-value words read as null and the columns they were read so in; warnings about such
    words the table still holds as text."""

    rows: int
    columns: dict[str, tuple[str, int]]
    markers: list[str] = field(default_factory=list)
    nulled: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _reader(con, file: Path, columns: dict[str, str] | None, nulls: list[str] | None) -> tuple[str, list, list, list]:
    """(the SELECT that reads `file`, its parameters, the markers read as null, the columns they
    are null in). DuckDB infers types unless `columns` (CSV) fixes them; a CSV's markers follow the
    rule in the module's docstring."""
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        raise LoadError(f"{file}: expected one of {sorted(READERS)}")
    if not file.is_file():
        raise LoadError(f"{file}: no such file")
    if reader == "read_parquet":
        return "SELECT * FROM read_parquet(?)", [str(file)], [], []

    def csv(markers):
        fixed = f", columns={columns!r}" if columns else ""
        return f"SELECT * FROM read_csv(?, header=true, nullstr=?{fixed})", [str(file), ["", *markers]]

    if nulls is not None:  # the user's words: null in every column (`--null ''`: none but the empty cell)
        words = [m for m in nulls if m]
        select, params = csv(words)
        return select, params, words, list(_describe(con, select, params)) if words else []
    select, params = csv([])
    plain, marked = _describe(con, select, params), _describe(con, *csv(MISSING_MARKERS))
    # a column that is text only because of markers: the sniffer's type once they are null, cast to
    # in SQL (nullstr holds for every column, and force_not_null turns a matched cell into '', not
    # back into its word)
    typed = {c: marked[c] for c in plain if plain[c] == "VARCHAR" and marked[c] != "VARCHAR"}
    if not typed:
        return select, params, [], []
    markers = ", ".join(_literal(m) for m in MISSING_MARKERS)
    casts = ", ".join(f"CAST(CASE WHEN {quote(c)} IN ({markers}) THEN NULL ELSE {quote(c)} END AS {kind}) AS {quote(c)}"
                      for c, kind in typed.items())
    return f"SELECT * REPLACE ({casts}) FROM ({select})", params, list(MISSING_MARKERS), list(typed)


def _describe(con, select: str, params: list) -> dict[str, str]:
    return {name: kind for name, kind, *_ in con.execute(f"DESCRIBE {select}", params).fetchall()}


def quote(name: str) -> str:
    """A column or table name as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _select_with_timestamp(con, select: str, params: list, column: str | None, unit: TimestampUnit | None) -> str:
    """`select` with `column` converted to TIMESTAMP (unit None: the column's types stay as read)."""
    if column is None or unit is None:
        return select
    described = list(_describe(con, select, params))
    if column not in described:
        raise LoadError(f"--timestamp-column {column!r} is not a column of the file; its columns: {described}")
    source = quote(column)
    converted = f"to_timestamp({source})::TIMESTAMP" if unit == "epoch_seconds" else f"{source}::TIMESTAMP"
    return f"SELECT * REPLACE ({converted} AS {source}) FROM ({select})"


def load(file: str | Path, table: str, *, database: str | Path | None = None, timestamp_column: str | None = None,
         timestamp_unit: TimestampUnit | None = "timestamp", append: bool = False,
         columns: dict[str, str] | None = None, nulls: list[str] | None = None) -> Loaded:
    """Load `file` into `table` of the warehouse (default: settings.warehouse_path()); what the
    table holds afterwards. `timestamp_unit=None` keeps the timestamp column as read. `nulls`: the
    CSV's words for a missing value, null in every column (None: MISSING_MARKERS where safe)."""
    file, database = Path(file), Path(database or settings.warehouse_path())
    database.parent.mkdir(parents=True, exist_ok=True)
    new = not database.exists()
    try:
        with duckdb.connect(str(database)) as con:
            select, params, markers, nulled = _reader(con, file, columns, nulls)
            select = _select_with_timestamp(con, select, params, timestamp_column, timestamp_unit)
            con.begin()
            try:
                if append:
                    _append(con, table, select, params)
                else:
                    con.execute(f"CREATE OR REPLACE TABLE {quote(table)} AS {select}", params)
                loaded = _summary(con, table, markers, nulled, check_text=file.suffix.lower() == ".csv")
                con.commit()
            except BaseException:
                con.rollback()
                raise
    except BaseException:
        if new:  # no empty warehouse left behind to be taken as loaded
            database.unlink(missing_ok=True)
        raise
    return loaded


def _summary(con, table: str, markers: list[str], nulled: list[str], check_text: bool) -> Loaded:
    """The table's rows and columns, and (`check_text`) a warning for each text column holding
    MISSING_MARKERS: text only because of them (--null makes it a number column), or text
    anyway (they may be values: only the user can tell)."""
    types = table_columns(con, quote(table))
    counts = con.execute("SELECT count(*), " + ", ".join(f"count(*) - count({quote(c)})" for c in types)
                         + f" FROM {quote(table)}").fetchone()
    loaded = Loaded(counts[0], {c: (kind, n) for (c, kind), n in zip(types.items(), counts[1:])}, markers, nulled)
    if not check_text:
        return loaded
    words = ", ".join(_literal(m) for m in MISSING_MARKERS)
    for c in [c for c, kind in types.items() if kind == "VARCHAR"]:
        found, cells, numbers = con.execute(
            f"SELECT list(DISTINCT {quote(c)} ORDER BY {quote(c)}) FILTER ({quote(c)} IN ({words})), "
            f"count(*) FILTER ({quote(c)} IN ({words})), "
            f"bool_and({quote(c)} IN ({words}) OR TRY_CAST({quote(c)} AS DOUBLE) IS NOT NULL) "
            f"FROM {quote(table)}").fetchone()
        if not cells:
            continue
        flag = " ".join(f"--null {m}" for m in found)
        if numbers:
            loaded.warnings.append(f"column {c!r} is text (VARCHAR) only because of {cells} cell(s) {found}: "
                                   f"load with {flag} to read them as missing and the column as numbers")
        else:
            loaded.warnings.append(f"column {c!r} keeps {cells} cell(s) {found} as text, its other values being "
                                   f"text too (they may be values, e.g. a code): if they mean missing, load with {flag}")
    return loaded


def table_columns(con, table: str) -> dict[str, str]:
    """The table's columns and their SQL types, as the warehouse has them now (`table` as a
    pipeline config names it, schema-qualified or not)."""
    return {name: kind for name, kind, *_ in con.sql(f"DESCRIBE {table}").fetchall()}


def _append(con, table: str, select: str, params: list) -> None:
    try:
        existing = table_columns(con, table)
    except duckdb.CatalogException:
        raise LoadError(f"--append: table {table!r} does not exist (load it once without --append)") from None
    incoming = _describe(con, select, params)
    if set(incoming) != set(existing):
        raise LoadError(f"--append: the file's columns differ from table {table!r}: "
                        f"missing {sorted(set(existing) - set(incoming))}, extra {sorted(set(incoming) - set(existing))}")
    names = ", ".join(quote(c) for c in existing)
    con.execute(f"INSERT INTO {quote(table)} ({names}) SELECT {names} FROM ({select})", params)


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
    p.add_argument("--null", action="append", metavar="WORD",
                   help="a CSV's word for a missing value, null in every column (repeatable; default: "
                        f"{', '.join(MISSING_MARKERS)} in columns that are otherwise numbers or dates)")
    args = parser.parse_args(argv)
    try:
        loaded = load(args.file, args.table, database=args.database, timestamp_column=args.timestamp_column,
                      timestamp_unit=args.timestamp_unit, append=args.append, nulls=args.null)
    except (LoadError, duckdb.Error) as e:
        raise SystemExit(f"not loaded: {e}") from None
    print(f"table {args.table} now holds {loaded.rows:,} rows ({args.database or settings.warehouse_path()})")
    width = max(len(c) for c in loaded.columns)
    print(f"  {'column':<{width}}  {'type':<12} nulls")
    for c, (kind, nulls) in loaded.columns.items():
        print(f"  {c:<{width}}  {kind:<12} {nulls:,}")
    if loaded.nulled:
        where = "every column" if len(loaded.nulled) == len(loaded.columns) else ", ".join(loaded.nulled)
        print(f"read as missing: {', '.join(loaded.markers)} in {where}")
    for warning in loaded.warnings:
        print(f"warning: {warning}")


if __name__ == "__main__":
    main()
