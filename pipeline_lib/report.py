"""`python -m pipeline_lib.report --pipeline NAME --date YYYY-MM-DD`: what one run did, read from
the steps' result.json files (and failed steps' `.<step>.error`) in the artifact store (stdlib
only: runs in either environment). It ends with the outcome in words, PUSHED or NOT PUSHED and
why, and exits 1 when no model was pushed because something failed or the run stopped short (a
push refused by the quality gate is a normal outcome: exit 0)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from pipeline_lib import artifacts, serving

SENSOR = "wait_for_data"  # pipeline_ops.sensors.TASK_ID: its no-data filer files under it (Airflow is not imported here)
FILING = {"validate": "validate", "transform": "the label check"}  # the steps whose findings are filed
SHOW = " (python -m pipeline_lib.anomalies show ID)"


def results(pipeline: str, date: dt.date) -> tuple[dict[str, dict | None], dict[str, str]]:
    """Each step's result (None: it did not finish) and the error of each step that failed."""
    results, errors = {}, {}
    for step in artifacts.STEPS:
        folder = artifacts.step_dir(pipeline, date, step)
        error = folder.with_name(f".{step}.error")
        if error.exists():
            errors[step] = first_line(error.read_text())
        path = folder / artifacts.RESULT_FILENAME
        results[step] = json.loads(path.read_text()) if path.exists() and step not in errors else None
    return results, errors


def filed(pipeline: str, date: dt.date) -> dict[str, list[dict]]:
    """Per task, the tracker records its findings were filed as (where file_anomalies or the data
    sensor's no-data filer ran)."""
    out = {}
    for task in (SENSOR, *artifacts.STEPS):
        path = artifacts.filed_anomalies_path(pipeline, date, task)
        if path.exists():
            out[task] = json.loads(path.read_text())
    return out


def first_line(error: str) -> str:
    """An error's first line; with its last line where the first only announces it (TensorFlow's
    "ValueError: in user code:")."""
    lines = [line.strip() for line in error.splitlines() if line.strip()] or ["(no message)"]
    return f"{lines[0]} ... {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def outcome(results: dict[str, dict | None], errors: dict[str, str], filed: dict[str, list[dict]]) -> tuple[str, bool]:
    """(the run's outcome in words, whether it is a failure). `filed`: per task, the tracker records
    it filed."""
    push = results["push"]
    if push and push["pushed"]:
        return f"PUSHED version {push['version']}", False
    if push:
        return f"NOT PUSHED (the quality gate refused it; {serving.still_serving(push['version'])}): {push['reason']}", False
    if errors:
        return "NOT PUSHED: " + "; ".join(f"{step} failed: {error}" for step, error in errors.items()), True
    for step, gated in (("validate", "transform"), ("transform", "train")):  # the anomaly gates
        blocking = [a for a in (results[step] or {}).get("anomalies", []) if a["severity"] == "blocking"]
        if blocking and results[gated] is None:
            ids = {(r["feature"], r["kind"]): r["id"] for r in filed.get(step, [])}
            return ("NOT PUSHED: blocked by anomalies " + ", ".join(
                (f"#{ids[a['feature'], a['kind']]} " if (a["feature"], a["kind"]) in ids else "")
                + f"{a['feature']} ({a['kind']})" for a in blocking) + SHOW), True
    ran = [step for step, result in results.items() if result]
    if not ran and filed.get(SENSOR):  # the span's data never arrived
        return "NOT PUSHED: " + "; ".join(f"anomaly #{r['id']} {r['feature']} ({r['kind']}): {r['description']}"
                                          for r in filed[SENSOR]) + SHOW, True
    return f"NOT PUSHED: the run stopped after {ran[-1] if ran else 'no step'} (see its Airflow log)", True


def _metrics(values: dict) -> str:
    return ", ".join(f"{k} n/a" if v is None else f"{k} {v:.4f}" if isinstance(v, float) and not v.is_integer()
                     else f"{k} {v:.0f}" for k, v in sorted(values.items()))


def warm_start(warm: dict) -> str:
    """Train's warm start in words: from which version, how many layers warm, remapped by token
    (vocabularies changed), left fresh (results from before the remapping say only the version)."""
    if not warm["from_version"]:
        return "cold start"
    if "fresh" not in warm:
        return f"warm from v{warm['from_version']}"
    fresh = warm["fresh"]
    return (f"warm from v{warm['from_version']} ({len(warm['layers'])} layers, {len(warm['remapped'])} remapped by token, "
            f"{len(fresh)} fresh{': ' + ', '.join(fresh) if fresh else ''})")


def summary(pipeline: str, date: dt.date) -> tuple[str, bool]:
    """The report's text and whether the run failed."""
    r, errors = results(pipeline, date)
    lines = [f"pipeline {pipeline}, span {date}  (artifacts: {artifacts.run_dir(pipeline, date)})"]
    if r["ingest"]:
        i = r["ingest"]
        w, rows, window = i["window"], i["rows"], i["spans"]
        lines.append(f"  window     {len(window)} spans, [{w['start'][:10]}, {w['end'][:10]}): {sum(rows.values()):,} rows ("
                     + ", ".join(f"{split} {n:,}" for split, n in rows.items()) + f"); new span {i['span']}: "
                     + f"{sum(window[-1]['rows'].values()):,} rows")
        lines.append(f"  ingested   {len(i['ingested'])} span{'s' if len(i['ingested']) != 1 else ''}"
                     + (f" ({i['ingested'][0]} .. {i['ingested'][-1]})" if len(i["ingested"]) > 1 else
                        f" ({i['ingested'][0]})" if i["ingested"] else " (the window's spans were kept)"))
    found = {step: r[step]["anomalies"] for step in FILING if r[step]}
    if found:
        anomalies = [a for step_found in found.values() for a in step_found]
        lines.append(f"  anomalies  {len(anomalies)}" + (" (" + ", ".join(
            f"{len(step_found)} from {FILING[step]}" for step, step_found in found.items()) + ")" if anomalies else " (none)"))
        lines += [f"    - [{a['severity']}] {a['feature']}: {a['kind']}: {a['description'].strip()}"
                  for a in anomalies[:5]]
    if r["transform"]:
        t = r["transform"]
        a = t["analysis"]
        lines.append(f"  analyzed   {len(t['spans'])} spans: {a['read_spans']} read ({a['read_rows']:,} rows), "
                     f"{a['cached_spans']} from the analyzer cache"
                     + (f"; left out, blocked: {', '.join(t['excluded'])}" if t["excluded"] else ""))
    if r["train"]:
        t = r["train"]
        lines.append(f"  trained    {t['steps']} steps in {len(t['epochs_run'])} epochs"
                     f"{' (stopped early)' if t['stopped_early'] else ''}, "
                     f"{warm_start(t['warm_start'])}, {t['distribution']['strategy']}; "
                     f"eval {_metrics(t['eval_metrics'])}")
    if r["evaluate"]:
        e = r["evaluate"]
        for model, values in sorted(e["metrics"].items(), key=lambda kv: kv[0] != "candidate"):
            name = model if model == "candidate" else f"baseline (serving v{e['baseline_version']})"
            lines.append(f"  evaluated  {name}: {_metrics(values)}")
        lines.append(f"  blessed    {'yes' if e['blessed'] else 'NO'}" + "".join(f"\n    - {why}" for why in e["reasons"]))
        lines.append(f"  report     {e['report']}")
    if r["infra_validate"]:
        i = r["infra_validate"]
        lines.append("  infra      " + ("valid; latency " + ", ".join(f"{k} p50 {v['p50']:.2f} ms p99 {v['p99']:.2f} ms"
                                                 for k, v in i["latency_ms"].items())
                                      if i["valid"] else "FAILED: " + "; ".join(i["reasons"])))
    if r["push"]:
        p = r["push"]
        lines.append(f"  pushed     version {p['version']} -> {p['path']}" if p["pushed"]
                     else f"  pushed     no, {serving.still_serving(p['version'])}: {p['reason']}")
    lines += [f"  {step:<10} FAILED: {errors[step]}" if step in errors else f"  {step:<10} did not run"
              for step, res in r.items() if res is None]
    text, failed = outcome(r, errors, filed(pipeline, date))
    return "\n".join([*lines, "", text]), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--date", required=True, type=dt.date.fromisoformat)
    args = parser.parse_args()
    text, failed = summary(args.pipeline, args.date)
    print(text)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
