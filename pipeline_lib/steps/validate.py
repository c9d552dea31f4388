"""Validate: TFDV statistics per split, checked against the pipeline's curated schema (a text file
next to its config; inferred on the first run when absent), against the previous span (drift) and
against serving-time data when there is some (skew, both measured by pipeline_lib.drift), with
per-feature thresholds and severities per kind from the config. Data that cannot be validated (an empty span, an unreadable file) is reported as
an anomaly too, with a description, so that it is filed and alerted like the others.

The result is JSON: each finding is {feature, kind, description, severity, examples, splits,
statistics (comma-separated files)}; the tracker files it under (pipeline, feature, kind).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx_bsl.public import tfxio

from pipeline_lib import artifacts, drift, statistics_views, tfrecord
from pipeline_lib.beam import batch_size, beam_pipeline
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
            beam_pipeline(config, num_rows, tmp) as p:
        for name, pattern in patterns.items():
            _ = (p
                 | f"Read[{name}]" >> tfxio.TFExampleRecord(file_pattern=pattern).BeamSource(batch_size(config))
                 | f"Stats[{name}]" >> tfdv.GenerateStatistics(tfdv.StatsOptions(num_quantiles_histogram_buckets=drift.QUANTILES))
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


def previous_statistics(config, span: dt.date) -> Path | None:
    """The training statistics of the newest earlier span of this pipeline, if any."""
    return artifacts.previous_run_file(config.name, span, "validate", stats_filename("train"))


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
    return {"feature": DATA, "kind": kind, "description": description, "severity": None,
            "examples": [], "splits": splits, "statistics": None}


def string_values(fs) -> list[str]:
    return [b.label for b in fs.string_stats.rank_histogram.buckets] or [v.value for v in fs.string_stats.top_values]


def unexpected_values(fs, schema, feature: str) -> list[str]:
    """A string feature's values outside its schema domain (none without a domain)."""
    values = string_values(fs)
    try:
        domain = set(getattr(tfdv.get_domain(schema, feature), "value", ()))
    except ValueError:  # no domain
        return []
    return [v for v in values if domain and v not in domain]


def examples_of(feature: str, stats, schema) -> list[str]:
    """A few values that show the problem: unexpected strings, or a number's range and presence."""
    dataset = stats.datasets[0]
    fs = drift.feature_stats(stats, feature)
    if fs is None:
        return [f"absent from all {dataset.num_examples} examples"]
    if fs.HasField("string_stats"):
        common = fs.string_stats.common_stats
        shown = unexpected_values(fs, schema, feature) or string_values(fs)
        out = [repr(v) for v in shown[:MAX_EXAMPLES]]
    else:
        num = fs.num_stats
        common = num.common_stats
        out = [f"min {num.min:g}", f"max {num.max:g}", f"mean {num.mean:g}"]
    total = common.num_missing + common.num_non_missing
    if total and common.num_missing:
        out.append(f"missing in {common.num_missing:,} of {total:,} examples ({common.num_missing / total:.0%})")
    return out


def presence_shortfall_is_significant(fs, schema_feature, significance: float) -> bool:
    """TFDV flags any presence below the schema's min_fraction, and on a small split a few missing
    values do that by chance (seen: 22 of 25 against 0.9 on a clean 60-day span). The shortfall
    counts when a binomial test says the feature is really present less often than that."""
    from scipy import stats as scipy_stats

    common = getattr(fs, fs.WhichOneof("stats")).common_stats
    present, total = common.num_non_missing, common.num_non_missing + common.num_missing
    return bool(scipy_stats.binom.cdf(present, total, schema_feature.presence.min_fraction) < significance)


def findings_of(anomalies: anomalies_pb2.Anomalies, split: str, stats, schema, stats_path: Path,
                significance: float) -> list[dict]:
    """One finding per (feature, reason): drift and unexpected values of a feature are two records.
    A presence shortfall that chance explains (`significance`) is none."""
    kind = anomalies_pb2.AnomalyInfo.Type.Name
    out = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = info.reason or [anomalies_pb2.AnomalyInfo.Reason(description=info.description)]
        fs = drift.feature_stats(stats, feature)
        for reason in reasons:
            if (reason.type == anomalies_pb2.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT and fs is not None
                    and not presence_shortfall_is_significant(fs, tfdv.get_feature(schema, feature), significance)):
                continue
            out.append({"feature": feature, "kind": kind(reason.type), "description": reason.description,
                        "splits": [split], "examples": examples_of(feature, stats, schema), "statistics": str(stats_path)})
            if fs is not None and fs.HasField("string_stats") and "UNEXPECTED_STRING_VALUES" in out[-1]["kind"]:
                out[-1]["values"] = [repr(v) for v in unexpected_values(fs, schema, feature)]  # new ones reopen
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        out.append({**_data_finding(kind(info.reason[0].type) if info.reason else "DATASET", info.description, [split]),
                    "statistics": str(stats_path)})
    return out


def measure_changes(config, stats, previous, serving) -> list[dict]:
    """Drift (train against the previous span's train) and skew (train against serving-time data)
    of every feature that has a threshold, crossed or not: {feature, kind, against, threshold, change}."""
    out = []
    for feature, checks in sorted(config.validation.features.items()):
        for kind, threshold, reference, against in (("DRIFT", checks.drift, previous, "the previous span"),
                                                    ("SKEW", checks.skew, serving, "serving-time data")):
            if threshold is None or reference is None:
                continue
            change = drift.compare(feature, reference, stats)
            if change is not None:
                out.append({"feature": feature, "kind": kind, "against": against, "threshold": threshold, "change": change})
    return out


def changes(config, measured: list[dict], stats_path: Path) -> list[dict]:
    """The measured changes that are large and significant, as findings."""
    out = []
    for m in measured:
        found = drift.finding(m["kind"], m["feature"], m["against"], m["change"], m["threshold"],
                              config.validation.significance)
        if found:
            out.append({**found, "splits": ["train"], "statistics": str(stats_path)})
    return out


def merge(findings: list[dict]) -> list[dict]:
    """The same (feature, kind) seen in several splits is one finding listing the splits."""
    merged: dict[tuple[str, str], dict] = {}
    for f in findings:
        key = (f["feature"], f["kind"])
        if key in merged:  # the statistics of every split it was seen in: `accept` covers them all
            merged[key]["splits"] += [s for s in f["splits"] if s not in merged[key]["splits"]]
            merged[key]["statistics"] = ",".join(filter(None, [merged[key]["statistics"], f["statistics"]]))
            if "values" in f:
                merged[key]["values"] = list(dict.fromkeys(merged[key].get("values", []) + f["values"]))
        else:
            merged[key] = {**f, "splits": list(f["splits"])}
    return list(merged.values())


def check(config, stats: dict, schema, previous, stats_files: dict[str, Path], found: list[dict],
          anomalies_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Every finding about one span: `found` (the data's own) plus the schema's per split (written
    as `<split>.anomalies.pbtxt` into `anomalies_dir`), drift and skew; each with its severity.
    Also the drift and skew measurements (`measure_changes`), which the Data page charts."""
    found, measured = list(found), []
    if schema is not None:
        for name, split_stats in stats.items():
            anomalies = tfdv.validate_statistics(split_stats, schema, environment=SERVING if name == "serving" else TRAINING)
            if anomalies_dir:
                tfdv.write_anomalies_text(anomalies, str(anomalies_dir / f"{name}.anomalies.pbtxt"))
            found += findings_of(anomalies, name, split_stats, schema, stats_files[name], config.validation.significance)
    if "train" in stats:
        measured = measure_changes(config, stats["train"], previous, stats.get("serving"))
        found += changes(config, measured, stats_files["train"])
    for f in found:
        f["severity"] = config.validation.severity_of(f["feature"], f["kind"])
    return merge(found), measured


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
        found, measured = check(config, stats, schema, previous and tfdv.load_stats_binary(str(previous)),
                                {name: output_dir / p.name for name, p in stats_paths.items()}, found, tmp)
        statistics_views.write(tmp, stats, measured)
        result = {"span": span.isoformat(),
                  "statistics": {s: str(output_dir / p.name) for s, p in stats_paths.items()},
                  "previous_statistics": str(previous) if previous else None,
                  "schema": str(schema_file), "schema_inferred": inferred,
                  "anomalies": found, "anomaly_count": len(found),
                  "blocking": sum(f["severity"] == "blocking" for f in found)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
