"""What the Models and Data pages show, read from the artifact store and the model repository:
the steps' JSON results, `slices.json`, the model records and the views validate writes
(statistics_views). Stdlib only, so the Airflow side reads it without TensorFlow. Generic over
metric names and task kinds: whatever metrics the evaluation produced are shown."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pipeline_lib import artifacts, retention, serving

CANDIDATE, BASELINE, DIFF = "candidate", "baseline", "candidate - baseline"  # as evaluate writes them
OVERALL = "Overall"
COUNT_METRIC = "example_count"  # a count, not a quality: left out of the charts
STATISTICS_HTML, STATISTICS_JSON, DRIFT_JSON = "statistics.html", "statistics.json", "drift.json"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def spans(pipeline: str) -> list[str]:
    """Every span (run date) with artifacts, oldest first."""
    runs = artifacts.pipeline_root(pipeline) / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and _is_date(p.name)) if runs.is_dir() else []


def _is_date(name: str) -> bool:
    try:
        return _date(name).isoformat() == name
    except ValueError:
        return False


def step_result(pipeline: str, span: str, step: str) -> dict | None:
    return _json(artifacts.run_dir(pipeline, _date(span)) / step / artifacts.RESULT_FILENAME)


def _date(span: str) -> dt.date:
    return dt.date.fromisoformat(span)


def served_versions(model_dir: Path) -> list[dict]:
    """Every version in the model repository, newest first, with its record; the highest is live;
    then the records of the versions retention removed (`retired`)."""
    found = serving.versions(model_dir)
    return ([{**serving.record(model_dir, v), "version": v, "live": v == found[-1]} for v in reversed(found)]
            + [{**r, "retired": True} for r in retention.retired_records(model_dir)])


def evaluations(pipeline: str) -> list[dict]:
    """Each span's evaluation verdict (newest first): blessed, reasons, the thresholds and which
    failed, overall metrics of candidate and baseline, and what push did with it."""
    out = []
    for span in reversed(spans(pipeline)):
        result = step_result(pipeline, span, "evaluate")
        if result:
            push = step_result(pipeline, span, "push")
            out.append({"span": span, **result, "failed": [t for t in result["thresholds"] if not t["passed"]],
                        "push": push})
    return out


def metric_history(evaluated: list[dict]) -> dict[str, dict[str, list]]:
    """metric -> {"spans", "candidate", "baseline"} over the spans (oldest first); None where a
    model has no value (no baseline yet)."""
    ordered = list(reversed(evaluated))
    names = sorted({m for e in ordered for values in e["metrics"].values() for m in values} - {COUNT_METRIC})
    return {m: {"spans": [e["span"] for e in ordered],
                **{model: [e["metrics"].get(model, {}).get(m) for e in ordered] for model in (CANDIDATE, BASELINE)}}
            for m in names}


def slice_table(per_slice: dict) -> tuple[list[str], list[dict]]:
    """(metric names, rows) of a slices.json: per slice, per metric, candidate, baseline and their
    difference; Overall first."""
    metrics = sorted({m for by_model in per_slice.values() for values in by_model.values() for m in values})
    rows = []
    for name in sorted(per_slice, key=lambda n: (n != OVERALL, n)):
        by_model = per_slice[name]
        rows.append({"slice": name, "values": {m: {k: by_model.get(model, {}).get(m) for k, model in
                                                   (("candidate", CANDIDATE), ("baseline", BASELINE), ("diff", DIFF))}
                                               for m in metrics}})
    return metrics, rows


def slices_of(evaluated: list[dict], span: str | None = None) -> tuple[str | None, dict]:
    """The slices.json of span's evaluation, or of the newest (span, slice -> model -> metric -> value)."""
    for e in evaluated:
        found = _json(Path(e["slices"])) if e.get("slices") and span in (None, e["span"]) else None
        if found is not None:
            return e["span"], found
    return None, {}


def confusion_of(evaluated: list[dict], span: str | None) -> dict | None:
    """The confusion matrix of span's evaluation (a classification label's; evaluate writes it)."""
    return next((e.get("confusion_matrix") for e in evaluated if e["span"] == span), None)


def data_views(pipeline: str, span: str) -> dict:
    """One span's validate output: statistics per split, the anomalies found, whether TFDV's HTML exists."""
    validate_dir = artifacts.run_dir(pipeline, _date(span)) / "validate"
    result = _json(validate_dir / artifacts.RESULT_FILENAME) or {}
    return {"statistics": _json(validate_dir / STATISTICS_JSON) or {}, "anomalies": result.get("anomalies", []),
            "previous_statistics": result.get("previous_statistics"), "validated": bool(result),
            "html": (validate_dir / STATISTICS_HTML).is_file()}


def statistics_html(pipeline: str, span: str) -> Path:
    return artifacts.run_dir(pipeline, _date(span)) / "validate" / STATISTICS_HTML


def drift_history(pipeline: str) -> dict[str, dict[str, list]]:
    """"feature (kind)" -> {"spans", "value", "threshold"}: TFDV's measurements of each checked
    feature against the span before, over all spans (oldest first)."""
    out: dict[str, dict[str, list]] = {}
    for span in spans(pipeline):
        drift = _json(artifacts.run_dir(pipeline, _date(span)) / "validate" / DRIFT_JSON) or {}
        for feature, measurements in drift.items():
            for m in measurements:
                series = out.setdefault(f"{feature} ({m['kind']}, {m['type']})",
                                        {"spans": [], "value": [], "threshold": []})
                series["spans"].append(span)
                series["value"].append(m.get("value", 0.0))
                series["threshold"].append(m.get("threshold"))
    return dict(sorted(out.items()))


def drift_checked(validation) -> bool:
    """Whether validate measures any feature's drift: it does only where a drift threshold applies
    (its type's, `validation.numbers` / `categories` / `strings`, or the feature's own)."""
    return any(levels.drift for levels in (validation.numbers, validation.categories, validation.strings,
                                           *validation.features.values()))
