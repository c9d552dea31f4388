"""What the Data page shows, written at validate time (ML env) next to the statistics, because the
Airflow side never imports TensorFlow and cannot read TFDV's protos:

- `statistics.html`: TFDV's own Facets Overview of the splits (train against eval);
- `statistics.json`: per split, per feature, the figures of that overview (count, missing, mean,
  std, min, median, max, zeros for numbers; unique and top values for strings);
- `drift.json`: per checked feature, the drift and skew statistics validate judged (value,
  threshold, p-value), whether or not they crossed the threshold.
"""

from __future__ import annotations

from pathlib import Path

from tensorflow_data_validation.utils import display_util

from pipeline_lib import artifacts
from pipeline_lib.pages import DRIFT_JSON, STATISTICS_HTML, STATISTICS_JSON

TOP_VALUES = 5


def feature_summary(feature) -> dict:
    """One feature of a DatasetFeatureStatistics as plain figures."""
    out = {"feature": ".".join(feature.path.step) or feature.name, "type": feature.Type.Name(feature.type)}
    if feature.HasField("num_stats"):
        num = feature.num_stats
        common = num.common_stats
        out.update(mean=num.mean, std_dev=num.std_dev, min=num.min, median=num.median, max=num.max,
                   zeros=num.num_zeros)
    else:
        strings = feature.string_stats
        common = strings.common_stats
        out.update(unique=strings.unique, top_values=[[v.value, v.frequency] for v in strings.top_values[:TOP_VALUES]])
    total = common.num_missing + common.num_non_missing
    out.update(count=common.num_non_missing, missing=common.num_missing / total if total else 0.0)
    return out


def write(output_dir: Path, stats: dict, measured: list[dict]) -> None:
    """The three views of one validate output; `stats` maps split -> DatasetFeatureStatisticsList,
    `measured` the drift and skew measurements validate judged (validate.measure_changes)."""
    artifacts.write_json(output_dir / STATISTICS_JSON, {
        split: {"examples": s.datasets[0].num_examples, "features": [feature_summary(f) for f in s.datasets[0].features]}
        for split, s in stats.items()})
    drift = {}
    for m in measured:
        drift.setdefault(m["feature"], []).append({
            "kind": m["kind"].lower(), "type": m["change"]["name"], "value": m["change"]["statistic"],
            "threshold": m["threshold"], "p_value": m["change"]["p_value"]})
    artifacts.write_json(output_dir / DRIFT_JSON, drift)
    if stats:
        names = list(stats)[:2]
        (output_dir / STATISTICS_HTML).write_text(display_util.get_statistics_html(
            stats[names[0]], stats[names[1]] if len(names) > 1 else None,
            lhs_name=names[0], rhs_name=names[1] if len(names) > 1 else "None"))
