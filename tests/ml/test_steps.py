"""Each step on a small slice of the real taxi data, with the real TFDV/TFT/TF/TFMA."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
from conftest import SPAN, run_step
from pipeline_fixtures import warehouse_copy

from pipeline_lib import artifacts, serving, spans
from pipeline_lib.steps import ingest


def read_examples(folder: Path) -> list[tf.train.Example]:
    files = sorted(str(p) for p in folder.glob("*.tfrecord"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def value(example: tf.train.Example, key: str):
    feature = example.features.feature[key]
    kind = feature.WhichOneof("kind")
    return getattr(feature, kind).value[0] if kind and getattr(feature, kind).value else None


def span_examples(result: dict, split: str) -> list[tf.train.Example]:
    """Every example of `split` over the spans an ingest (or transform) result lists."""
    files = spans.files(result["spans"], split)
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)] if files else []


def test_ingest_writes_each_span_of_the_window_once_and_splits_deterministically(chain, config, make_config):
    result = chain["ingest"]
    window = spans.window(config, SPAN)
    assert [s["span"] for s in result["spans"]] == [s.name for s in window] == result["ingested"]
    assert len(window) == 13 and window[-1].end == dt.date(2014, 2, 23), "13 weeks, the last ended by the run's date"
    start, end = spans.bounds(window)
    with duckdb.connect(str(config.source.database_path()), read_only=True) as con:
        expected = con.execute("SELECT count(*) FROM taxi_trips WHERE trip_start_timestamp >= ? "
                               "AND trip_start_timestamp < ?", [int(start.timestamp()), int(end.timestamp())]).fetchone()[0]
    assert expected > 500
    assert result["rows"]["train"] + result["rows"]["eval"] == expected
    assert 0.12 < result["rows"]["eval"] / expected < 0.28
    for entry, span in zip(result["spans"], window):
        assert Path(entry["path"]) == spans.folder(config.name, span.name)
        train = read_examples(Path(entry["path"]) / "train")
        assert len(train) == entry["rows"]["train"]
        first, last = span.bounds()
        assert all(first.timestamp() <= value(e, "trip_start_timestamp") < last.timestamp() for e in train)
    assert any(value(e, "company") is None for e in span_examples(result, "train")), "a NULL is a feature without values"

    again = run_step(config, "ingest")
    assert again["ingested"] == [] and again["spans"] == result["spans"], "a span is ingested once"
    other = run_step(make_config(name="taxi_again"), "ingest")
    assert {Path(e["path"]).parents[1].name for e in other["spans"]} == {"taxi_again"}, "pipelines share no span"
    for split in ingest.SPLITS:
        rows = lambda r, split=split: sorted(str(sorted((k, str(v)) for k, v in e.features.feature.items())) for e in span_examples(r, split))
        assert rows(other) == rows(result), f"{split}: the same rows in the same split"


def test_ingest_of_an_empty_window_writes_empty_spans_for_validate_to_judge(config, tmp_path):
    result = ingest.run(config, tmp_path / "empty", dt.date(2030, 1, 1))
    assert result["rows"] == {"train": 0, "eval": 0} and len(result["spans"]) == 13
    assert result["window"]["start"].startswith("2029-09-30") and result["window"]["end"].startswith("2029-12-30")
    assert all((Path(e["path"]) / split / "data-00000.tfrecord").stat().st_size == 0
               for e in result["spans"] for split in ingest.SPLITS)


def test_step_cli_reports_the_error_as_json(make_config, tmp_path):
    config = make_config({"source": {"table": "no_such_table"}}, name="taxi_no_table")
    result_file = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "pipeline_lib.cli", "ingest", "--config", str(config.config_dir / "pipeline.yaml"),
                           "--output-dir", str(tmp_path / "out"), "--span-date", "2017-01-01",
                           "--result-file", str(result_file)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "PreflightError: field 'source.table': no table 'no_such_table'" in json.loads(result_file.read_text())["error"]
    assert not (tmp_path / "out").exists()
    assert "no table 'no_such_table'" in (tmp_path / ".out.error").read_text(), "what `report` shows"


def test_a_step_leaves_nothing_in_the_system_temp_folder(chain, config, tmp_path):
    """Transform writes AutoGraph modules, Beam temp folders and TFT's temp dirs: all in the step's
    scratch folder, gone with it (the CLI, as a pod or a Vertex AI job runs it)."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    args = [f"--{k.replace('_', '-')}={v}" for k, v in artifacts.inputs_from("transform", chain).items()]
    proc = subprocess.run([sys.executable, "-m", "pipeline_lib.cli", "transform", "--config",
                           str(config.config_dir / "pipeline.yaml"), "--output-dir", str(tmp_path / "out"), *args],
                          capture_output=True, text=True, env={**os.environ, "TMPDIR": str(system_tmp)}, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert sorted(p.name for p in system_tmp.iterdir()) == []


def test_validate_keeps_each_spans_statistics_and_the_clean_slice_passes_the_curated_schema(chain, config):
    result = chain["validate"]
    assert result["schema_inferred"] is False and result["schema"] == str(config.config_dir / "schema.pbtxt")
    assert result["anomalies"] == [], result["anomalies"]
    assert result["computed"] == chain["ingest"]["ingested"] and result["checked"] == [chain["ingest"]["span"]]
    for entry in chain["ingest"]["spans"]:
        stats = tfdv.load_stats_binary(str(Path(entry["path"]) / "statistics" / "stats.tfrecord"))
        assert stats.datasets[0].num_examples == sum(entry["rows"].values())
    newest = tfdv.load_stats_binary(result["statistics"])
    company = tfdv.get_feature_stats(newest.datasets[0], tfdv.FeaturePath(["company"]))
    assert company.string_stats.common_stats.num_missing > 0, "NULLs are counted as missing"
    again = run_step(config, "validate", examples=chain["ingest"]["examples"])
    assert again["computed"] == [] and again["anomalies"] == [], "statistics are computed once per span"


def test_validate_infers_a_missing_schema_once(chain, make_config):
    fresh = make_config(name="taxi_infer")
    fresh.schema_path().unlink()
    result = run_step(fresh, "validate", examples=chain["ingest"]["examples"])
    assert result["schema_inferred"] is True and Path(result["schema"]) == fresh.schema_path()
    schema = tfdv.load_schema_text(result["schema"])
    assert "SERVING" in tfdv.get_feature(schema, "tips").not_in_environment
    assert {f.name for f in schema.feature} == set(fresh.raw_columns())

    schema_text = fresh.schema_path().read_text()
    again = run_step(fresh, "validate", examples=chain["ingest"]["examples"])
    assert again["schema_inferred"] is False
    assert fresh.schema_path().read_text() == schema_text


def test_validate_flags_a_new_category_against_the_schema(make_config, tmp_path):
    """Rows paying by a method never seen before, in a later span, are an anomaly (in a warehouse
    of its own: the session's stays clean for the other tests)."""
    config = make_config({"source": {"window_days": 90, "database": str(warehouse_copy(tmp_path))}}, name="taxi_new_category")
    later = dt.date(2014, 6, 1)
    with duckdb.connect(str(config.source.database_path())) as con:
        con.execute("INSERT INTO taxi_trips SELECT * REPLACE ('Bitcoin' AS payment_type, "
                    "trip_start_timestamp + 90 * 86400 AS trip_start_timestamp) FROM taxi_trips "
                    "WHERE trip_start_timestamp >= ? AND trip_start_timestamp < ? LIMIT 200",
                    [int(dt.datetime(2014, 3, 1, tzinfo=dt.UTC).timestamp()),
                     int(dt.datetime(2014, 3, 2, tzinfo=dt.UTC).timestamp()) + 86400 * 20])
    examples = run_step(config, "ingest", span=later, span_date=later)["examples"]
    result = run_step(config, "validate", span=later, examples=examples)
    assert result["schema_inferred"] is False
    flagged = {a["kind"]: a for a in result["anomalies"] if a["feature"] == "payment_type"}
    assert "Bitcoin" in flagged["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]["description"]
    assert set(flagged) <= {"ENUM_TYPE_UNEXPECTED_STRING_VALUES", "DRIFT"}, "its share moved too"


def transformed_features(graph: str, chain: dict, split: str = "eval") -> dict[str, np.ndarray]:
    """The graph applied to the chain's raw examples of `split`: each output, sorted."""
    from pipeline_lib import transformed

    apply = transformed.transform(tft.TFTransformOutput(graph))
    batches = [apply(b) for b in transformed.records(spans.files(chain["ingest"]["spans"], split), 4096)]
    return {key: np.sort(np.concatenate([b[key].numpy().ravel() for b in batches])) for key in batches[0]}


def test_transform_computes_the_label_and_keeps_the_raw_metadata(chain, config):
    out = tft.TFTransformOutput(chain["transform"]["transform_graph"])
    assert "tips" in out.raw_feature_spec()
    assert {f"{k}_xf" for k in config.features.all()} | {"big_tipper"} == set(out.transformed_feature_spec())
    assert chain["transform"]["analysis"]["read_spans"] == 13, "a first run reads every span"

    raw = span_examples(chain["ingest"], "eval")
    xf = transformed_features(chain["transform"]["transform_graph"], chain)
    assert len(xf["big_tipper"]) == len(raw)
    f32 = np.float32  # as TF computes it
    big_tippers = sum(1 for e in raw if value(e, "fare") is not None
                      and f32(value(e, "tips")) > f32(value(e, "fare")) * f32(0.2))
    assert xf["big_tipper"].sum() == big_tippers
    kept = [Path(e["path"]) / "label.json" for e in chain["ingest"]["spans"]]
    assert [p.exists() for p in kept] == [False] * 5 + [True] * 8, "the new span's and the 7 it is checked against"
    assert sum(sum(json.loads(p.read_text())["summary"]["counts"].values()) for p in kept[5:]) > 0


def test_ingest_shards_a_split_so_runners_can_spread_it(chain, make_config, monkeypatch):
    monkeypatch.setattr(ingest, "SHARD_ROWS", 20)
    sharded = run_step(make_config(name="taxi_sharded"), "ingest")
    for entry, unsharded in zip(sharded["spans"], chain["ingest"]["spans"]):
        for split in ingest.SPLITS:
            shards = sorted(p.name for p in (Path(entry["path"]) / split).iterdir())
            assert shards == [f"data-{i:05d}.tfrecord" for i in range(max(1, -(-entry["rows"][split] // 20)))]
            rows = lambda e, split=split: [x.SerializeToString(deterministic=True) for x in read_examples(Path(e["path"]) / split)]
            assert rows(entry) == rows(unsharded), f"{split}: the same rows in the same order"


def test_transform_in_beam_worker_processes_makes_the_same_graph(chain, make_config, monkeypatch):
    """`auto` runs big spans on worker processes, which cannot import the user module loaded from
    its file: its preprocessing_fn must travel by value (it failed with ModuleNotFoundError). The
    input in shards, so both workers read. A mean or variance summed in another order may differ in
    its last bit, so the z-scores are compared to 1e-6."""
    monkeypatch.setattr(ingest, "SHARD_ROWS", 30)
    parallel = make_config({"beam": {"direct_running_mode": "multi_processing", "direct_num_workers": 2}},
                           name="taxi_workers")
    examples = run_step(parallel, "ingest")["examples"]
    result = run_step(parallel, "transform", **{**artifacts.inputs_from("transform", chain), "examples": examples})
    assert result["analysis"]["read_spans"] == 13
    assert_same_transformed(result, chain)


def assert_same_transformed(result: dict, chain: dict) -> None:
    """The graph transforms the chain's examples as the chain's graph does (values to 1e-6)."""
    for split in ingest.SPLITS:
        made, expected = (transformed_features(r["transform_graph"], chain, split) for r in (result, chain["transform"]))
        assert made.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(made[key], expected[key], rtol=1e-6, atol=1e-6, err_msg=key)


def test_batch_size_changes_speed_not_results(chain, make_config):
    """Beam's dynamic batching (batch_size 0: 1 to 1,000 rows, growing) against the default's one
    batch per split here: the same transformed examples, the same metrics and the same blessing."""
    dynamic = make_config({"beam": {"batch_size": 0}}, name="taxi_dynamic_batches")
    examples = run_step(dynamic, "ingest")["examples"]  # its own spans: analyzed afresh, not from the chain's cache
    assert_same_transformed(run_step(dynamic, "transform", **{**artifacts.inputs_from("transform", chain),
                                                              "examples": examples}), chain)
    # judged like the chain's first model: on value thresholds, without the model it pushed
    verdict = run_step(dynamic, "evaluate", **artifacts.inputs_from("evaluate", chain), skip_change_threshold=True)
    assert json.loads(Path(verdict["slices"]).read_text()) == json.loads(Path(chain["evaluate"]["slices"]).read_text())
    assert (verdict["blessed"], verdict["thresholds"]) == (chain["evaluate"]["blessed"], chain["evaluate"]["thresholds"])


def test_local_beam_steps_never_try_the_prism_runner(chain, make_config, caplog):
    """Beam's DirectRunner tries Prism first: a binary it downloads from GitHub, or ~2 s lost per
    step where it cannot. The steps name the FnApiRunner, in process and multi-process alike."""
    caplog.set_level(logging.INFO, logger="apache_beam.runners")
    for mode in ("in_memory", "multi_processing"):
        local = make_config({"beam": {"direct_running_mode": mode, "direct_num_workers": 2}}, name=f"taxi_{mode}")
        validated = run_step(local, "validate", examples=run_step(local, "ingest")["examples"])
        assert validated["blocking"] == 0 and len(validated["computed"]) == 13
    beam_records = [r.getMessage() for r in caplog.records if r.name.startswith("apache_beam.runners")]
    assert not [m for m in beam_records if "Prism" in m]
    worker_options = [m for m in beam_records if "Pipeline_options" in m]
    assert worker_options and all("direct_num_workers" in m for m in worker_options), \
        "the worker processes get the step's options, as under the DirectRunner"


def test_trained_model_serves_raw_examples_without_the_label(chain):
    model = tf.saved_model.load(chain["train"]["model"])
    assert {"serving_default", "transform_features"} <= set(model.signatures)
    raw = span_examples(chain["ingest"], "eval")[:10]
    for e in raw:
        del e.features.feature["tips"]
    outputs = model.signatures["serving_default"](examples=tf.constant([e.SerializeToString() for e in raw]))
    probabilities = outputs["outputs"].numpy()
    assert probabilities.shape == (10, 1)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_first_model_is_blessed_on_value_thresholds_and_pushed_as_version_1(chain, config):
    verdict = chain["evaluate"]
    assert verdict["blessed"] is True
    assert verdict["baseline_version"] is None
    assert any("first model" in r for r in verdict["reasons"])
    candidate = verdict["metrics"]["candidate"]
    assert candidate["example_count"] == chain["ingest"]["rows"]["eval"]
    assert candidate["auc"] > 0.5
    assert chain["push"] == {"pushed": True, "version": 1, "reason": "blessed",
                             "path": str(config.serving.model_dir() / "1")}
    assert [(v["metric"], v["kind"], v["passed"]) for v in verdict["thresholds"]] == [
        ("auc", "value", True), ("binary_accuracy", "value", True)], "no change threshold without a baseline"
    assert (config.serving.model_dir() / "1" / "saved_model.pb").is_file()


def test_a_threshold_the_candidate_cannot_meet_blocks_the_push(chain, make_config, config):
    strict = make_config({"evaluation": {"thresholds": {"AUC": {"lower_bound": 0.999}}},
                          "serving": {"model_name": config.serving.model_name}}, name="taxi_strict")
    serving_before = serving.versions(config.serving.model_dir())
    verdict = run_step(strict, "evaluate", **artifacts.inputs_from("evaluate", chain))
    assert verdict["blessed"] is False
    assert verdict["baseline_version"] == serving_before[-1]
    assert any(r.startswith("auc = ") and r.endswith("fails lower bound 0.999") for r in verdict["reasons"])
    assert set(verdict["metrics"]) == {"candidate", "baseline"}

    pushed = run_step(strict, "push", **{**artifacts.inputs_from("push", chain), "blessing": verdict["blessing"]})
    assert pushed["pushed"] is False and pushed["reason"].startswith("not blessed: auc = ")
    assert serving.versions(config.serving.model_dir()) == serving_before


def test_push_refuses_a_blessing_made_for_another_model(chain, config, tmp_path):
    blessing = json.loads(Path(chain["evaluate"]["blessing"]).read_text())
    forged = tmp_path / "blessing.json"
    forged.write_text(json.dumps({**blessing, "candidate": "/elsewhere/model"}))
    with pytest.raises(ValueError, match="is for /elsewhere/model"):
        run_step(config, "push", **{**artifacts.inputs_from("push", chain), "blessing": str(forged)})
