"""Preflight: a pipeline's config checked against its module, its schema and its source table in
about a second, before any data moves.

    python -m pipeline_lib.preflight --config pipelines/<name>/pipeline.yaml   (ML environment)

Mistakes in the config or the module are errors: a column that neither the table nor the schema
has (a typo), a column of the wrong type for its feature kind, a module function that is missing or
takes the wrong arguments, a column the preprocessing_fn reads that the config does not list.
Ingest runs the same check first and stops on errors. A column that the curated schema knows but
the table lacks, or holds with another type, is a change in the data rather than a mistake: it is
reported as a warning here, and validate files it as an anomaly.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_lib.config import ConfigError, load_config

# which schema types (tensorflow_metadata FeatureType) and table types each config field's columns take
FIELD_TYPES = {"features.numeric": {"INT", "FLOAT"}, "features.bucketized": {"INT", "FLOAT"},
               "features.categorical": {"INT"}, "features.vocabulary": {"INT", "BYTES"},
               "label.raw_columns": {"INT", "FLOAT", "BYTES"}}
# the module's functions and the parameters the platform passes them, by config field
MODULE_FUNCTIONS = {"preprocessing_fn": ("inputs", "config"), "model_fn": ("config", "tf_transform_output")}


class PreflightError(ValueError):
    """A config or module mistake; the message lists every one found."""


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def source_columns(config) -> dict[str, str] | None:
    """The source table's columns and their SQL types; None where the table is not readable from
    here (BigQuery: read on the Airflow side)."""
    if config.source.kind != "duckdb":
        return None
    import duckdb

    from pipeline_lib.warehouse import table_columns

    with duckdb.connect(str(config.source.database_path()), read_only=True) as con:
        try:
            return table_columns(con, config.source.table)
        except duckdb.CatalogException:
            raise PreflightError(f"field 'source.table': no table {config.source.table!r} in "
                                 f"{config.source.database_path()} (load one with `python -m pipeline_lib.warehouse load`)") from None


def _not_numbers(config, column: str) -> str:
    """Why a text column is not numbers: its most frequent values that are not, and where they
    are all words for a missing value (the loader's MISSING_MARKERS), the loader's fix."""
    import duckdb

    from pipeline_lib.warehouse import MISSING_MARKERS, quote

    c = quote(column)
    with duckdb.connect(str(config.source.database_path()), read_only=True) as con:
        found = con.execute(f"SELECT {c}, count(*) AS n FROM {config.source.table} WHERE {c} IS NOT NULL AND "
                            f"TRY_CAST({c} AS DOUBLE) IS NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT 4").fetchall()
    if not found:
        return ""
    listed = ", ".join(f"{value!r} ({n:,} rows)" for value, n in found[:3]) + (", ..." if len(found) > 3 else "")
    if all(value in MISSING_MARKERS for value, _ in found):
        flags = " ".join(f"--null {value}" for value, _ in found)
        return (f": its values that are not numbers are {listed}, a word for a missing value read as text; "
                f"load the file again with `python -m pipeline_lib.warehouse load ... {flags}`")
    return f": its values that are not numbers: {listed}"


def _feature_type(sql_type: str) -> str:
    """How ingest writes a column of this DuckDB type into tf.Examples (ingest._as_feature_list)."""
    t = sql_type.upper()
    if t.startswith(("TIMESTAMP", "DATE")):
        return "TIMESTAMP"
    if any(t.startswith(p) for p in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                     "USMALLINT", "UINTEGER", "UBIGINT", "BOOLEAN")):
        return "INT"
    if any(t.startswith(p) for p in ("FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC")):
        return "FLOAT"
    return "BYTES"


def schema_types(config) -> dict[str, str] | None:
    """The curated schema's features and types; None before the first run infers it."""
    path = config.schema_path()
    if not path.exists():
        return None
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(path.read_text(), schema_pb2.Schema())
    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


def check_columns(config, sql_types: dict[str, str] | None, schema: dict[str, str] | None, report: Report) -> None:
    """The config's columns against the table (`sql_types`, None: not readable from here) and the
    schema (None: no schema yet). A table's type is named as the warehouse has it, with the
    FeatureType ingest writes it as: 'VARCHAR (BYTES)'."""
    table = None if sql_types is None else {c: _feature_type(t) for c, t in sql_types.items()}
    listing = f"; the table's columns: {', '.join(table)}" if table is not None else ""

    def typed(col):
        return f"{sql_types[col]} ({table[col]})" if sql_types[col] != table[col] else table[col]

    for where, col in config.columns_by_field():
        if where not in FIELD_TYPES:  # the timestamp column: below
            continue
        kind = where.split(".")[-1] if where.startswith("features.") else "label"
        known = schema is not None and col in schema
        if schema is not None and not known:
            report.errors.append(f"field '{where}': {col!r} is not in the schema ({config.validation.schema_file})"
                                 + ("" if table is None or col in table else f" nor in table {config.source.table}{listing}"))
            continue
        if known and schema[col] not in FIELD_TYPES[where]:
            report.errors.append(f"field '{where}': {col!r} is {schema[col]} in the schema, "
                                 f"a {kind} column takes {'/'.join(sorted(FIELD_TYPES[where]))}")
        if table is None:
            continue
        if col not in table:
            (report.warnings if known else report.errors).append(
                f"field '{where}': {col!r} is not in table {config.source.table}"
                + (" (the schema has it: validate files the missing column as an anomaly)" if known else listing))
        elif known and table[col] != schema[col]:
            report.warnings.append(f"{col!r} is {typed(col)} in table {config.source.table} but {schema[col]} in the "
                                   "schema: validate files the type change as an anomaly")
        elif not known and table[col] not in FIELD_TYPES[where]:
            cause = _not_numbers(config, col) if table[col] == "BYTES" and "BYTES" not in FIELD_TYPES[where] else ""
            report.errors.append(f"field '{where}': {col!r} is {typed(col)} in table {config.source.table}, "
                                 f"a {kind} column takes {'/'.join(sorted(FIELD_TYPES[where]))}{cause}")
    ts, unit = config.source.timestamp_column, config.source.timestamp_unit
    if table is not None:
        want = "INT" if unit == "epoch_seconds" else "TIMESTAMP"
        if ts not in table:
            report.errors.append(f"field 'source.timestamp_column': {ts!r} is not in table {config.source.table}{listing}")
        elif table[ts] != want:
            report.errors.append(f"field 'source.timestamp_unit': {ts!r} is {typed(ts)} in table "
                                 f"{config.source.table}, timestamp_unit {unit} reads {want}")


def check_module(config, report: Report) -> None:
    """The module's functions and arguments, read from its source without importing it (importing
    means importing TensorFlow: seconds). What it does not define, the platform provides."""
    path = config.module_path()
    functions = {}
    if path is not None:
        try:
            tree = ast.parse(path.read_text(), str(path))
        except SyntaxError as e:
            report.errors.append(f"field 'module.file': {path}:{e.lineno}: {e.msg}")
            return
        functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    own_preprocessing = config.module and config.module.preprocessing_fn in functions
    if not own_preprocessing and len(config.label.raw_columns) != 1:
        report.errors.append(f"field 'label.raw_columns': the platform's preprocessing_fn takes the label from one "
                             f"column as it is, not {config.label.raw_columns}: define a preprocessing_fn")
    for attr, expected in MODULE_FUNCTIONS.items():
        name = getattr(config.module, attr) if config.module else None
        fn = functions.get(name)
        if fn is None:
            if config.module and attr in config.module.model_fields_set:
                report.errors.append(f"field 'module.{attr}': {path.name} defines no function {name}")
            continue
        params = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
        if params[:len(expected)] != list(expected) and not fn.args.vararg:
            report.errors.append(f"field 'module.{attr}': {name}{_signature(fn)} in {path.name} line {fn.lineno} "
                                 f"must take ({', '.join(expected)})")
        if attr == "preprocessing_fn" and params:
            read = _subscripted_keys(fn, params[0])
            unknown = sorted(read - set(config.raw_columns()))
            if unknown:
                report.errors.append(f"field 'module.preprocessing_fn': {name} reads {params[0]}{unknown} in "
                                     f"{path.name}, columns the config does not list (it reads {config.raw_columns()})")


def _signature(fn: ast.FunctionDef) -> str:
    return "(" + ", ".join(a.arg for a in (*fn.args.posonlyargs, *fn.args.args)) + ")"


def _subscripted_keys(fn: ast.FunctionDef, param: str) -> set[str]:
    """String keys the function reads as `param["key"]`."""
    return {n.slice.value for n in ast.walk(fn)
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == param
            and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str)}


def run(config) -> Report:
    report = Report()
    check_module(config, report)
    check_columns(config, source_columns(config), schema_types(config), report)
    return report


def check(config) -> Report:
    """Raise PreflightError listing every mistake; the report (with warnings) otherwise."""
    report = run(config)
    if report.errors:
        raise PreflightError(f"{config.config_dir / 'pipeline.yaml'}: preflight found {len(report.errors)} "
                             "mistake(s):\n" + "\n".join(f"  - {e}" for e in report.errors))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pipeline_lib.preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        report = check(load_config(args.config, check_schema=False))
    except (ConfigError, PreflightError) as e:
        raise SystemExit(str(e)) from None
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"{args.config}: preflight ok")


if __name__ == "__main__":
    main()
