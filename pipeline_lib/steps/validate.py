"""Validate: TFDV statistics per split, checked against the pipeline's curated schema (a text file
next to its config; inferred on the first run when absent), against the previous span (drift) and
against serving-time data when there is some (skew), with per-feature thresholds and severities
from the config. Data that cannot be validated (an empty span, an unreadable file) is reported as
an anomaly too, with a description, so that it is filed and alerted like the others.

The result is JSON: each finding is {feature, kind, description, severity, examples, splits,
statistics (comma-separated files)}; the tracker files it under (pipeline, feature, kind).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import apache_beam as beam
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx_bsl.public import tfxio

from pipeline_lib import artifacts, statistics_views, tfrecord
from pipeline_lib.beam import pipeline_options
from pipeline_lib.steps.ingest import SPLITS

SERVING = "SERVING"
TRAINING = "TRAINING"
DATA = "(data)"  # the feature name of anomalies about the span as a whole
EMPTY_SPAN, EMPTY_SPLIT, UNREADABLE = "EMPTY_SPAN", "EMPTY_SPLIT", "UNREADABLE_DATA"
MAX_EXAMPLES = 5


def stats_filename(split: str) -> str:
    return f"{split}.stats.tfrecord"


def compute_statistics(config, patterns: dict[str, str], output_dir: Path, num_rows: int) -> dict[str, Path]:
    """One Beam pipeline computing the statistics of each named file pattern (start-up paid once)."""
    paths = {name: output_dir / stats_filename(name) for name in patterns}
    with tempfile.TemporaryDirectory() as tmp, \
            beam.Pipeline(options=pipeline_options(config, num_rows, tmp)) as p:
        for name, pattern in patterns.items():
            _ = (p
                 | f"Read[{name}]" >> tfxio.TFExampleRecord(file_pattern=pattern).BeamSource()
                 | f"Stats[{name}]" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | f"Write[{name}]" >> tfdv.WriteStatisticsToBinaryFile(str(paths[name])))
    return paths


def infer_schema(config, train_stats):
    """Infer from the training split and mark the label's inputs as absent at serving."""
    schema = tfdv.infer_schema(train_stats, infer_feature_shape=False)
    schema.default_environment.extend([TRAINING, SERVING])
    for column in config.label.raw_columns:
        tfdv.get_feature(schema, column).not_in_environment.append(SERVING)
    return schema


def load_schema(path: Path) -> schema_pb2.Schema:
    try:
        return tfdv.load_schema_text(str(path))
    except Exception as e:  # a hand-edited file: say which one and why
        raise ValueError(f"schema {path} cannot be read: {e}") from None


def write_schema(schema, path: Path) -> None:
    """Replace the file in one rename, so a reader never sees half a schema."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tfdv.write_schema_text(schema, str(tmp))
    tmp.replace(path)


def with_comparators(schema, config):
    """A copy of the schema with the config's drift and skew thresholds (they live in the config,
    not in the curated file): L-infinity for strings, Jensen-Shannon divergence for numbers."""
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    for name, checks in config.validation.features.items():
        feature = tfdv.get_feature(out, name)
        for threshold, comparator in ((checks.drift, feature.drift_comparator),
                                      (checks.skew, feature.skew_comparator)):
            if threshold is None:
                continue
            if feature.type == schema_pb2.BYTES:
                comparator.infinity_norm.threshold = threshold
            else:
                comparator.jensen_shannon_divergence.threshold = threshold
    return out


def previous_statistics(config, span: dt.date) -> Path | None:
    """The training statistics of the newest earlier span of this pipeline, if any."""
    runs = artifacts.pipeline_root(config.name) / "runs"
    earlier = sorted(p for p in runs.glob(f"*/validate/{stats_filename('train')}")
                     if p.parent.parent.name < span.isoformat())
    return earlier[-1] if earlier else None


def serving_files(config) -> list[Path]:
    """Serving-time tf.Examples (e.g. logged requests), when the deployment records some."""
    return sorted(artifacts.pipeline_root(config.name).glob(config.validation.serving_data))


def readable_splits(examples: Path, rows: dict[str, int], window: dict) -> tuple[dict[str, str], list[dict]]:
    """Each split's file pattern when it has rows and every file reads through; findings otherwise."""
    findings, patterns = [], {}
    if sum(rows.values()) == 0:
        return {}, [_data_finding(EMPTY_SPAN, f"the span has no rows: nothing in the source for window "
                                              f"[{window['start'][:10]}, {window['end'][:10]})", list(rows))]
    for split in SPLITS:
        files = sorted((examples / split).glob("*"))
        if not rows.get(split):
            findings.append(_data_finding(EMPTY_SPLIT, f"the {split} split has no rows", [split]))
            continue
        try:
            counted = sum(tfrecord.check(f) for f in files)
        except (OSError, tfrecord.CorruptRecord) as e:
            findings.append(_data_finding(UNREADABLE, f"the {split} split cannot be read: {e}", [split]))
            continue
        if counted != rows[split]:
            findings.append(_data_finding(UNREADABLE, f"the {split} split has {counted} records, ingest "
                                                      f"wrote {rows[split]}: files missing or replaced", [split]))
            continue
        patterns[split] = str(examples / split / "*")
    return patterns, findings


def _data_finding(kind: str, description: str, splits: list[str]) -> dict:
    return {"feature": DATA, "kind": kind, "description": description, "severity": "blocking",
            "examples": [], "splits": splits, "statistics": None}


def examples_of(feature: str, stats, schema) -> list[str]:
    """A few values that show the problem: unexpected strings, or a number's range and presence."""
    dataset = stats.datasets[0]
    try:
        fs = tfdv.get_feature_stats(dataset, tfdv.FeaturePath([feature]))
    except ValueError:
        return [f"absent from all {dataset.num_examples} examples"]
    if fs.HasField("string_stats"):
        common = fs.string_stats.common_stats
        values = [b.label for b in fs.string_stats.rank_histogram.buckets] or \
                 [v.value for v in fs.string_stats.top_values]
        try:
            domain = set(getattr(tfdv.get_domain(schema, feature), "value", ()))
        except ValueError:  # no domain
            domain = set()
        unexpected = [v for v in values if domain and v not in domain]
        shown = unexpected or values
        out = [repr(v) for v in shown[:MAX_EXAMPLES]]
    else:
        num = fs.num_stats
        common = num.common_stats
        out = [f"min {num.min:g}", f"max {num.max:g}", f"mean {num.mean:g}"]
    total = common.num_missing + common.num_non_missing
    if total and common.num_missing:
        out.append(f"missing in {common.num_missing:,} of {total:,} examples ({common.num_missing / total:.0%})")
    return out


def findings_of(anomalies: anomalies_pb2.Anomalies, split: str, stats, schema, stats_path: Path, config) -> list[dict]:
    """One finding per (feature, reason): drift and unexpected values of a feature are two records."""
    kind = anomalies_pb2.AnomalyInfo.Type.Name
    out = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = info.reason or [anomalies_pb2.AnomalyInfo.Reason(description=info.description)]
        for reason in reasons:
            out.append({"feature": feature, "kind": kind(reason.type), "description": reason.description,
                        "severity": config.validation.severity_of(feature), "splits": [split],
                        "examples": examples_of(feature, stats, schema), "statistics": str(stats_path)})
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        out.append({**_data_finding(kind(info.reason[0].type) if info.reason else "DATASET", info.description, [split]),
                    "statistics": str(stats_path)})
    return out


def merge(findings: list[dict]) -> list[dict]:
    """The same (feature, kind) seen in several splits is one finding listing the splits."""
    merged: dict[tuple[str, str], dict] = {}
    for f in findings:
        key = (f["feature"], f["kind"])
        if key in merged:  # the statistics of every split it was seen in: `accept` covers them all
            merged[key]["splits"] += [s for s in f["splits"] if s not in merged[key]["splits"]]
            merged[key]["statistics"] = ",".join(filter(None, [merged[key]["statistics"], f["statistics"]]))
        else:
            merged[key] = {**f, "splits": list(f["splits"])}
    return list(merged.values())


def run(config, output_dir: Path, examples: str) -> dict:
    examples = Path(examples)
    ingested = artifacts.read_result(examples)
    span = dt.date.fromisoformat(ingested["window"]["end"][:10])
    schema_file = config.schema_path()
    with artifacts.atomic_dir(output_dir) as tmp:
        patterns, found = readable_splits(examples, ingested["rows"], ingested["window"])
        if serving_files(config) and patterns:
            patterns["serving"] = str(artifacts.pipeline_root(config.name) / config.validation.serving_data)
        stats_paths = compute_statistics(config, patterns, tmp, sum(ingested["rows"].values())) if patterns else {}
        stats = {name: tfdv.load_stats_binary(str(p)) for name, p in stats_paths.items()}
        inferred = not schema_file.exists() and "train" in stats
        if inferred:
            write_schema(infer_schema(config, stats["train"]), schema_file)
        schema = load_schema(schema_file) if schema_file.exists() else None
        previous = previous_statistics(config, span)
        if schema is not None:
            checked = with_comparators(schema, config)
            for name, split_stats in stats.items():
                extra = {}
                if name == "train":
                    extra = {"previous_statistics": tfdv.load_stats_binary(str(previous)) if previous else None,
                             "serving_statistics": stats.get("serving")}
                anomalies = tfdv.validate_statistics(split_stats, checked if name == "train" else schema,
                                                     environment=SERVING if name == "serving" else TRAINING, **extra)
                tfdv.write_anomalies_text(anomalies, str(tmp / f"{name}.anomalies.pbtxt"))
                found += findings_of(anomalies, name, split_stats, schema, output_dir / stats_paths[name].name, config)
        statistics_views.write(tmp, stats)
        found = merge(found)
        result = {"span": span.isoformat(),
                  "statistics": {s: str(output_dir / p.name) for s, p in stats_paths.items()},
                  "previous_statistics": str(previous) if previous else None,
                  "schema": str(schema_file), "schema_inferred": inferred,
                  "anomalies": found, "anomaly_count": len(found),
                  "blocking": sum(f["severity"] == "blocking" for f in found)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
