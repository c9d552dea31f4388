"""Validation depth, at the function level on small real data (the taxi rows of SPAN's window,
changed the way real data goes wrong): schema breaks, drift against the previous span, skew against
serving-time data, spans that cannot be validated, and the schema change `accept` applies; then the
corpus of tests/validation_corpus.py (clean spans: no blocking finding; faults: each caught), all of
a corpus' statistics in one Beam pipeline."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow_data_validation as tfdv

import validation_corpus as corpus
from conftest import SPAN
from pipeline_lib import artifacts, schema_changes, tfrecord, warehouse
from pipeline_lib.span import window
from pipeline_lib.steps import ingest, validate

LATER = SPAN + dt.timedelta(days=1)


def write_span(config, span: dt.date, table: pa.Table) -> str:
    """Rows as ingest writes them (tf.Examples split by row hash) for `span`; returns the folder."""
    out = artifacts.step_dir(config.name, span, "ingest")
    with artifacts.atomic_dir(out) as tmp:
        rows = ingest.write_splits(config, table.to_batches(), tmp)
        start, end = ingest.window(config, span)
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, {"examples": str(out), "rows": rows,
                             "window": {"start": start.isoformat(), "end": end.isoformat()}})
    return str(out)


def validate_span(config, span, table) -> dict:
    examples = write_span(config, span, table)
    return validate.run(config, artifacts.step_dir(config.name, span, "validate"), examples)


def replace(table: pa.Table, column: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(column), column, values)


def head_replaced(table, column, value, count):
    """The first `count` rows get `value` in `column` (None: missing)."""
    rest = table[column].to_pylist()[count:]
    return replace(table, column, pa.array([value] * count + rest, table.schema.field(column).type))


@pytest.fixture(scope="module")
def rows(config):
    return pa.Table.from_batches(list(ingest.batches(config, *ingest.window(config, SPAN))))


def by_key(result) -> dict[tuple[str, str], dict]:
    found = {(a["feature"], a["kind"]): a for a in result["anomalies"]}
    assert len(found) == len(result["anomalies"]), "one finding per (feature, kind)"
    return found


@pytest.fixture(scope="module")
def broken(make_config, rows):
    """One span with five things wrong at once (one Beam pipeline): a new payment type, a dropped
    column, fare as strings, half of trip_miles missing, pickups far outside Chicago."""
    config = make_config({"validation": {"features": {"trip_miles": {"severity": "warning"}}}}, name="taxi_broken")
    n = rows.num_rows
    table = head_replaced(rows, "payment_type", "Bitcoin", 60)
    table = table.drop(["trip_seconds"])
    table = replace(table, "fare", pc.cast(table["fare"], pa.string()))
    table = head_replaced(table, "trip_miles", None, n // 2)
    table = head_replaced(table, "pickup_latitude", 48.5, 10)
    return config, validate_span(config, SPAN, table)


def test_schema_breaks_are_detected_with_severity_and_examples(broken, rows):
    _, result = broken
    found = by_key(result)
    assert set(found) == {("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
                          ("trip_seconds", "SCHEMA_MISSING_COLUMN"),
                          ("fare", "UNEXPECTED_DATA_TYPE"),
                          ("trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
                          ("pickup_latitude", "FLOAT_TYPE_BIG_FLOAT")}
    new_value = found["payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"]
    assert new_value["examples"] == ["'Bitcoin'"] and "Bitcoin" in new_value["description"]
    assert new_value["splits"] == ["train", "eval"] and new_value["severity"] == "blocking"
    assert [Path(p).name for p in new_value["statistics"].split(",")] == ["train.stats.tfrecord", "eval.stats.tfrecord"]
    assert found["trip_seconds", "SCHEMA_MISSING_COLUMN"]["examples"][0].startswith("absent from all")
    assert "Expected data of type: FLOAT but got STRING" in found["fare", "UNEXPECTED_DATA_TYPE"]["description"]
    missing = found["trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT"]
    assert missing["severity"] == "warning", "per-feature severity from the config"
    assert any(e.startswith("missing in ") and e.endswith("(51%)") for e in missing["examples"]), missing["examples"]
    far = found["pickup_latitude", "FLOAT_TYPE_BIG_FLOAT"]
    assert "max 48.5" in far["examples"] and "48.5>42.1" in far["description"]
    assert result["blocking"] == 4


def test_accept_applies_the_implied_schema_change(broken, rows):
    config, result = broken
    schema_file = config.schema_path()
    found = by_key(result)
    header = schema_file.read_text().splitlines()[0]
    for feature, kind in [("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
                          ("trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
                          ("pickup_latitude", "FLOAT_TYPE_BIG_FLOAT"),
                          ("trip_seconds", "SCHEMA_MISSING_COLUMN")]:
        change = schema_changes.apply(schema_file, kind, feature, found[feature, kind]["statistics"])
        assert change["changed"] is True
        assert change["diff"].startswith(f"--- {schema_file}")
    assert schema_file.read_text().splitlines()[0] == header, "the curators' comments stay"
    schema = tfdv.load_schema_text(str(schema_file))
    assert "Bitcoin" in tfdv.get_domain(schema, "payment_type").value
    assert tfdv.get_feature(schema, "trip_miles").presence.min_fraction == pytest.approx(0.49), "the lower of the splits"
    assert tfdv.get_feature(schema, "pickup_latitude").float_domain.max == 49
    assert tfdv.get_feature(schema, "trip_seconds").presence.min_count == 0
    with pytest.raises(schema_changes.CannotAccept, match="UNEXPECTED_DATA_TYPE has no schema change"):
        schema_changes.apply(schema_file, "UNEXPECTED_DATA_TYPE", "fare", None)
    assert schema_changes.apply(schema_file, "DRIFT", "payment_type", None)["changed"] is False

    table = head_replaced(rows, "payment_type", "Bitcoin", 60).drop(["trip_seconds"])
    table = head_replaced(head_replaced(table, "trip_miles", None, rows.num_rows // 2), "pickup_latitude", 48.5, 10)
    assert validate_span(config, LATER, table)["anomalies"] == [], "the accepted changes now pass"


def test_drift_against_the_previous_span(make_config, rows):
    config = make_config(name="taxi_drift")
    first = validate_span(config, SPAN, rows)
    assert first["anomalies"] == [] and first["previous_statistics"] is None
    drifted = head_replaced(rows, "payment_type", "Credit Card", rows.num_rows * 2 // 3)
    result = validate_span(config, LATER, drifted)
    assert result["previous_statistics"] == first["statistics"]["train"]
    (drift,) = result["anomalies"]
    assert (drift["feature"], drift["kind"], drift["severity"]) == ("payment_type", "DRIFT", "warning")
    assert "largest change of a value's share (L-infinity) 0.470" in drift["description"]
    assert "> threshold 0.15 (p-value" in drift["description"] and drift["splits"] == ["train"]
    assert drift["examples"][0] == "'Credit Card' 30% -> 77%" and drift["statistic"] == pytest.approx(0.47, abs=0.01)


def test_skew_against_serving_time_data_which_lacks_the_label(make_config, rows):
    config = make_config(name="taxi_skew")
    serving = replace(rows, "fare", pc.multiply(rows["fare"], 4.0)).drop(["tips"])
    folder = artifacts.pipeline_root(config.name) / "serving_data"
    folder.mkdir(parents=True)
    tfrecord.write(folder / "requests.tfrecord", ingest.to_examples(serving))
    result = validate_span(config, SPAN, rows)
    assert set(result["statistics"]) == {"train", "eval", "serving"}
    (skew,) = result["anomalies"]
    assert (skew["feature"], skew["kind"], skew["severity"]) == ("fare", "SKEW", "warning")
    assert "Wasserstein distance / interdecile range" in skew["description"] and "> threshold 0.1" in skew["description"]
    assert skew["examples"] and all(e.startswith("p") and " -> " in e for e in skew["examples"])


def test_spans_that_cannot_be_validated_are_anomalies_not_errors(make_config, rows):
    config = make_config(name="taxi_unreadable")
    empty = validate_span(config, SPAN, rows.slice(0, 0))
    (finding,) = empty["anomalies"]
    assert (finding["feature"], finding["kind"], finding["severity"]) == ("(data)", "EMPTY_SPAN", "blocking")
    assert finding["description"].startswith("the span has no rows: nothing in the source for window [")
    assert empty["statistics"] == {}

    examples = Path(write_span(config, LATER, rows))
    data = examples / "eval" / "data-00000.tfrecord"
    data.write_bytes(data.read_bytes()[:-7])
    result = validate.run(config, artifacts.step_dir(config.name, LATER, "validate"), str(examples))
    (finding,) = result["anomalies"]
    assert finding["kind"] == "UNREADABLE_DATA" and finding["splits"] == ["eval"]
    assert f"the eval split cannot be read: {data}: record" in finding["description"]
    assert set(result["statistics"]) == {"train"}, "the readable split is still validated"


def statistics_of(config, tables: dict[str, pa.Table], windows: dict[str, tuple], folder: Path) -> dict[str, dict]:
    """Each table written as ingest writes it, all their statistics computed in one Beam pipeline;
    per table: its statistics and files per split and the data's own findings (empty, unreadable)."""
    patterns, out = {}, {}
    for name, table in tables.items():
        examples = folder / name
        examples.mkdir(parents=True)
        rows = ingest.write_splits(config, table.to_batches(), examples)
        start, end = window(config, *windows[name])
        found_patterns, found = validate.readable_splits(examples, rows, {"start": start.isoformat(), "end": end.isoformat()})
        patterns.update({f"{name}.{split}": pattern for split, pattern in found_patterns.items()})
        out[name] = {"found": found, "stats": {}, "files": {}}
    paths = validate.compute_statistics(config, patterns, folder, sum(t.num_rows for t in tables.values()))
    for key, path in paths.items():
        name, split = key.rsplit(".", 1)
        out[name]["stats"][split] = tfdv.load_stats_binary(str(path))
        out[name]["files"][split] = path
    return out


def check(config, span: dict, previous: dict | None) -> list[dict]:
    schema = validate.load_schema(config.schema_path())
    return validate.check(config, span["stats"], schema, previous and previous["stats"].get("train"),
                          span["files"], span["found"])[0]


def span_rows(config, span, days):
    return pa.Table.from_batches(list(ingest.batches(config, *window(config, span, days))))


def test_clean_spans_raise_no_blocking_anomaly_and_no_drift(make_config, tmp_path):
    """21 clean spans (30 days to a year, some resampled), each against the one before it."""
    config = make_config(name="taxi_clean")
    spans = corpus.clean_spans()
    tables = {str(i): corpus.resample(span_rows(config, span, days), keep, seed=i)
              for i, (span, days, keep) in enumerate(spans)}
    assert len(tables) >= 20 and min(t.num_rows for t in tables.values()) > 40
    stats = statistics_of(config, tables, {str(i): (span, days) for i, (span, days, _) in enumerate(spans)}, tmp_path)
    found = {name: check(config, stats[name], stats.get(str(int(name) - 1))) for name in tables}
    assert {name: f for name, f in found.items() if f} == {}, "no finding on clean data"


def test_every_fault_is_caught_on_its_feature_only(make_config, tmp_path):
    """One later span per fault, against the same history span: the fault is found on its feature
    (blocking for schema breaks, a drift warning for shifts) and nothing else is."""
    config = make_config(name="taxi_faults")
    history_span, history_days = corpus.HISTORY
    case_rows = span_rows(config, corpus.CASE_SPAN, corpus.CASE_WINDOW)
    tables = {"history": span_rows(config, history_span, history_days),
              **{name: change(case_rows) for name, (change, _, _) in corpus.FAULTS.items()}}
    windows = {name: (corpus.CASE_SPAN, corpus.CASE_WINDOW) for name in corpus.FAULTS}
    stats = statistics_of(config, tables, {**windows, "history": (history_span, history_days)}, tmp_path)
    assert check(config, stats["history"], None) == []
    for name, (_, feature, expect) in corpus.FAULTS.items():
        found = check(config, stats[name], stats["history"])
        assert found and {f["feature"] for f in found} == {feature}, (name, found)
        severities = {f["severity"] for f in found}
        assert ("blocking" in severities) if expect == "blocking" else (severities == {"warning"}), (name, found)
    fares = check(config, stats["fares x1.2"], stats["history"])
    assert [(f["kind"], f["severity"]) for f in fares] == [("DRIFT", "warning")]
    assert "threshold 0.1" in fares[0]["description"] and "moved most: p" in fares[0]["description"]


def test_the_split_depends_on_the_key_only(config, rows, tmp_path):
    """Corrupting a feature column moves no row between train and eval (default key: the timestamp)."""
    corrupted = replace(rows, "fare", pc.multiply(rows["fare"], 3.0))

    def timestamps(table, folder):
        folder.mkdir()
        ingest.write_splits(config, table.to_batches(), folder)
        return {split: sorted(value(e) for e in tfrecord_examples(folder / split)) for split in ingest.SPLITS}

    assert timestamps(rows, tmp_path / "a") == timestamps(corrupted, tmp_path / "b")


def tfrecord_examples(folder: Path):
    import tensorflow as tf

    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset([str(f) for f in folder.glob("*")])]


def value(example):
    return example.features.feature["trip_start_timestamp"].int64_list.value[0]


def test_the_label_is_checked_after_transform(make_config, rows):
    """The label the preprocessing_fn computes, on both splits against the previous span: a single
    class blocks (every tip 0); a class share that moved or a shifted regression target does too."""
    from pipeline_lib import label_check
    from pipeline_lib.steps import transform

    config = make_config(name="taxi_label")

    def transformed(span, table):
        return transform.run(config, artifacts.step_dir(config.name, span, "transform"),
                             examples=write_span(config, span, table), schema=str(config.schema_path()))

    first = transformed(SPAN, rows)
    assert first["anomalies"] == [] and first["blocking"] == 0
    assert {s["kind"] for s in first["label"].values()} == {"classes"}
    assert set(first["label"]["train"]["counts"]) == {"0", "1"}
    collapsed = transformed(LATER, replace(rows, "tips", pa.array([0.0] * rows.num_rows)))
    (single,) = collapsed["anomalies"]
    assert (single["feature"], single["kind"], single["severity"]) == ("big_tipper", "LABEL_SINGLE_CLASS", "blocking")
    assert single["splits"] == ["train", "eval"] and collapsed["blocking"] == 1

    counts = first["label"]["train"]["counts"]
    moved = {"0": counts["0"] // 2, "1": counts["1"] + counts["0"] // 2}  # big tippers +~35 points
    (share,) = label_check.findings(config, {"train": {"kind": "classes", "counts": moved}}, first["label"])
    assert (share["kind"], share["severity"]) == ("LABEL_SHIFT", "blocking") and "threshold 0.1" in share["description"]
    fares = rows["fare"].drop_null().to_numpy()
    before = {"train": label_check.summary(fares, "regression")}
    assert before["train"]["kind"] == "regression"
    assert label_check.findings(config, {"train": label_check.summary(fares[::-1].copy(), "regression")}, before) == []
    (shifted,) = label_check.findings(config, {"train": label_check.summary(fares * 1.5, "regression")}, before)
    assert shifted["kind"] == "LABEL_SHIFT" and "Wasserstein" in shifted["description"]


def test_ingest_reads_what_the_table_has_when_columns_are_dropped_or_retyped(make_config, tmp_path):
    """A column dropped from the warehouse table or changed in type is no ingest error: the rows
    come through without it / with the new type, for validate to file (the corpus cases above)."""
    import duckdb

    config = make_config({"source": {"table": "taxi_changed"}}, name="taxi_changed")
    with duckdb.connect(str(config.source.database_path())) as con:
        con.execute("CREATE TABLE taxi_changed AS SELECT * EXCLUDE (company, fare), CAST(fare AS VARCHAR) AS fare "
                    "FROM taxi_trips")
        assert "company" not in warehouse.table_columns(con, "taxi_changed")
    result = ingest.run(config, tmp_path / "ingest", SPAN)
    assert sum(result["rows"].values()) > 500
    (example, *_) = tfrecord_examples(tmp_path / "ingest" / "train")
    assert "company" not in example.features.feature
    assert example.features.feature["fare"].bytes_list.value, "fare arrives as the strings the table now holds"


def test_a_presence_shortfall_counts_only_when_chance_does_not_explain_it():
    """A clean 60-day taxi span's eval split had 22 of 25 dropoffs against min_fraction 0.9 (a
    false alarm); a column that went NULL is a real one, however small the split."""
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    feature = schema_pb2.Feature(name="dropoff_latitude")
    feature.presence.min_fraction = 0.9

    def stats(present, missing):
        fs = statistics_pb2.FeatureNameStatistics(name="dropoff_latitude")
        fs.num_stats.common_stats.num_non_missing, fs.num_stats.common_stats.num_missing = present, missing
        return fs

    assert not validate.presence_shortfall_is_significant(stats(22, 3), feature, 0.001)
    assert validate.presence_shortfall_is_significant(stats(0, 25), feature, 0.001)
    assert validate.presence_shortfall_is_significant(stats(2_200, 300), feature, 0.001), "0.88 of 2,500 is real"
