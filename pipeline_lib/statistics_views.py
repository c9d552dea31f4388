"""What the Data page shows, written at validate time (ML env) next to the run's result, because the
Airflow side never imports TensorFlow and cannot read TFDV's protos:

- `statistics.json`: per feature, the figures (count, missing, mean, std, min, median, max, zeros
  for numbers; unique and top values for strings) of the window and of the new span, merged from
  the spans' kept statistics rather than computed from the rows again: counts, missing, mean,
  std, min, max and zeros are exact; the median is the mixture of the spans' quantiles
  (approximate); unique and top values are exact while each span holds fewer distinct values than
  TFDV's rank histogram keeps (1,000), else a lower bound;
- `statistics.html`: TFDV's own Facets Overview of the new span against the span before it;
- `drift.json`: per compared feature, the drift and skew statistics validate judged for the new
  span (value, threshold, block level, p-value), whether or not they crossed the threshold.
"""

from __future__ import annotations

import math
from pathlib import Path

from tensorflow_data_validation.utils import display_util

from pipeline_lib import artifacts, drift
from pipeline_lib.pages import DRIFT_JSON, STATISTICS_HTML, STATISTICS_JSON

TOP_VALUES = 5


def _name(feature) -> str:
    return ".".join(feature.path.step) or feature.name


def merged_feature(parts: list) -> dict:
    """One feature's figures over the FeatureNameStatistics of several spans."""
    first = parts[0]
    out = {"feature": _name(first), "type": first.Type.Name(first.type)}
    if first.HasField("num_stats"):
        nums = [p.num_stats for p in parts if p.HasField("num_stats")]
        present = sum(n.common_stats.num_non_missing for n in nums)
        missing = sum(n.common_stats.num_missing for n in nums)
        filled = [n for n in nums if n.common_stats.num_non_missing]
        mean = sum(n.mean * n.common_stats.num_non_missing for n in filled) / present if present else 0.0
        square = sum((n.std_dev ** 2 + n.mean ** 2) * n.common_stats.num_non_missing for n in filled) / present if present else 0.0
        quantiles = drift.merge([drift.summary(p) for p in parts])
        out.update(mean=mean, std_dev=math.sqrt(max(square - mean ** 2, 0.0)),
                   min=min((n.min for n in filled), default=0.0), max=max((n.max for n in filled), default=0.0),
                   median=quantiles["quantiles"][len(quantiles["quantiles"]) // 2] if quantiles else 0.0,
                   zeros=sum(n.num_zeros for n in nums))
    else:
        strings = [p.string_stats for p in parts if p.HasField("string_stats")]
        present = sum(s.common_stats.num_non_missing for s in strings)
        missing = sum(s.common_stats.num_missing for s in strings)
        counts = drift.merge([drift.summary(p) for p in parts])
        values = {k: v for k, v in (counts or {"counts": {}})["counts"].items() if k != "(other values)"}
        top = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
        out.update(unique=len(values) or max((s.unique for s in strings), default=0),
                   top_values=[[value, count] for value, count in top])
    total = present + missing
    out.update(count=int(present), missing=missing / total if total else 0.0)
    return out


def summary(stats_list: list) -> dict:
    """The figures of the spans' statistics together."""
    datasets = [s.datasets[0] for s in stats_list]
    by_feature: dict[str, list] = {}
    for dataset in datasets:
        for feature in dataset.features:
            by_feature.setdefault(_name(feature), []).append(feature)
    return {"examples": sum(d.num_examples for d in datasets), "spans": len(datasets),
            "features": [merged_feature(parts) for _, parts in sorted(by_feature.items())]}


def drift_view(measured: list[dict]) -> dict:
    """feature -> the drift and skew statistics judged (validate.measure_changes) as plain figures."""
    out: dict[str, list] = {}
    for m in measured:
        out.setdefault(m["feature"], []).append({
            "kind": m["kind"].lower(), "type": m["change"]["name"], "value": m["change"]["statistic"],
            "threshold": m["threshold"], "block": m["block"], "p_value": m["change"]["p_value"],
            "against": m["against"]})
    return out


def write(output_dir: Path, per_span: dict, newest: str, previous, measured: list[dict]) -> None:
    """The three views of one validate output: `per_span` maps each span of the window that has
    statistics to its DatasetFeatureStatisticsList, `newest` names the new span, `previous` is the
    statistics of the span before it, `measured` the drift and skew measurements validate judged."""
    views = {"window": summary(list(per_span.values()))}
    if newest in per_span:
        views["new span"] = summary([per_span[newest]])
    artifacts.write_json(output_dir / STATISTICS_JSON, views)
    artifacts.write_json(output_dir / DRIFT_JSON, drift_view(measured))
    if newest in per_span:
        (output_dir / STATISTICS_HTML).write_text(display_util.get_statistics_html(
            per_span[newest], previous, lhs_name=f"span {newest}", rhs_name="the span before" if previous else "None"))
