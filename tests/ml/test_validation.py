"""Validation depth, at the function level on small real data (the taxi rows of SPAN's window,
changed the way real data goes wrong): schema breaks, drift against the previous span, skew against
serving-time data, spans that cannot be validated, and the schema change `accept` applies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow_data_validation as tfdv

from conftest import SPAN
from pipeline_lib import artifacts, schema_changes, tfrecord
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
    assert any(e.startswith("missing in ") and e.endswith(("(49%)", "(50%)")) for e in missing["examples"])
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
    assert tfdv.get_feature(schema, "trip_miles").presence.min_fraction == pytest.approx(0.47), "the lower of the splits"
    assert tfdv.get_feature(schema, "pickup_latitude").float_domain.max == 49
    assert tfdv.get_feature(schema, "trip_seconds").presence.min_count == 0
    with pytest.raises(schema_changes.CannotAccept, match="UNEXPECTED_DATA_TYPE has no schema change"):
        schema_changes.apply(schema_file, "UNEXPECTED_DATA_TYPE", "fare", None)
    assert schema_changes.apply(schema_file, "COMPARATOR_L_INFTY_HIGH", "payment_type", None)["changed"] is False

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
    assert (drift["feature"], drift["kind"]) == ("payment_type", "COMPARATOR_L_INFTY_HIGH")
    assert "above the threshold 0.1" in drift["description"] and drift["splits"] == ["train"]
    assert drift["examples"][0] == "'Credit Card'"


def test_skew_against_serving_time_data_which_lacks_the_label(make_config, rows):
    config = make_config(name="taxi_skew")
    serving = replace(rows, "fare", pc.multiply(rows["fare"], 4.0)).drop(["tips"])
    folder = artifacts.pipeline_root(config.name) / "serving_data"
    folder.mkdir(parents=True)
    tfrecord.write(folder / "requests.tfrecord", ingest.to_examples(serving))
    result = validate_span(config, SPAN, rows)
    assert set(result["statistics"]) == {"train", "eval", "serving"}
    (skew,) = result["anomalies"]
    assert (skew["feature"], skew["kind"]) == ("fare", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH")
    assert "above the threshold 0.05" in skew["description"]


def test_spans_that_cannot_be_validated_are_anomalies_not_errors(make_config, rows):
    config = make_config(name="taxi_unreadable")
    empty = validate_span(config, SPAN, rows.slice(0, 0))
    (finding,) = empty["anomalies"]
    assert (finding["feature"], finding["kind"], finding["severity"]) == ("(data)", "EMPTY_SPAN", "blocking")
    assert finding["description"].startswith("the span has no rows: nothing in the source for window [")
    assert empty["statistics"] == {}

    examples = Path(write_span(config, LATER, rows))
    data = examples / "eval" / "data.tfrecord"
    data.write_bytes(data.read_bytes()[:-7])
    result = validate.run(config, artifacts.step_dir(config.name, LATER, "validate"), str(examples))
    (finding,) = result["anomalies"]
    assert finding["kind"] == "UNREADABLE_DATA" and finding["splits"] == ["eval"]
    assert f"the eval split cannot be read: {data}: record" in finding["description"]
    assert set(result["statistics"]) == {"train"}, "the readable split is still validated"
