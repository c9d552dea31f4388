"""Validate: TFDV statistics once per span, kept in the span's folder, and the checks of the run's
new span (pipeline_lib.spans): against the pipeline's curated schema (a text file next to its
config; inferred on the first run when absent), against the spans before it (drift of every feature
of the schema, measured by pipeline_lib.drift), against serving-time data when there is some
(skew), its row volume against the spans before it, and its duplicated rows. Drift and skew are
graded: past a feature's threshold a finding of its severity, past its block level a blocking one.
Spans ingested as history (a first run's window) are checked against the schema only; spans that
changed at the source get every check, like a new one. Data that cannot be validated (an empty
window, an unreadable file) is reported as an anomaly too, so that it is filed and alerted.

The statistics of the spans that lack them are computed in one Beam pass, sliced by span (TFDV's
slice functions), over both splits of each (the split is a hash of the key: it makes no difference
to the data's quality). The window's figures on the Data page are merged from the spans' kept
statistics (statistics_views), not computed again.

The result is JSON: each finding is {feature, kind, description, severity, examples, spans,
statistics (comma-separated files)}; the tracker files it under (pipeline, feature, kind).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow_data_validation as tfdv
from scipy import stats as scipy_stats
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx_bsl.public import tfxio

from pipeline_lib import artifacts, drift, spans, statistics_views, tfrecord
from pipeline_lib.beam import batch_size, beam_pipeline, examples_source, read_examples
from pipeline_lib.config import FeatureChecks
from pipeline_lib.steps.ingest import SPLITS

SERVING = "SERVING"
TRAINING = "TRAINING"
DATA = "(data)"  # the feature name of anomalies about the data as a whole
EMPTY_WINDOW, EMPTY_SPLIT, UNREADABLE = "EMPTY_WINDOW", "EMPTY_SPLIT", "UNREADABLE_DATA"
VOLUME_DROP, VOLUME_SPIKE, DUPLICATE_ROWS = "VOLUME_DROP", "VOLUME_SPIKE", "DUPLICATE_ROWS"
MAX_EXAMPLES = 5
STATS_RECORD = "stats.json"  # which ingest of the span the statistics are of
CHECKS = "checks.json"  # the span's findings and measurements when it was last checked
ALL = "(all)"  # the statistics of every span computed in a run, together (a first schema's)


def stats_file(span_path: str | Path) -> Path:
    return Path(span_path) / spans.STATISTICS / "stats.tfrecord"


def span_slicer(config):
    """TFDV slice function (a plain function, as TFDV wants): each record batch cut by the span its
    rows' timestamps fall in, the slice named like the span."""
    column = config.source.timestamp_column

    def slice_by_span(record_batch):
        values = record_batch.column(record_batch.schema.get_field_index(column)).flatten()  # one per row
        index = spans.index_of_epoch(config, values.to_numpy(zero_copy_only=False).astype(np.int64))
        for i in np.unique(index):
            yield spans.from_index(config, i).name, record_batch.take(np.flatnonzero(index == i))

    return slice_by_span


def compute_statistics(config, entries: list[dict], serving_pattern: str | None, folder: Path) -> dict:
    """The statistics of each span (its rows, both splits: the split is a hash of the key, so it
    makes no difference to the data's quality) in one pass sliced by span, and of serving-time
    data: {span name, ALL (the spans together, when several) or "serving": statistics}.
    TFDV's cost is mostly per output, not per row: ~0.1 s per span (18 numeric taxi features)."""
    plain = tfdv.StatsOptions(num_quantiles_histogram_buckets=drift.QUANTILES)
    # one span: its statistics are the whole input's (TFDV always adds that slice, so slicing
    # would compute them twice)
    by_span = tfdv.StatsOptions(num_quantiles_histogram_buckets=drift.QUANTILES,
                                experimental_slice_functions=[span_slicer(config)]) if len(entries) > 1 else plain
    files = spans.files(entries, *SPLITS)
    paths = {"spans": folder / "spans.stats", "serving": folder / "serving.stats"}
    rows = sum(sum(e["rows"].values()) for e in entries)
    with tempfile.TemporaryDirectory() as tmp, beam_pipeline(config, rows, tmp) as p:
        if files:
            _ = (read_examples(p, files, "spans", batch_size(config), examples_source())
                 | "Stats[spans]" >> tfdv.GenerateStatistics(by_span)
                 | "Write[spans]" >> tfdv.WriteStatisticsToBinaryFile(str(paths["spans"])))
        if serving_pattern:
            _ = (p
                 | "Read[serving]" >> tfxio.TFExampleRecord(file_pattern=serving_pattern).BeamSource(batch_size(config))
                 | "Stats[serving]" >> tfdv.GenerateStatistics(plain)
                 | "Write[serving]" >> tfdv.WriteStatisticsToBinaryFile(str(paths["serving"])))
    out = {}
    for name, path in paths.items():
        if not path.exists():
            continue
        for dataset in tfdv.load_stats_binary(str(path)).datasets:
            if name == "serving":
                key = "serving"
            elif dataset.name in ("", tfdv.constants.DEFAULT_SLICE_KEY):  # unsliced statistics have no name
                key = ALL if len(entries) > 1 else entries[0]["span"]
            else:
                key = dataset.name
            out[key] = statistics_pb2.DatasetFeatureStatisticsList(datasets=[dataset])
    return out


def keep_statistics(entry: dict, stats) -> None:
    """A span's statistics into its folder (replaced in one rename), tagged with its ingest."""
    with artifacts.atomic_dir(Path(entry["path"]) / spans.STATISTICS) as tmp:
        (tmp / stats_file("").name).write_bytes(stats.SerializeToString())
        artifacts.write_json(tmp / STATS_RECORD, {"ingest_id": entry["ingest_id"]})


def kept_statistics(entry: dict):
    """The span's kept statistics, if they are of its current ingest."""
    record = Path(entry["path"]) / spans.STATISTICS / STATS_RECORD
    if not record.is_file() or json.loads(record.read_text())["ingest_id"] != entry["ingest_id"]:
        return None
    return tfdv.load_stats_binary(str(stats_file(entry["path"])))


def infer_schema(config, train_stats):
    """Infer from statistics of the data and mark the label's inputs as absent at serving."""
    schema = tfdv.infer_schema(train_stats, infer_feature_shape=False)
    schema.default_environment.extend([TRAINING, SERVING])
    for column in config.label.raw_columns:
        tfdv.get_feature(schema, column).not_in_environment.append(SERVING)
    return schema


def load_schema(path: Path) -> schema_pb2.Schema:
    try:
        return tfdv.load_schema_text(str(path))
    except Exception as e:  # noqa: BLE001 - a hand-edited file: say which one and why
        raise ValueError(f"schema {path} cannot be read: {e}") from None


def write_schema(schema, path: Path) -> None:
    """Replace the file in one rename, so a reader never sees half a schema."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tfdv.write_schema_text(schema, str(tmp))
    tmp.replace(path)


def serving_files(config) -> list[Path]:
    """Serving-time tf.Examples (e.g. logged requests), when the deployment records some."""
    return sorted(artifacts.pipeline_root(config.name).glob(config.validation.serving_data))


def unreadable(entry: dict) -> dict | None:
    """A finding when one of the span's files does not read through as ingest wrote it."""
    for split in SPLITS:
        files = sorted((Path(entry["path"]) / split).glob("*"))
        try:
            counted = sum(tfrecord.check(f) for f in files)
        except (OSError, tfrecord.CorruptRecord) as e:
            return _data_finding(UNREADABLE, f"the {split} split cannot be read: {e}", entry)
        if counted != entry["rows"][split]:
            return _data_finding(UNREADABLE, f"the {split} split has {counted} records, ingest wrote "
                                             f"{entry['rows'][split]}: files missing or replaced", entry)
    return None


def _data_finding(kind: str, description: str, entry: dict, examples=()) -> dict:
    return {"feature": DATA, "kind": kind, "description": description, "severity": None,
            "examples": list(examples), "statistics": None, "spans": [entry["span"]]}


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


def presence_shortfall_is_significant(present: int, total: int, schema_feature, significance: float) -> bool:
    """TFDV flags any presence below the schema's min_fraction, and on a small span a few missing
    values do that by chance (seen: 22 of 25 against 0.9 on a clean 60-day span; a feature present
    in half the trips absent from a day's 2). The shortfall counts when a binomial test says the
    feature is really present less often than that (a schema without min_fraction cannot say:
    it counts)."""
    expected = schema_feature.presence.min_fraction
    return not expected or bool(scipy_stats.binom.cdf(present, total, expected) < significance)


PRESENCE = (anomalies_pb2.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT, anomalies_pb2.AnomalyInfo.FEATURE_TYPE_NOT_PRESENT)
TYPE_CHANGED = anomalies_pb2.AnomalyInfo.UNEXPECTED_DATA_TYPE
DOMAIN_CHECKS = ("BOOL_TYPE_", "ENUM_TYPE_", "FLOAT_TYPE_", "INT_TYPE_", "STRING_TYPE_", "DOMAIN_INVALID_FOR_TYPE")


def causes(reasons) -> list[tuple[object, list]]:
    """TFDV's reasons for one feature, one per cause with the reasons that follow from it: a changed
    type (UNEXPECTED_DATA_TYPE) fails the schema's domain checks too, run on values of the other type
    (FLOAT_TYPE_STRING_NOT_FLOAT: strings that are not floats), one cause; presence and value counts
    are causes of their own."""
    changed = next((r for r in reasons if r.type == TYPE_CHANGED), None)
    if changed is None:
        return [(r, []) for r in reasons]
    others = [r for r in reasons if r is not changed]
    follows = [anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith(DOMAIN_CHECKS) for r in others]
    return [(changed, [r for r, f in zip(others, follows) if f]), *((r, []) for r, f in zip(others, follows) if not f)]


def findings_of(anomalies: anomalies_pb2.Anomalies, stats, schema, stats_path: Path, significance: float) -> list[dict]:
    """One finding per (feature, cause), the reasons that follow from the cause in its description
    (`causes`): its kind stays the same whichever of them a day shows, so the tracker finds the same
    record. Drift and unexpected values of a feature are two records. A presence shortfall that
    chance explains (`significance`) is none."""
    kind = anomalies_pb2.AnomalyInfo.Type.Name
    out = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = list(info.reason) or [anomalies_pb2.AnomalyInfo.Reason(description=info.description)]
        fs = drift.feature_stats(stats, feature)
        present = getattr(fs, fs.WhichOneof("stats")).common_stats.num_non_missing if fs is not None and fs.WhichOneof("stats") else 0
        for reason, following in causes(reasons):
            if reason.type in PRESENCE and not presence_shortfall_is_significant(
                    present, stats.datasets[0].num_examples, tfdv.get_feature(schema, feature), significance):
                continue
            description = " ".join([reason.description, *(f"({kind(r.type)}: {r.description})" for r in following)])
            out.append({"feature": feature, "kind": kind(reason.type), "description": description,
                        "examples": examples_of(feature, stats, schema), "statistics": str(stats_path)})
            if fs is not None and fs.HasField("string_stats") and "UNEXPECTED_STRING_VALUES" in out[-1]["kind"]:
                out[-1]["values"] = [repr(v) for v in unexpected_values(fs, schema, feature)]  # new ones reopen
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        out.append({"feature": DATA, "kind": kind(info.reason[0].type) if info.reason else "DATASET",
                    "description": info.description, "severity": None, "examples": [], "statistics": str(stats_path)})
    return out


def compared_features(config, schema) -> list[str]:
    """Every feature of the schema (every column read, without one) but the timestamp, which moves
    with time by design."""
    names = [f.name for f in schema.feature] if schema is not None else config.raw_columns()
    return sorted(n for n in names if n != config.source.timestamp_column)


def measure_changes(config, features: list[str], current, references: list, against: str, kind: str,
                    serving_schema=None) -> list[dict]:
    """Drift (`references`: the spans before, merged) or skew (serving-time data) of each feature,
    crossed or not: {feature, kind, against, threshold, block, change}."""
    validation, out = config.validation, []
    for feature in features:
        if serving_schema is not None and SERVING in tfdv.get_feature(serving_schema, feature).not_in_environment:
            continue
        now = drift.summary(drift.feature_stats(current, feature))
        before = drift.merge([drift.summary(drift.feature_stats(r, feature)) for r in references])
        change = drift.change(before, now)
        if change is None:
            continue
        default = (validation.strings if now["kind"] == "strings" else
                   validation.categories if feature in config.features.categorical else validation.numbers)
        threshold, block = validation.features.get(feature, FeatureChecks()).levels(kind, default)
        if threshold is not None:
            out.append({"feature": feature, "kind": kind, "against": against, "threshold": threshold,
                        "block": block, "change": change})
    return out


def changes(config, measured: list[dict], stats_path: Path) -> list[dict]:
    """The measured changes that are large and significant, as findings."""
    out = []
    for m in measured:
        found = drift.finding(m["kind"], m["feature"], m["against"], m["change"], m["threshold"],
                              config.validation.significance, m["block"])
        if found:
            out.append({**found, "statistics": str(stats_path)})
    return out


def volume_finding(config, entry: dict, before: list[dict]) -> dict | None:
    """The span's rows against the median of the spans before it: beyond the configured drop or
    spike, and unlikely by chance (Poisson at `validation.significance`)."""
    if not before:
        return None
    rows, expected = sum(entry["rows"].values()), float(np.median([sum(e["rows"].values()) for e in before]))
    volume, significance = config.validation.volume, config.validation.significance
    if expected <= 0:
        return None
    ratio = rows / expected
    if ratio < 1 - volume.drop and scipy_stats.poisson.cdf(rows, expected) < significance:
        kind, bound = VOLUME_DROP, f"below {1 - volume.drop:g}x"
    elif ratio > 1 + volume.spike and scipy_stats.poisson.sf(rows - 1, expected) < significance:
        kind, bound = VOLUME_SPIKE, f"above {1 + volume.spike:g}x"
    else:
        return None
    return _data_finding(kind, f"span {entry['span']} has {rows:,} rows, {ratio:.2f}x the median {expected:,.0f} of "
                               f"the {len(before)} spans before it ({bound})", entry,
                         [f"{rows:,} rows", f"median before {expected:,.0f}"])


def duplicates_finding(config, entry: dict) -> dict | None:
    rows, duplicates = sum(entry["rows"].values()), entry["duplicates"]
    limit = config.validation.duplicates.max_fraction
    if not rows or duplicates / rows <= limit:
        return None
    by = ", ".join(config.validation.duplicates.key) or "every column"
    return _data_finding(DUPLICATE_ROWS, f"span {entry['span']}: {duplicates:,} of its {rows:,} rows repeat an "
                                         f"earlier row ({duplicates / rows:.0%} > {limit:.0%}; compared by {by})",
                         entry, [f"{duplicates:,} duplicated rows"])


def check_span(config, schema, entry: dict, stats, before: list[tuple[dict, object]], serving,
               full: bool) -> tuple[list[dict], list[dict]]:
    """One span's findings (each with its severity) and drift/skew measurements. `before`: the
    spans before it (entry, statistics or None); `full`: every check (a new or changed span),
    else the schema's only (history)."""
    found, measured = [], []
    if schema is not None and stats is not None:
        anomalies = tfdv.validate_statistics(stats, schema, environment=TRAINING)
        found += findings_of(anomalies, stats, schema, stats_file(entry["path"]), config.validation.significance)
    if full:
        if stats is not None:
            features = compared_features(config, schema)
            references = [s for _, s in before if s is not None]
            if references:
                measured += measure_changes(config, features, stats, references,
                                            f"the {len(references)} spans before it", "DRIFT")
            if serving is not None:
                measured += measure_changes(config, features, stats, [serving], "serving-time data", "SKEW", schema)
            found += changes(config, measured, stats_file(entry["path"]))
        found += [f for f in (volume_finding(config, entry, [e for e, _ in before]), duplicates_finding(config, entry)) if f]
    for f in found:
        f["spans"] = [entry["span"]]
        if not f["description"].startswith("span "):
            f["description"] = f"span {entry['span']}: {f['description']}"
        f["severity"] = f.get("severity") or config.validation.severity_of(f["feature"], f["kind"])
    return found, measured


def merge(findings: list[dict]) -> list[dict]:
    """The same (feature, kind) seen in several spans is one finding listing them (the newest
    span's description and examples); blocking if any of them blocks."""
    merged: dict[tuple[str, str], dict] = {}
    for f in findings:
        key = (f["feature"], f["kind"])
        if key not in merged:
            merged[key] = {**f, "spans": list(f["spans"])}
            continue
        m = merged[key]  # the statistics of every span it was seen in: `accept` covers them all
        m["statistics"] = ",".join(dict.fromkeys(filter(None, [*(m["statistics"] or "").split(","), f["statistics"]])))
        if "values" in f:
            m["values"] = list(dict.fromkeys(m.get("values", []) + f["values"]))
        m["spans"] += [s for s in f["spans"] if s not in m["spans"]]
        m.update(description=f["description"], examples=f["examples"])
        if "statistic" in f:
            m["statistic"] = max(m.get("statistic", 0.0), f["statistic"])
        if f["severity"] == "blocking":
            m["severity"] = "blocking"
    for m in merged.values():
        if len(m["spans"]) > 1:
            others = m["spans"][:-1]
            m["description"] += f" (also in span{'s' if len(others) > 1 else ''} {', '.join(others[-5:])}" + \
                                (f" and {len(others) - 5} more)" if len(others) > 5 else ")")
    return list(merged.values())


def window_findings(config, entries: list[dict]) -> list[dict]:
    """What makes the window as a whole unusable: no rows at all, or none in a split."""
    rows = {split: sum(e["rows"][split] for e in entries) for split in SPLITS}
    newest = entries[-1]
    if not sum(rows.values()):
        found = [_data_finding(EMPTY_WINDOW, f"the window has no rows: nothing in the source for its "
                                              f"{len(entries)} spans, {entries[0]['span']} .. {newest['span']}", newest)]
    else:
        found = [_data_finding(EMPTY_SPLIT, f"the {split} split of the window has no rows", newest)
                 for split in SPLITS if not rows[split]]
    for f in found:
        f["severity"] = config.validation.severity_of(f["feature"], f["kind"])
    return found


def run(config, output_dir: Path, examples: str) -> dict:
    ingested = artifacts.read_result(Path(examples))
    entries, reference_spans = ingested["spans"], config.validation.reference_spans
    newest = entries[-1]
    full = {newest["span"], *ingested.get("changed", [])}  # every check; what else was ingested is history
    schema_file = config.schema_path()
    serving = str(artifacts.pipeline_root(config.name) / config.validation.serving_data) if serving_files(config) else None
    with artifacts.atomic_dir(output_dir) as tmp:
        found = window_findings(config, entries)
        kept = {e["span"]: kept_statistics(e) for e in entries if sum(e["rows"].values())}
        missing = [e for e in entries if e["span"] in kept and kept[e["span"]] is None]
        broken = [f for f in map(unreadable, missing) if f]
        found += broken
        todo = [e for e in missing if e["span"] not in {f["spans"][0] for f in broken}]
        computed = compute_statistics(config, todo, serving, tmp) if todo or serving else {}
        for e in todo:
            kept[e["span"]] = computed[e["span"]]
            keep_statistics(e, kept[e["span"]])
        first = computed.get(ALL) or kept.get(newest["span"])
        inferred = not schema_file.exists() and first is not None
        if inferred:
            write_schema(infer_schema(config, first), schema_file)
        schema = load_schema(schema_file) if schema_file.exists() else None
        measured, history = [], {e["span"] for e in todo} - full
        for i, e in enumerate(entries):
            if e["span"] not in full and e["span"] not in history:
                continue
            before = [(b, kept.get(b["span"])) for b in entries[max(0, i - reference_spans):i]]
            span_found, span_measured = check_span(config, schema, e, kept.get(e["span"]), before,
                                                   computed.get("serving") if e is newest else None, e["span"] in full)
            found += span_found
            if e["span"] in full:
                measured += span_measured
            if kept.get(e["span"]) is not None:
                write_checks(e, span_found, span_measured)
        previous = next((kept[b["span"]] for b in reversed(entries[:-1]) if kept.get(b["span"]) is not None), None)
        statistics_views.write(tmp, {name: s for name, s in kept.items() if s is not None}, newest["span"],
                               previous, measured)
        found = merge(found)
        result = {"span": newest["span"], "checked": [e["span"] for e in entries if e["span"] in full],
                  "computed": [e["span"] for e in todo],
                  "statistics": str(stats_file(newest["path"])) if kept.get(newest["span"]) is not None else None,
                  "schema": str(schema_file), "schema_inferred": inferred,
                  "anomalies": found, "anomaly_count": len(found),
                  "blocking": sum(f["severity"] == "blocking" for f in found)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result


def write_checks(entry: dict, found: list[dict], measured: list[dict]) -> None:
    """What checking the span found and measured, next to its statistics (the Data page's drift
    charts read these), replaced in one rename."""
    path = Path(entry["path"]) / spans.STATISTICS / CHECKS
    scratch = path.with_name(f".{CHECKS}.tmp-{os.getpid()}")
    artifacts.write_json(scratch, {"ingest_id": entry["ingest_id"], "anomalies": found,
                                   "measured": statistics_views.drift_view(measured)})
    scratch.replace(path)
