"""Validate: TFDV statistics per split, the pipeline's schema (inferred on the first run, then
reused) and the anomalies of each split against it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import apache_beam as beam
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx_bsl.public import tfxio

from pipeline_lib import artifacts
from pipeline_lib.beam import pipeline_options
from pipeline_lib.steps.ingest import SPLITS

SERVING = "SERVING"
TRAINING = "TRAINING"


def schema_path(config) -> Path:
    """The pipeline's schema: shared by its runs, so a later run is checked against the first."""
    return artifacts.pipeline_root(config.name) / "schema" / "schema.pbtxt"


def compute_statistics(config, examples: Path, output_dir: Path, num_rows: int) -> dict[str, Path]:
    """One Beam pipeline computing each split's statistics (the start-up is paid once)."""
    paths = {split: output_dir / f"{split}.stats.tfrecord" for split in SPLITS}
    options = tfdv.StatsOptions()
    with tempfile.TemporaryDirectory() as tmp, \
            beam.Pipeline(options=pipeline_options(config, num_rows, tmp)) as p:
        for split in SPLITS:
            source = tfxio.TFExampleRecord(file_pattern=str(examples / split / "*"))
            _ = (p
                 | f"Read[{split}]" >> source.BeamSource()
                 | f"Stats[{split}]" >> tfdv.GenerateStatistics(options)
                 | f"Write[{split}]" >> tfdv.WriteStatisticsToBinaryFile(str(paths[split])))
    return paths


def infer_schema(config, train_stats):
    """Infer from the training split and mark the label's inputs as absent at serving."""
    schema = tfdv.infer_schema(train_stats, infer_feature_shape=False)
    schema.default_environment.extend([TRAINING, SERVING])
    for column in config.label.raw_columns:
        tfdv.get_feature(schema, column).not_in_environment.append(SERVING)
    return schema


def describe(anomalies: anomalies_pb2.Anomalies, split: str) -> list[dict]:
    severity = anomalies_pb2.AnomalyInfo.Severity.Name
    kind = anomalies_pb2.AnomalyInfo.Type.Name
    return [{"split": split, "feature": feature,
             "kind": kind(info.reason[0].type) if info.reason else "UNKNOWN",
             "description": info.description, "short": info.short_description,
             "severity": severity(info.severity)}
            for feature, info in sorted(anomalies.anomaly_info.items())]


def run(config, output_dir: Path, examples: str) -> dict:
    examples = Path(examples)
    rows = artifacts.read_result(examples)["rows"]
    with artifacts.atomic_dir(output_dir) as tmp:
        stats_paths = compute_statistics(config, examples, tmp, sum(rows.values()))
        stats = {split: tfdv.load_stats_binary(str(p)) for split, p in stats_paths.items()}
        schema_file = schema_path(config)
        inferred = not schema_file.exists()
        if inferred:
            with artifacts.atomic_dir(schema_file.parent) as schema_tmp:
                tfdv.write_schema_text(infer_schema(config, stats["train"]), str(schema_tmp / schema_file.name))
        schema = tfdv.load_schema_text(str(schema_file))
        found = []
        for split, split_stats in stats.items():
            anomalies = tfdv.validate_statistics(split_stats, schema, environment=TRAINING)
            tfdv.write_anomalies_text(anomalies, str(tmp / f"{split}.anomalies.pbtxt"))
            found += describe(anomalies, split)
        result = {"statistics": {s: str(output_dir / p.name) for s, p in stats_paths.items()},
                  "schema": str(schema_file), "schema_inferred": inferred,
                  "anomalies": found, "anomaly_count": len(found)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
