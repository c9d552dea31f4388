"""The test kit (pipeline_lib.testing) on the example pipelines' feature code: a handful of rows
through the real preprocessing_fn and tf.Transform analyzers, in process."""

from __future__ import annotations

import math

import pytest
import yaml
from conftest import run_step
from pipeline_fixtures import write_pipeline

from pipeline_lib import spans, transformed
from pipeline_lib.config import load_config
from pipeline_lib.settings import REPO_ROOT
from pipeline_lib.testing import transform_rows

TAXI = REPO_ROOT / "pipelines" / "taxi_tips" / "pipeline.yaml"
ROWS = [
    {"fare": 10.0, "tips": 3.0, "payment_type": "Credit Card", "company": "Flash Cab", "trip_start_hour": 8},
    {"fare": 20.0, "tips": 0.0, "payment_type": "Cash", "trip_start_hour": 17},
    {"fare": 30.0, "tips": 6.5, "payment_type": "Credit Card", "company": "Flash Cab", "trip_start_hour": 8},
    {"fare": None, "tips": 4.0, "payment_type": "Cash", "trip_start_hour": 23},
]


@pytest.fixture(scope="module")
def taxi():
    return load_config(TAXI)


def test_taxi_label_and_transforms_on_four_rows(taxi):
    out = transform_rows(taxi, ROWS)
    assert [row["big_tipper"] for row in out] == [1, 0, 1, 0]  # tips > 20% of fare; no fare: 0
    fares = [row["fare_xf"] for row in out]  # z-scores; the missing fare takes the mean (20)
    assert math.isclose(sum(fares), 0.0, abs_tol=1e-5) and fares[0] < fares[1] < fares[2]
    assert math.isclose(fares[3], fares[1], abs_tol=1e-6)
    payments = [row["payment_type_xf"] for row in out]  # one vocabulary id per value, frequent first
    assert payments[0] == payments[2] != payments[1] == payments[3]
    assert [row["company_xf"] for row in out] == [1, 0, 1, 0]  # a missing company: the reserved id 0


def test_a_column_the_schema_lacks_and_a_missing_label_are_named(taxi):
    with pytest.raises(ValueError, match=r"rows hold columns the schema \(schema.pbtxt\) lacks: \['tip'\]"):
        transform_rows(taxi, [{"tip": 1.0}])

    def no_label(inputs, config):
        return {"fare_xf": inputs["fare"]}

    with pytest.raises(ValueError, match="did not output the label 'big_tipper'"):
        transform_rows(taxi, ROWS, preprocessing_fn=no_label)


def test_taxi_fare_is_config_only(env):
    fare = load_config(REPO_ROOT / "pipelines" / "taxi_fare" / "pipeline.yaml")
    assert fare.module is None
    rows = [{"fare": row["fare"], "payment_type": row["payment_type"], "trip_start_hour": row["trip_start_hour"],
             "trip_miles": miles, "trip_seconds": 600} for row, miles in zip(ROWS, [1.0, 2.0, 3.0, None])]
    out = transform_rows(fare, rows)
    assert [row["fare_usd"] for row in out] == [10.0, 20.0, 30.0, 0.0]  # the label as it is; missing: 0
    assert out[3]["trip_miles_xf"] == out[1]["trip_miles_xf"]  # a missing number takes the mean


def test_taxi_trip_length_classes(env):
    config = load_config(REPO_ROOT / "pipelines" / "taxi_trip_length" / "pipeline.yaml")
    out = transform_rows(config, [{"trip_miles": m} for m in (1.0, 5.0, 20.0, 0.5, 30.0, None)])
    ids = [row["trip_length"] for row in out]  # short, medium, long; vocabulary ids by frequency
    assert ids[0] == ids[3] == ids[5] and ids[2] == ids[4] and len({ids[0], ids[1], ids[2]}) == 3


def test_a_config_only_multiclass_label_takes_class_names_from_its_column(env):
    path = write_pipeline(env / "pipelines", {
        "name": "payment_only", "module": None, "label": {"key": "payment", "raw_columns": ["payment_type"],
                                                          "task": "multiclass"},
        "features": {"numeric": ["trip_miles"], "bucketized": [], "categorical": ["trip_start_hour"], "vocabulary": []},
        "evaluation": {"metrics": None, "thresholds": None}})
    raw = yaml.safe_load(path.read_text())
    raw["validation"]["features"] = {}  # taxi's drift checks name columns this pipeline does not read
    path.write_text(yaml.safe_dump(raw))
    (path.parent / "taxi_tips.py").unlink()
    ids = [row["payment"] for row in transform_rows(load_config(path), ROWS)]
    assert sorted(set(ids)) == [0, 1] and ids[0] == ids[2] != ids[1] == ids[3]


def test_a_missing_category_gets_the_id_serving_gives_it(make_config):
    """The real transform step on real taxi rows, where trip_start_hour is never missing and company
    often is: a serving example without either gets id 0, as the test kit gives it; an unseen value
    goes to an OOV bucket instead."""
    import tensorflow as tf
    import tensorflow_transform as tft

    config = make_config(name="taxi_missing_ids")
    ingest = run_step(config, "ingest")
    graph = run_step(config, "transform", examples=ingest["examples"], schema=str(config.schema_path()))["transform_graph"]
    output = tft.TFTransformOutput(graph)
    train = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(spans.files(ingest["spans"], "train"))]
    assert all(e.features.feature["trip_start_hour"].int64_list.value for e in train)  # never missing in training
    assert output.vocabulary_by_name("trip_start_hour")[0] == b"-1"
    example = train[0]
    missing, unseen = tf.train.Example(), tf.train.Example()
    missing.CopyFrom(example)
    del missing.features.feature["trip_start_hour"], missing.features.feature["company"]
    unseen.CopyFrom(example)
    unseen.features.feature["company"].bytes_list.value[:] = [b"No Such Cab"]
    unseen.features.feature["trip_start_hour"].int64_list.value[:] = [99]
    served = transformed.transform(output)(tf.constant([e.SerializeToString() for e in (missing, unseen)]))
    kit = transform_rows(config, [{**ROWS[0], "trip_start_hour": None}, *ROWS[1:]])
    for key in ("trip_start_hour", "company"):
        ids = served[f"{key}_xf"].numpy().ravel().tolist()
        assert ids[0] == 0 == kit[0 if key == "trip_start_hour" else 1][f"{key}_xf"], (key, ids)
        assert ids[1] >= len(output.vocabulary_by_name(key)), (key, ids)  # unseen: an OOV bucket, not the missing id
