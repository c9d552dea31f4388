"""The label as the preprocessing_fn computes it, checked after transform on both splits against
the previous span (ML env): a single class, a class share that moved, or a regression target whose
distribution shifted is a blocking anomaly before training (severity group `label`).

Classes or regression is told by the config's `label.task` (binary and multiclass labels are
classes, a regression label a target).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from tfx_bsl.coders import example_coder

from pipeline_lib import drift, tfrecord

SINGLE_CLASS, SHIFT = "LABEL_SINGLE_CLASS", "LABEL_SHIFT"
BATCH = 1024


def label_values(files: list[Path], key: str, schema) -> np.ndarray:
    """The label's values in transformed tf.Example files (decoded with only its feature)."""
    only = type(schema)()
    only.feature.add().CopyFrom(next(f for f in schema.feature if f.name == key))
    decoder = example_coder.ExamplesToRecordBatchDecoder(only.SerializeToString())
    parts = []
    records = itertools.chain.from_iterable(tfrecord.records(f) for f in files)
    while batch := list(itertools.islice(records, BATCH)):
        parts.append(decoder.DecodeBatch(batch).column(0).flatten().to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.array([])


def summary(values: np.ndarray, task: str) -> dict:
    """What the next span is compared with: class counts, or quantile points for a regression target."""
    if task != "regression":
        classes, counts = np.unique(values.astype(str) if values.dtype.kind in "SO" else values, return_counts=True)
        return {"kind": "classes", "counts": {str(c): int(n) for c, n in zip(classes, counts)}}
    finite = values[np.isfinite(values)].astype(float)
    quantiles = np.quantile(finite, np.linspace(0, 1, drift.QUANTILES + 1)) if finite.size else []
    return {"kind": "regression", "rows": int(finite.size), "quantiles": [float(q) for q in quantiles],
            "std": float(finite.std()) if finite.size else 0.0}


def findings(config, current: dict[str, dict], previous: dict[str, dict] | None) -> list[dict]:
    """`current`/`previous`: the summary per split (previous: the newest earlier span's)."""
    key, validation = config.label.key, config.validation
    out = []

    def finding(kind, description, examples, splits):
        out.append({"feature": key, "kind": kind, "description": description, "examples": examples,
                    "splits": splits, "statistics": None,
                    "severity": validation.severity_of(key, kind)})

    single = [s for s, sm in current.items() if sm["kind"] == "classes" and len(sm["counts"]) == 1]
    if single:
        (value,) = current[single[0]]["counts"]
        finding(SINGLE_CLASS, f"the label {key} has a single class ({value!r}) in {', '.join(single)}: "
                              "a model cannot learn from it", [repr(value)], single)
    for split, sm in current.items():
        before = (previous or {}).get(split)
        if not before or before["kind"] != sm["kind"] or split in single:
            continue
        if sm["kind"] == "classes":
            change = drift.share_change(before["counts"], sm["counts"])
        elif before["quantiles"] and sm["quantiles"]:
            change = drift.quantile_change(np.array(before["quantiles"]), before["rows"],
                                           np.array(sm["quantiles"]), sm["rows"], before["std"])
        else:
            continue
        found = drift.finding(SHIFT, key, "the previous span", change, validation.label_shift, validation.significance)
        if found:
            finding(SHIFT, f"{split} split: {found['description']}", found["examples"], [split])
            out[-1]["statistic"] = found["statistic"]
    return out
