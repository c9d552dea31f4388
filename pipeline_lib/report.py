"""`python -m pipeline_lib.report --pipeline NAME --date YYYY-MM-DD`: what one run did, read from
the steps' result.json files in the artifact store (stdlib only: runs in either environment)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from pipeline_lib import artifacts


def _results(pipeline: str, date: dt.date) -> dict[str, dict | None]:
    out = {}
    for step in artifacts.STEPS:
        path = artifacts.step_dir(pipeline, date, step) / artifacts.RESULT_FILENAME
        out[step] = json.loads(path.read_text()) if path.exists() else None
    return out


def _metrics(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) and not v.is_integer() else f"{k} {v:.0f}"
                     for k, v in sorted(values.items()))


def summary(pipeline: str, date: dt.date) -> str:
    r = _results(pipeline, date)
    lines = [f"pipeline {pipeline}, span {date}  (artifacts: {artifacts.run_dir(pipeline, date)})"]
    if r["ingest"]:
        w, rows = r["ingest"]["window"], r["ingest"]["rows"]
        lines.append(f"  ingested   {sum(rows.values()):,} rows from [{w['start'][:10]}, {w['end'][:10]}): "
                     + ", ".join(f"{split} {n:,}" for split, n in rows.items()))
    if r["validate"]:
        anomalies = r["validate"]["anomalies"]
        lines.append(f"  anomalies  {len(anomalies)}" + ("" if anomalies else " (none)"))
        lines += [f"    - [{a['severity']}] {','.join(a['splits'])}/{a['feature']}: {a['kind']}: {a['description'].strip()}"
                  for a in anomalies[:5]]
    if r["train"]:
        t = r["train"]
        warm = t["warm_start"]["from_version"]
        lines.append(f"  trained    {t['steps']} steps in {len(t['epochs_run'])} epochs"
                     f"{' (stopped early)' if t['stopped_early'] else ''}, "
                     f"{'warm from v' + str(warm) if warm else 'cold start'}, {t['distribution']['strategy']}; "
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
                     else f"  pushed     no, serving stays at version {p['version']}: {p['reason']}")
    lines += [f"  {step:<10} did not run" for step, res in r.items() if res is None]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--date", required=True, type=dt.date.fromisoformat)
    args = parser.parse_args()
    print(summary(args.pipeline, args.date))


if __name__ == "__main__":
    main()
