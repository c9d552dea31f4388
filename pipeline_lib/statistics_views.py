"""What the Data page shows, written at validate time (ML env) next to the statistics, because the
Airflow side never imports TensorFlow and cannot read TFDV's protos:

- `statistics.html`: TFDV's own Facets Overview of the splits (train against eval);
- `statistics.json`: per split, per feature, the figures of that overview (count, missing, mean,
  std, min, median, max, zeros for numbers; unique and top values for strings);
- `drift.json`: per checked feature, TFDV's drift and skew measurements (value and threshold),
  whether or not they crossed the threshold.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_data_validation as tfdv
from google.protobuf import json_format
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


def drift_measurements(anomalies) -> dict[str, list[dict]]:
    """feature -> TFDV's drift/skew measurements ({type, value, threshold}) from an Anomalies proto."""
    found = json_format.MessageToDict(anomalies).get("driftSkewInfo", [])
    return {".".join(info["path"]["step"]): [{"kind": kind, **m} for kind in ("drift", "skew")
                                             for m in info.get(f"{kind}Measurements", [])]
            for info in found}


def write(output_dir: Path, stats: dict) -> None:
    """The three views of one validate output; `stats` maps split -> DatasetFeatureStatisticsList,
    the drift comes from the train split's anomalies file that validate wrote there."""
    train_anomalies = output_dir / "train.anomalies.pbtxt"
    artifacts.write_json(output_dir / STATISTICS_JSON, {
        split: {"examples": s.datasets[0].num_examples, "features": [feature_summary(f) for f in s.datasets[0].features]}
        for split, s in stats.items()})
    artifacts.write_json(output_dir / DRIFT_JSON, drift_measurements(tfdv.load_anomalies_text(str(train_anomalies)))
                         if train_anomalies.exists() else {})
    if stats:
        names = list(stats)[:2]
        (output_dir / STATISTICS_HTML).write_text(display_util.get_statistics_html(
            stats[names[0]], stats[names[1]] if len(names) > 1 else None,
            lhs_name=names[0], rhs_name=names[1] if len(names) > 1 else "None"))
