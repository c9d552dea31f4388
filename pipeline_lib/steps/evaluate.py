"""Evaluate: TFMA on the eval split, the candidate against the model now serving (the baseline).
Value thresholds always apply; change thresholds only once a baseline exists. The blessing says
which thresholds failed and why."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow_model_analysis as tfma

from pipeline_lib import artifacts, serving
from pipeline_lib.beam import pipeline_options
from pipeline_lib.serving import SERVING_SIGNATURE, TRANSFORM_SIGNATURE

CANDIDATE, BASELINE = "candidate", "baseline"
BLESSING = "blessing.json"
TFMA_OUTPUT = "tfma"
_DIRECTION = {"higher_is_better": tfma.MetricDirection.HIGHER_IS_BETTER,
              "lower_is_better": tfma.MetricDirection.LOWER_IS_BETTER}


def metric_threshold(threshold, with_change: bool):
    """The config's threshold as TFMA's; None when nothing applies (a change-only one, no baseline)."""
    out = tfma.MetricThreshold()
    if threshold.lower_bound is not None:
        out.value_threshold.lower_bound.value = threshold.lower_bound
    if threshold.upper_bound is not None:
        out.value_threshold.upper_bound.value = threshold.upper_bound
    if with_change and threshold.change_direction:
        out.change_threshold.direction = _DIRECTION[threshold.change_direction]
        out.change_threshold.absolute.value = threshold.change_absolute
    return out if out.ByteSize() else None


def eval_config(config, with_baseline: bool):
    evaluation = config.evaluation
    metrics = []
    for name in evaluation.metrics:
        metric = tfma.MetricConfig(class_name=name)
        threshold = evaluation.thresholds.get(name)
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
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def overall_metrics(output: Path, models: list[str]) -> dict[str, dict[str, float]]:
    """Each model's metrics on the overall slice (TFMA leaves model_name empty for one model)."""
    found = {name: {} for name in models}
    for per_slice in tfma.load_metrics(str(output)):
        if per_slice.slice_key.single_slice_keys:
            continue
        for kv in per_slice.metric_keys_and_values:
            key = kv.key
            if kv.value.HasField("double_value") and not key.is_diff and not key.HasField("sub_key"):
                found[key.model_name or models[0]][key.name] = kv.value.double_value.value
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
    if change.HasField("absolute"):
        sign = ">=" if change.direction == tfma.MetricDirection.HIGHER_IS_BETTER else "<="
        parts.append(f"change {sign} {change.absolute.value:g}")
    return ", ".join(parts)


def reasons_from(validation) -> list[str]:
    reasons = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = failure.metric_key
            what = f"{key.name} change vs serving model" if key.is_diff else key.name
            reasons.append(f"{what} = {failure.metric_value.double_value.value:.4f} fails "
                           f"{threshold_text(failure.metric_threshold)}")
    return reasons


def run(config, output_dir: Path, model: str, examples: str, skip_change_threshold: bool = False) -> dict:
    model_dir = config.serving.model_dir()
    baseline_version = serving.latest_version(model_dir)
    # a forced retrain (run param) is judged like a first model: value thresholds only
    with_baseline = baseline_version is not None and not skip_change_threshold
    cfg = eval_config(config, with_baseline)
    paths = {CANDIDATE: model}
    if with_baseline:
        paths[BASELINE] = str(model_dir / str(baseline_version))
    shared_models = [tfma.default_eval_shared_model(eval_saved_model_path=path, model_name=name, eval_config=cfg)
                     for name, path in paths.items()]
    eval_rows = artifacts.read_result(Path(examples))["rows"]["eval"]
    with artifacts.atomic_dir(output_dir) as tmp, tempfile.TemporaryDirectory() as beam_tmp:
        out = tmp / TFMA_OUTPUT
        tfma.run_model_analysis(eval_shared_model=shared_models, eval_config=cfg,
                                data_location=str(Path(examples) / "eval" / "*"), output_path=str(out),
                                pipeline_options=pipeline_options(config, eval_rows, beam_tmp))
        validation = tfma.load_validation_result(str(out))
        reasons = reasons_from(validation)
        if not with_baseline:
            reasons.append("change thresholds skipped (run param skip_change_threshold): judged on value "
                           "thresholds only" if skip_change_threshold else
                           "first model: judged on value thresholds only (no model is serving)")
        blessing = {"blessed": bool(validation.validation_ok), "reasons": reasons,
                    "candidate": model, "baseline_version": baseline_version,
                    "metrics": overall_metrics(out, list(paths))}
        artifacts.write_json(tmp / BLESSING, blessing)
        result = {**blessing, "blessing": str(output_dir / BLESSING), "eval_result": str(output_dir / TFMA_OUTPUT)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
