"""Evaluate: TFMA on the eval split of the newest training spans (`evaluation.recent_rows` eval
rows; the whole window when null), data the candidate has not trained on, the candidate against
the model now serving (the baseline). Value thresholds always apply; change thresholds only once a
baseline exists. A `trivial` bound is computed from the labels of those eval rows before TFMA runs
(the trivial model's score and a margin for chance). The blessing says which thresholds failed and
why, and why a metric was not judged."""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from pathlib import Path

import numpy as np
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_model_analysis.metrics.metric_specs import metric_instance

from pipeline_lib import artifacts, serving, spans, transformed
from pipeline_lib.beam import batch_size, beam_pipeline, examples_source, read_examples
from pipeline_lib.config import TRIVIAL, TRIVIAL_BOUNDS
from pipeline_lib.serving import LABEL_INFO, SERVING_SIGNATURE, TRANSFORM_SIGNATURE

CANDIDATE, BASELINE = "candidate", "baseline"
DIFF = " - baseline"
OVERALL = "Overall"
BLESSING = "blessing.json"
REPORT = "report.md"
SLICES = "slices.json"
TFMA_OUTPUT = "tfma"
_DIRECTION = {"higher_is_better": tfma.MetricDirection.HIGHER_IS_BETTER,
              "lower_is_better": tfma.MetricDirection.LOWER_IS_BETTER}
# a `trivial` bound lies Z standard errors (of the trivial model's score on the eval rows) past that
# score: sampling noise goes that far with this chance (one-sided)
CHANCE = 0.001
Z = statistics.NormalDist().inv_cdf(1 - CHANCE)  # 3.09


def _chance_auc(labels: np.ndarray, classes: list[str]) -> tuple[float, str]:
    """A constant score has AUC 0.5; a score that ignores the label spreads around it with the
    Mann-Whitney statistic's standard error."""
    positive = int((labels == 1).sum())
    negative = labels.size - positive
    se = math.sqrt((labels.size + 1) / (12 * positive * negative)) if positive and negative else math.inf
    return 0.5 + Z * se, (f"0.5, the AUC of a constant score, plus {Z:.1f} standard errors on the "
                          f"{positive} positive and {negative} negative eval rows")


def _majority_accuracy(labels: np.ndarray, classes: list[str]) -> tuple[float, str]:
    """Always answering the eval rows' majority class: no constant answer does better there."""
    ids, counts = np.unique(labels.astype(np.int64), return_counts=True)
    share = counts.max() / labels.size
    majority = classes[ids[counts.argmax()]]
    return share + Z * math.sqrt(share * (1 - share) / labels.size), (
        f"{share:.4f}, the share of the majority class {majority!r} in the {labels.size} eval rows, "
        f"plus {Z:.1f} standard errors")


def _mean_squared_error(labels: np.ndarray, classes: list[str]) -> tuple[float, str]:
    """Always answering the eval rows' mean label: its MSE is their variance, a mean of squared
    deviations whose standard error is large for a heavy-tailed label (a few huge values)."""
    squared = (labels - labels.mean()) ** 2
    variance, se = float(squared.mean()), float(squared.std()) / math.sqrt(labels.size)
    return variance - Z * se, (f"{variance:.4g}, the variance of the label in the {labels.size} eval rows (the "
                               f"error of always answering their mean), less {Z:.1f} standard errors")


# the trivial model of each metric that may have a `trivial` bound (config.TRIVIAL_BOUNDS)
TRIVIAL_MODELS = {"AUC": _chance_auc, "BinaryAccuracy": _majority_accuracy,
                  "SparseCategoricalAccuracy": _majority_accuracy, "MeanSquaredError": _mean_squared_error}


def trivial_bounds(config, transform_graph: str, files: list[str], classes: list[str]) -> dict[str, tuple[float, str]]:
    """Metric class name -> (bound, where it comes from) for each `trivial` bound, from the labels of
    the eval rows TFMA judges (as the transform graph computes them). The best constant answer on
    those rows scores at least what one learned from the training rows (their majority class or
    mean label) does, so a model must beat that."""
    import tensorflow_transform as tft

    wanted = [name for name, t in config.evaluation.thresholds.items() if TRIVIAL in (t.lower_bound, t.upper_bound)]
    if not wanted:
        return {}
    apply = transformed.transform(tft.TFTransformOutput(transform_graph))
    labels = np.concatenate([apply(batch)[config.label.key].numpy().ravel()
                             for batch in transformed.records(files, 8192)])
    return {name: TRIVIAL_MODELS[name](labels, classes) for name in wanted}


def metric_threshold(threshold, with_change: bool):
    """The config's threshold as TFMA's; None when nothing applies (a change-only one, no baseline)."""
    out = tfma.MetricThreshold()
    if threshold.lower_bound is not None:
        out.value_threshold.lower_bound.value = threshold.lower_bound
    if threshold.upper_bound is not None:
        out.value_threshold.upper_bound.value = threshold.upper_bound
    if with_change and threshold.change_direction:
        out.change_threshold.direction = _DIRECTION[threshold.change_direction]
        if threshold.change_absolute is not None:
            out.change_threshold.absolute.value = threshold.change_absolute
        if threshold.change_relative is not None:
            out.change_threshold.relative.value = threshold.change_relative
    return out if out.ByteSize() else None


# multi-class metrics that TFMA computes per class (class binarization), then averages
PER_CLASS = {"Precision", "Recall"}


def metrics_specs(config, metrics: list, classes: list[str]) -> list:
    """One spec for a binary or regression label. For a multi-class one, the per-class metrics
    twice: binarized per class id (and top k) for the report, and averaged over the classes as
    `evaluation.average` says, which is what their thresholds judge."""
    if config.label.task != "multiclass":
        return [tfma.MetricsSpec(metrics=metrics)]
    evaluation = config.evaluation
    plain = [m for m in metrics if m.class_name not in PER_CLASS]
    averaged = [m for m in metrics if m.class_name in PER_CLASS]
    specs = [tfma.MetricsSpec(metrics=plain)] if plain else []
    if averaged:
        ids = list(range(len(classes)))
        weights = {i: 1.0 for i in ids}
        average = {"macro": tfma.AggregationOptions(macro_average=True, class_weights=weights),
                   "micro": tfma.AggregationOptions(micro_average=True, class_weights=weights),
                   "weighted": tfma.AggregationOptions(weighted_macro_average=True, class_weights=weights)}
        specs.append(tfma.MetricsSpec(metrics=averaged, aggregate=average[evaluation.average]))
        specs.append(tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name=m.class_name) for m in averaged],
            binarize=tfma.BinarizationOptions(class_ids={"values": ids}, top_k_list={"values": evaluation.top_k})))
    return specs


def eval_config(config, with_baseline: bool, classes: list[str] = (), bounds: dict | None = None):
    """TFMA's EvalConfig; `bounds` (trivial_bounds) stand in for the `trivial` bounds."""
    evaluation = config.evaluation
    metrics = []
    for name in evaluation.metrics:
        metric = tfma.MetricConfig(class_name=name)
        threshold = evaluation.thresholds.get(name)
        if name in (bounds or {}):
            threshold = threshold.model_copy(update={TRIVIAL_BOUNDS[name]: bounds[name][0]})
        tfma_threshold = threshold and metric_threshold(threshold, with_baseline)
        if tfma_threshold:
            # on the overall slice only: a threshold on every slice refuses models that are
            # better overall but lose a point on one small slice
            metric.per_slice_thresholds.append(tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()], threshold=tfma_threshold))
        metrics.append(metric)
    models = [CANDIDATE] + ([BASELINE] if with_baseline else [])
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name=name, signature_name=SERVING_SIGNATURE,
                                    label_key=config.label.key, is_baseline=name == BASELINE,
                                    preprocessing_function_names=[TRANSFORM_SIGNATURE])
                     for name in models],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=s) for s in evaluation.slices],
        metrics_specs=metrics_specs(config, metrics, list(classes)) + confusion_specs(config))


# the confusion matrix of a classification label (the Models page shows it): TFMA's binary one at
# the 0.5 threshold (num_thresholds 2: -epsilon, 0, 0.5 and 1), its multi-class one by top class
CONFUSION_PLOTS = {"binary": ("ConfusionMatrixPlot", '{"num_thresholds": 2}'),
                   "multiclass": ("MultiClassConfusionMatrixPlot", "")}


def confusion_specs(config) -> list:
    """The confusion matrix plot of the label's task, unless the config's metrics name it already."""
    name, kwargs = CONFUSION_PLOTS.get(config.label.task, (None, ""))
    if name is None or name in config.evaluation.metrics:
        return []
    return [tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name=name, config=kwargs)])]


def confusion_matrix(output: Path, models: list[str], classes: list[str]) -> dict | None:
    """The overall slice's confusion matrix of each model: {"classes", model: counts by actual
    class (rows) and predicted class (columns)}; None for a regression label."""
    out: dict = {}
    for plots in tfma.load_plots(str(output)):
        if slice_name(plots.slice_key) != OVERALL:
            continue
        for kv in plots.plot_keys_and_values:
            model, value = kv.key.model_name or models[0], kv.value
            if value.HasField("confusion_matrix_at_thresholds"):
                (m,) = [m for m in value.confusion_matrix_at_thresholds.matrices if m.threshold == 0.5]
                out[model] = [[m.true_negatives, m.false_positives], [m.false_negatives, m.true_positives]]
            elif value.HasField("multi_class_confusion_matrix_at_thresholds"):
                (m,) = value.multi_class_confusion_matrix_at_thresholds.matrices
                counts = [[0.0] * len(classes) for _ in classes]
                for e in m.entries:
                    counts[e.actual_class_id][e.predicted_class_id] = e.num_weighted_examples
                out[model] = counts
    return {"classes": list(classes), **out} if out else None


def slicing_schema(config, schema: str) -> schema_pb2.Schema:
    """The schema's slicing features only. Both signatures read the serialized examples, so the
    features TFMA decodes serve only to slice: decoding every column cost 13% of the step's time."""
    full = text_format.Parse(Path(schema).read_text(), schema_pb2.Schema())
    wanted = {name for features in config.evaluation.slices for name in features}
    out = schema_pb2.Schema()
    out.feature.extend(f for f in full.feature if f.name in wanted)
    return out


def slice_name(slice_key) -> str:
    parts = []
    for key in slice_key.single_slice_keys:
        value = getattr(key, key.WhichOneof("kind"))
        parts.append(f"{key.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or OVERALL


def metric_name(key, classes: list[str]) -> str:
    """TFMA's metric name; a per-class one gets its class (`precision[Cash]`) or top k
    (`precision[top 2]`). The averaged one keeps the plain name, which thresholds use."""
    if not isinstance(key, tfma.metrics.MetricKey):  # the proto, as TFMA's outputs hold it
        key = tfma.metrics.MetricKey.from_proto(key)
    sub = key.sub_key
    if sub is None:
        return key.name
    if sub.class_id is not None:
        return f"{key.name}[{classes[sub.class_id] if sub.class_id < len(classes) else sub.class_id}]"
    return f"{key.name}[top {sub.top_k}]" if sub.top_k is not None else f"{key.name}[k {sub.k}]"


def slice_metrics(output: Path, models: list[str], classes: list[str] = ()) -> dict[str, dict[str, dict[str, float]]]:
    """slice -> model (or "<model> - baseline" for differences) -> metric -> value. TFMA leaves
    model_name empty when there is one model."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for per_slice in tfma.load_metrics(str(output)):
        by_model = found.setdefault(slice_name(per_slice.slice_key), {})
        for kv in per_slice.metric_keys_and_values:
            key = kv.key
            if kv.value.HasField("double_value"):
                model = (key.model_name or models[0]) + (DIFF if key.is_diff else "")
                value = kv.value.double_value.value  # NaN (e.g. precision of a class never
                # predicted) is not JSON: None, shown as n/a
                by_model.setdefault(model, {})[metric_name(key, list(classes))] = value if math.isfinite(value) else None
    return found


def threshold_text(threshold) -> str:
    """TFMA's MetricThreshold in words, e.g. 'lower bound 0.6' or 'change >= -0.01'."""
    parts = []
    value = threshold.value_threshold
    if value.HasField("lower_bound"):
        parts.append(f"lower bound {value.lower_bound.value:g}")
    if value.HasField("upper_bound"):
        parts.append(f"upper bound {value.upper_bound.value:g}")
    change = threshold.change_threshold
    sign = ">=" if change.direction == tfma.MetricDirection.HIGHER_IS_BETTER else "<="
    if change.HasField("absolute"):
        parts.append(f"change {sign} {change.absolute.value:g}")
    if change.HasField("relative"):
        parts.append(f"relative change {sign} {change.relative.value:g}")
    return ", ".join(parts)


def _failed(validation, classes: list[str]) -> set[tuple[str, bool, str]]:
    kind = lambda t: "value_threshold" if t.HasField("value_threshold") else "change_threshold"
    return {(metric_name(f.metric_key, classes), f.metric_key.is_diff, kind(f.metric_threshold))
            for per_slice in validation.metric_validations_per_slice for f in per_slice.failures}


def verdicts(cfg, validation, overall: dict[str, dict[str, float]], classes: list[str] = (),
             bases: dict[str, str] | None = None) -> list[dict]:
    """Every threshold that applied, with the value it judged and whether it passed (as TFMA's
    validation decided: a threshold passes unless TFMA lists it among the failures); a value
    threshold of a metric in `bases` (TFMA name -> words) says where its bound comes from."""
    failed = _failed(validation, list(classes))
    out = []
    for key, specs in tfma.metrics.metric_thresholds_from_metrics_specs(cfg.metrics_specs, cfg).items():
        if key.model_name != CANDIDATE and key.model_name:
            continue
        for _, generic in specs:
            kind = "value_threshold" if isinstance(generic, tfma.GenericValueThreshold) else "change_threshold"
            threshold = tfma.MetricThreshold(**{kind: generic})
            name = metric_name(key, list(classes))
            value = overall.get(CANDIDATE + (DIFF if key.is_diff else ""), {}).get(name)
            basis = (bases or {}).get(name) if kind == "value_threshold" else None
            out.append({"metric": name, "kind": "change" if key.is_diff else "value",
                        "threshold": threshold_text(threshold) + (f" ({basis})" if basis else ""), "value": value,
                        "passed": (name, key.is_diff, kind) not in failed})
    return sorted(out, key=lambda v: (v["metric"], v["kind"]))


def reasons_from(judged: list[dict], validation) -> list[str]:
    reasons = [f"{v['metric']}{' change vs serving model' if v['kind'] == 'change' else ''} = "
               f"{'n/a' if v['value'] is None else format(v['value'], '.4f')} fails {v['threshold']}"
               for v in judged if not v["passed"]]
    if validation.missing_thresholds:
        reasons.append("no threshold applies to this model, and none is blessed without one: evaluation.thresholds "
                       "sets no lower_bound or upper_bound, and change thresholds need a serving model")
    elif not validation.validation_ok and not reasons:  # e.g. a metric TFMA could not compute
        reasons.append(f"TFMA validation failed: {str(validation).strip()[:500]}")
    return reasons


def _table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])] + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}" if float(value).is_integer() else f"{value:.4f}"


def report(config, blessing: dict, per_slice: dict) -> str:
    """The run's evaluation for a person: verdict, each threshold, and the metrics of every slice."""
    lines = [f"# {config.name}: evaluation of {blessing['candidate']}", "",
             f"**{'BLESSED' if blessing['blessed'] else 'NOT BLESSED'}** against "
             + (f"serving version {blessing['baseline_version']}" if blessing["baseline_version"] else "no serving model"),
             "", *[f"- {r}" for r in blessing["reasons"]], "", "## Thresholds", ""]
    lines += _table([["metric", "threshold", "value", "verdict"]] + [
        [v["metric"], v["threshold"], _number(v["value"]), "pass" if v["passed"] else "FAIL"] for v in blessing["thresholds"]])
    models = [m for m in per_slice.get(OVERALL, {}) if m]
    metrics = sorted({name for by_model in per_slice.values() for values in by_model.values() for name in values})
    lines += ["", "## Metrics by slice", ""]
    header = ["slice", "model", *metrics]
    rows = [[name, model, *(_number(per_slice[name].get(model, {}).get(m)) for m in metrics)]
            for name in sorted(per_slice, key=lambda n: (n != OVERALL, n)) for model in models
            if model in per_slice[name]]
    return "\n".join(lines + _table([header] + rows)) + "\n"


def analyze(config, shared_models, cfg, files: list[str], out: Path, schema, num_rows: int, temp_dir: str) -> None:
    """TFMA's evaluation of the examples in `files`, as tfma.run_model_analysis runs it but read in
    batches of the config's size: TFMA's extractors pay a fixed cost per batch."""
    source = examples_source(schema=schema, raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
    with beam_pipeline(config, num_rows, temp_dir) as p:
        _ = (read_examples(p, files, "eval", batch_size(config), source)
             | "Evaluate" >> tfma.ExtractEvaluateAndWriteResults(
                 eval_shared_model=shared_models, eval_config=cfg, output_path=str(out),
                 display_only_data_location=f"{files[0]} and {len(files) - 1} more files",
                 tensor_adapter_config=source.TensorAdapterConfig(), schema=schema))


def run(config, output_dir: Path, model: str, examples: str, schema: str, skip_change_threshold: bool = False) -> dict:
    model_dir = config.serving.model_dir()
    baseline_version = serving.latest_version(model_dir)
    # a forced retrain (run param) is judged like a first model: value thresholds only
    with_baseline = baseline_version is not None and not skip_change_threshold
    classes = json.loads((Path(model) / LABEL_INFO).read_text())["classes"]
    trained_on = artifacts.read_result(Path(examples))
    evaluated = spans.recent(trained_on["spans"], "eval", config.evaluation.recent_rows)
    eval_rows = sum(e["rows"]["eval"] for e in evaluated)
    if not eval_rows:
        raise ValueError(f"no eval rows in the training spans of {examples}")
    files = spans.files(evaluated, "eval")
    bounds = trivial_bounds(config, trained_on["transform_graph"], files, classes)
    cfg = eval_config(config, with_baseline, classes, bounds)
    paths = {CANDIDATE: model}
    if with_baseline:
        paths[BASELINE] = str(model_dir / str(baseline_version))
    shared_models = [tfma.default_eval_shared_model(eval_saved_model_path=path, model_name=name, eval_config=cfg)
                     for name, path in paths.items()]
    with artifacts.atomic_dir(output_dir) as tmp, tempfile.TemporaryDirectory() as beam_tmp:
        out = tmp / TFMA_OUTPUT
        analyze(config, shared_models, cfg, files, out, slicing_schema(config, schema), eval_rows, beam_tmp)
        validation = tfma.load_validation_result(str(out))
        per_slice = slice_metrics(out, list(paths), classes)
        bases = {metric_instance(tfma.MetricConfig(class_name=name)).name: basis for name, (_, basis) in bounds.items()}
        judged = verdicts(cfg, validation, per_slice[OVERALL], classes, bases)
        reasons = reasons_from(judged, validation)
        if not with_baseline:
            reasons.append("change thresholds skipped (run param skip_change_threshold): judged on value "
                           "thresholds only" if skip_change_threshold else
                           "first model: judged on value thresholds only (no model is serving)")
        unjudged = [name for name in config.evaluation.metrics if name not in config.evaluation.thresholds]
        if unjudged:
            reasons.append(f"shown, not judged (no threshold in evaluation.thresholds): {', '.join(unjudged)}")
        blessing = {"blessed": bool(validation.validation_ok), "reasons": reasons, "thresholds": judged,
                    "candidate": model, "baseline_version": baseline_version,
                    "evaluated": {"spans": len(evaluated), "first": evaluated[0]["span"], "last": evaluated[-1]["span"],
                                  "rows": eval_rows},
                    "metrics": {name: per_slice[OVERALL].get(name, {}) for name in paths}}
        artifacts.write_json(tmp / BLESSING, blessing)
        artifacts.write_json(tmp / SLICES, per_slice)
        (tmp / REPORT).write_text(report(config, blessing, per_slice))
        result = {**blessing, "confusion_matrix": confusion_matrix(out, list(paths), classes),
                  "blessing": str(output_dir / BLESSING), "eval_result": str(output_dir / TFMA_OUTPUT),
                  "slices": str(output_dir / SLICES), "report": str(output_dir / REPORT)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
