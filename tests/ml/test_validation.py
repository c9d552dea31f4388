"""Validation depth, at the function level on small real data (the taxi rows of SPAN's window of 13
weekly spans, changed the way real data goes wrong): schema breaks (every span of a first window,
each against the schema), drift of the new span against the spans before it, skew against
serving-time data, windows that cannot be validated, the schema change `accept` applies, and the
label checked after transform. Bad days inside a long window of daily spans: tests/ml/test_spans.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow_data_validation as tfdv
from conftest import SPAN

from pipeline_lib import artifacts, schema_changes, spans, tfrecord, warehouse
from pipeline_lib.steps import ingest, validate

LATER = SPAN + dt.timedelta(days=7)  # the next week's run


def write_window(config, run_date: dt.date, table: pa.Table, changed=()) -> str:
    """The rows (in time order) as ingest writes the spans of the run's window; the run's ingest
    folder. Every span of the window is written anew, as a first run writes them (history: checked
    against the schema, the newest span and the `changed` ones against everything)."""
    window = spans.window(config, run_date)
    ingest.write_spans(config, window, table.to_batches(), {})
    return ingest.record_window(config, artifacts.step_dir(config.name, run_date, "ingest"), window, window,
                                {s.name: s.name in changed for s in window})["examples"]


def validate_window(config, run_date, table) -> dict:
    return validate.run(config, artifacts.step_dir(config.name, run_date, "validate"), write_window(config, run_date, table))


def replace(table: pa.Table, column: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(column), column, values)


def head_replaced(table, column, value, count):
    """The first `count` rows get `value` in `column` (None: missing)."""
    rest = table[column].to_pylist()[count:]
    return replace(table, column, pa.array([value] * count + rest, table.schema.field(column).type))


def in_newest(config, run_date, table: pa.Table, change) -> pa.Table:
    """`change` applied to the rows of the run's newest span only."""
    return in_span(spans.newest(config, run_date), table, change)


def in_span(span, table: pa.Table, change) -> pa.Table:
    """`change` applied to the rows of `span` only."""
    start, end = span.bounds()
    seconds = table["trip_start_timestamp"]
    inside = pc.and_(pc.greater_equal(seconds, int(start.timestamp())), pc.less(seconds, int(end.timestamp())))
    return pa.concat_tables([table.filter(pc.invert(inside)), change(table.filter(inside))]).sort_by("trip_start_timestamp")


def window_rows(config, run_date):
    return pa.Table.from_batches(list(ingest.batches(config, [spans.bounds(spans.window(config, run_date))])))


@pytest.fixture(scope="module")
def rows(config):
    return window_rows(config, SPAN)


def by_key(result) -> dict[tuple[str, str], dict]:
    found = {(a["feature"], a["kind"]): a for a in result["anomalies"]}
    assert len(found) == len(result["anomalies"]), "one finding per (feature, kind)"
    return found


@pytest.fixture(scope="module")
def broken(make_config, rows):
    """A first window with five things wrong at once (one Beam pipeline): a new payment type, a
    dropped column, fare as strings (in the newest span some that are not numbers), half of
    trip_miles missing, pickups far outside Chicago."""
    config = make_config({"validation": {"features": {"trip_miles": {"severity": "warning"}}}}, name="taxi_broken")
    n = rows.num_rows
    table = head_replaced(rows, "payment_type", "Bitcoin", 60)
    table = table.drop(["trip_seconds"])
    table = replace(table, "fare", pc.cast(table["fare"], pa.string()))
    table = in_newest(config, SPAN, table, lambda t: head_replaced(t, "fare", "n/a", 3))
    table = head_replaced(table, "trip_miles", None, n // 2)
    table = head_replaced(table, "pickup_latitude", 48.5, 10)
    return config, validate_window(config, SPAN, table)


def test_schema_breaks_of_every_span_are_detected_with_severity_and_examples(broken, rows):
    config, result = broken
    window = [s.name for s in spans.window(config, SPAN)]
    found = by_key(result)
    assert set(found) == {("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
                          ("trip_seconds", "SCHEMA_MISSING_COLUMN"),
                          ("fare", "UNEXPECTED_DATA_TYPE"),
                          ("trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
                          ("trip_miles", "FEATURE_TYPE_NOT_PRESENT"),
                          ("pickup_latitude", "FLOAT_TYPE_BIG_FLOAT")}
    new_value = found["payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"]
    assert new_value["examples"] == ["'Bitcoin'"] and "Bitcoin" in new_value["description"]
    assert new_value["spans"] == window[:1] and new_value["severity"] == "blocking", "the first rows: the oldest span"
    assert [Path(p).parts[-3:] for p in new_value["statistics"].split(",")] == [(window[0], "statistics", "stats.tfrecord")]
    assert found["trip_seconds", "SCHEMA_MISSING_COLUMN"]["spans"] == window, "missing in every span"
    assert found["trip_seconds", "SCHEMA_MISSING_COLUMN"]["examples"][0].startswith("absent from all")
    retyped = found["fare", "UNEXPECTED_DATA_TYPE"]
    assert retyped["description"].startswith(f"span {window[-1]}: Expected data of type: FLOAT but got STRING "
                                             '(FLOAT_TYPE_STRING_NOT_FLOAT: String values that were not floats were '
                                             'found, such as "n/a".)'), "one cause: what follows from it is in it"
    assert retyped["spans"] == window, "the same record whether a span shows what follows from the cause or not"
    gone, missing = found["trip_miles", "FEATURE_TYPE_NOT_PRESENT"], found["trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT"]
    assert gone["severity"] == missing["severity"] == "warning", "per-feature severity from the config"
    assert gone["spans"][0] == window[0] and len(gone["spans"]) < len(window), "the older half of the window: none"
    assert len(missing["spans"]) == 1 and missing["spans"][0] not in gone["spans"], "the half's last span: some"
    assert any(e.startswith("missing in ") for e in missing["examples"]), missing["examples"]
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
                          ("trip_miles", "FEATURE_TYPE_NOT_PRESENT"),
                          ("pickup_latitude", "FLOAT_TYPE_BIG_FLOAT"),
                          ("trip_seconds", "SCHEMA_MISSING_COLUMN")]:
        change = schema_changes.apply(schema_file, kind, feature, found[feature, kind]["statistics"])
        assert change["changed"] is True
        assert change["diff"].startswith(f"--- {schema_file}")
    assert schema_file.read_text().splitlines()[0] == header, "the curators' comments stay"
    schema = tfdv.load_schema_text(str(schema_file))
    assert "Bitcoin" in tfdv.get_domain(schema, "payment_type").value
    assert tfdv.get_feature(schema, "trip_miles").presence.min_fraction == 0.0, "some spans have none"
    assert tfdv.get_feature(schema, "pickup_latitude").float_domain.max == 49
    assert tfdv.get_feature(schema, "trip_seconds").presence.min_count == 0
    with pytest.raises(schema_changes.CannotAccept, match="UNEXPECTED_DATA_TYPE has no schema change"):
        schema_changes.apply(schema_file, "UNEXPECTED_DATA_TYPE", "fare", None)
    assert schema_changes.apply(schema_file, "DRIFT", "payment_type", None)["changed"] is False

    table = head_replaced(rows, "payment_type", "Bitcoin", 60).drop(["trip_seconds"])
    table = head_replaced(head_replaced(table, "trip_miles", None, rows.num_rows // 2), "pickup_latitude", 48.5, 10)
    assert validate_window(config, SPAN, table)["anomalies"] == [], "the accepted changes now pass"


def test_drift_of_the_new_span_against_the_spans_before_it(make_config, config):
    config = make_config(name="taxi_drift")
    rows = window_rows(config, LATER)
    first = validate_window(config, LATER, rows)
    assert first["anomalies"] == [] and first["checked"] == [spans.newest(config, LATER).name]
    drifted = in_newest(config, LATER, rows, lambda t: head_replaced(t, "payment_type", "Credit Card", t.num_rows * 2 // 3))
    result = validate_window(config, LATER, drifted)
    (drift,) = result["anomalies"]
    assert (drift["feature"], drift["kind"], drift["severity"]) == ("payment_type", "DRIFT", "blocking")
    assert drift["spans"] == first["checked"] and "against the 7 spans before it" in drift["description"]
    assert "largest change of a value's share (L-infinity) 0." in drift["description"]
    assert "> block level 0.3 (p-value" in drift["description"], "far beyond the threshold: blocking"
    assert drift["examples"][0].startswith("'Credit Card' ") and drift["statistic"] > 0.3
    mild = in_newest(config, LATER, rows, lambda t: head_replaced(t, "payment_type", "Credit Card", t.num_rows * 3 // 10))
    (warning,) = validate_window(config, LATER, mild)["anomalies"]
    assert (warning["kind"], warning["severity"]) == ("DRIFT", "warning") and 0.15 < warning["statistic"] < 0.3


def test_skew_against_serving_time_data_which_lacks_the_label(make_config, rows):
    config = make_config(name="taxi_skew")
    serving = replace(rows, "fare", pc.multiply(rows["fare"], 4.0)).drop(["tips"])
    folder = artifacts.pipeline_root(config.name) / "serving_data"
    folder.mkdir(parents=True)
    tfrecord.write(folder / "requests.tfrecord", ingest.to_examples(serving))
    result = validate_window(config, SPAN, rows)
    (skew,) = result["anomalies"]
    assert (skew["feature"], skew["kind"], skew["severity"]) == ("fare", "SKEW", "blocking")
    assert "Wasserstein distance / interdecile range" in skew["description"] and "> block level 0.3" in skew["description"]
    assert skew["examples"] and all(e.startswith("p") and " -> " in e for e in skew["examples"])


def test_windows_that_cannot_be_validated_are_anomalies_not_errors(make_config, rows):
    config = make_config(name="taxi_unreadable")
    empty = validate_window(config, SPAN, rows.slice(0, 0))
    (finding,) = empty["anomalies"]
    assert (finding["feature"], finding["kind"], finding["severity"]) == ("(data)", "EMPTY_WINDOW", "blocking")
    assert finding["description"].startswith("the window has no rows: nothing in the source for its 13 spans, ")
    assert empty["statistics"] is None

    examples = write_window(config, LATER, window_rows(config, LATER))
    newest = artifacts.read_result(Path(examples))["spans"][-1]
    data = Path(newest["path"]) / "eval" / "data-00000.tfrecord"
    data.write_bytes(data.read_bytes()[:-7])
    result = validate.run(config, artifacts.step_dir(config.name, LATER, "validate"), examples)
    (finding,) = result["anomalies"]
    assert finding["kind"] == "UNREADABLE_DATA" and finding["spans"] == [newest["span"]]
    assert f"the eval split cannot be read: {data}: record" in finding["description"]
    assert len(result["computed"]) == 12, "the readable spans are still validated"


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


def test_the_label_is_checked_after_transform(make_config):
    """The label the preprocessing_fn computes, per new span against the spans before it: a single
    class that the spans before make unlikely blocks (every tip 0); a class share that moved or a
    shifted regression target does too; a small span's one class does not. A shift seen in two
    checked spans is one finding naming both."""
    from pipeline_lib import label_check
    from pipeline_lib.steps import transform

    config = make_config(name="taxi_label")

    def transformed(run_date, table, changed=()):
        return transform.run(config, artifacts.step_dir(config.name, run_date, "transform"),
                             examples=write_window(config, run_date, table, changed), schema=str(config.schema_path()))

    rows = window_rows(config, LATER)
    first = transformed(LATER, rows)
    assert first["anomalies"] == [] and first["blocking"] == 0
    collapsed = transformed(LATER, in_newest(config, LATER, rows, lambda t: replace(t, "tips", pa.array([0.0] * t.num_rows))))
    (single,) = collapsed["anomalies"]
    assert (single["feature"], single["kind"], single["severity"]) == ("big_tipper", "LABEL_SINGLE_CLASS", "blocking")
    assert single["spans"] == [spans.newest(config, LATER).name] and collapsed["blocking"] == 1
    *_, previous, newest = spans.window(config, LATER)

    def more_tips(t):  # every other trip tips its fare: ~60% big tippers where the spans before have ~18%
        return replace(t, "tips", pc.if_else(pa.array([i % 2 == 0 for i in range(t.num_rows)]), t["fare"], t["tips"]))

    moved = transformed(LATER, in_span(previous, in_span(newest, rows, more_tips), more_tips), changed=[previous.name])
    (shift,) = moved["anomalies"]
    assert (shift["kind"], shift["severity"], shift["spans"]) == ("LABEL_SHIFT", "blocking", [previous.name, newest.name])
    assert shift["description"].startswith(f"span {newest.name}: ") and f"(also in span {previous.name})" in shift["description"]

    before = [{"kind": "strings", "counts": {"0": 700, "1": 300}}]
    assert label_check.findings(config, "s", {"kind": "strings", "counts": {"0": 3}}, before) == [], "3 rows: chance"
    (share,) = label_check.findings(config, "s", {"kind": "strings", "counts": {"0": 350, "1": 650}}, before)
    assert (share["kind"], share["severity"]) == ("LABEL_SHIFT", "blocking") and "threshold 0.1" in share["description"]
    fares = rows["fare"].drop_null().to_numpy()
    reference = [label_check.summary(fares, "regression", [])]
    assert label_check.findings(config, "s", label_check.summary(fares[::-1].copy(), "regression", []), reference) == []
    (shifted,) = label_check.findings(config, "s", label_check.summary(fares * 1.5, "regression", []), reference)
    assert shifted["kind"] == "LABEL_SHIFT" and "Wasserstein" in shifted["description"]


def test_ingest_reads_what_the_table_has_when_columns_are_dropped_or_retyped(make_config, tmp_path):
    """A column dropped from the warehouse table or changed in type is no ingest error: the rows
    come through without it / with the new type, for validate to file (the schema checks above)."""
    import duckdb

    config = make_config({"source": {"table": "taxi_changed"}}, name="taxi_changed")
    with duckdb.connect(str(config.source.database_path())) as con:
        con.execute("CREATE TABLE taxi_changed AS SELECT * EXCLUDE (company, fare), CAST(fare AS VARCHAR) AS fare "
                    "FROM taxi_trips")
        assert "company" not in warehouse.table_columns(con, "taxi_changed")
    result = ingest.run(config, tmp_path / "ingest", SPAN)
    assert sum(result["rows"].values()) > 500
    (example, *_) = tfrecord_examples(Path(result["spans"][-1]["path"]) / "train")
    assert "company" not in example.features.feature
    assert example.features.feature["fare"].bytes_list.value, "fare arrives as the strings the table now holds"


def test_a_presence_shortfall_counts_only_when_chance_does_not_explain_it():
    """A clean 60-day taxi span's eval split had 22 of 25 dropoffs against min_fraction 0.9, and a
    clean day's 2 trips had no company against 0.5 (false alarms); a column that went NULL is a
    real one, however small the span, and a schema without min_fraction cannot say."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    feature = schema_pb2.Feature(name="dropoff_latitude")
    feature.presence.min_fraction = 0.9
    assert not validate.presence_shortfall_is_significant(22, 25, feature, 0.001)
    assert validate.presence_shortfall_is_significant(0, 25, feature, 0.001)
    assert validate.presence_shortfall_is_significant(2_200, 2_500, feature, 0.001), "0.88 of 2,500 is real"
    feature.presence.min_fraction = 0.5
    assert not validate.presence_shortfall_is_significant(0, 2, feature, 0.001)
    assert validate.presence_shortfall_is_significant(0, 2, schema_pb2.Feature(name="any"), 0.001)
