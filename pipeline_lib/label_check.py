"""The label as the preprocessing_fn computes it, per span, checked after transform against the spans
before it (ML env): a single class that the spans before make unlikely, a class share that moved,
or a regression target whose distribution shifted is a blocking anomaly before training (severity
group `label`). Each span's label summary is kept in its folder (`label.json`), computed once.

Classes or regression is told by the config's `label.task` (binary and multiclass labels are
classes, named as the model's classes; a regression label a target).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline_lib import drift

SINGLE_CLASS, SHIFT = "LABEL_SINGLE_CLASS", "LABEL_SHIFT"


def summary(values: np.ndarray, task: str, classes: list[str]) -> dict:
    """What later spans are compared with, as drift summarizes a feature: class counts by class
    name, or a regression target's quantile points, count, mean and std."""
    if task != "regression":
        ids, counts = np.unique(values.astype(np.int64), return_counts=True)
        return {"kind": "strings", "counts": {classes[i] if 0 <= i < len(classes) else str(i): int(n)
                                              for i, n in zip(ids, counts)}}
    finite = values[np.isfinite(values)].astype(float)
    if not finite.size:
        return {"kind": "numbers", "quantiles": [], "count": 0, "mean": 0.0, "std": 0.0}
    return {"kind": "numbers", "quantiles": [float(q) for q in np.quantile(finite, np.linspace(0, 1, drift.QUANTILES + 1))],
            "count": int(finite.size), "mean": float(finite.mean()), "std": float(finite.std())}


def findings(config, span: str, current: dict, before: list[dict]) -> list[dict]:
    """The label findings of one span against the summaries of the spans before it."""
    key, validation = config.label.key, config.validation
    reference = drift.merge([b for b in before if b.get("count", 1)])
    out = []

    def finding(kind, description, examples, statistic=None):
        out.append({"feature": key, "kind": kind, "description": f"span {span}: {description}", "examples": examples,
                    "spans": [span], "statistics": None, "severity": validation.severity_of(key, kind),
                    **({"statistic": statistic} if statistic is not None else {})})

    if current["kind"] == "strings" and len(current["counts"]) == 1:
        (value, rows), = current["counts"].items()
        chance = _all_one_class(reference, rows)
        if chance < validation.significance:
            finding(SINGLE_CLASS, f"the label {key} has a single class ({value!r}) in all {rows:,} rows, which the spans "
                                  f"before make unlikely (p {chance:.1e}): a model cannot learn from it", [repr(value)])
            return out
    change = drift.change(reference, current) if reference and current.get("count", 1) else None
    found = drift.finding(SHIFT, key, f"the {len(before)} spans before it", change, validation.label_shift,
                          validation.significance)
    if found:
        finding(SHIFT, found["description"], found["examples"], found["statistic"])
    return out


def _all_one_class(reference: dict | None, rows: int) -> float:
    """The chance that `rows` labels drawn with the reference's class shares all fall in one class
    (1.0 without a reference: a first span cannot tell)."""
    if not reference or reference["kind"] != "strings":
        return 1.0
    counts = np.array(list(reference["counts"].values()), dtype=float)
    shares = counts / counts.sum()
    return float(min(1.0, sum(math.exp(rows * math.log(s)) for s in shares if s > 0)))
