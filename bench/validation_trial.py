"""How validation does on real taxi spans: false alarms on clean spans, catches on faulty ones.

    .venv-ml/bin/python bench/validation_trial.py            # this checkout
    PYTHONPATH=<other checkout> .venv-ml/bin/python bench/validation_trial.py   # e.g. main, same corpus

Runs the real validate step (its own Beam pipeline per span) on tests/validation_corpus.py's spans,
each pipeline with the checkout's own taxi_tips config and schema, in a temporary artifact root.
Prints one line per span and the counts; with --calibrate also the drift statistics of the clean
chain per feature (to choose thresholds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import pyarrow as pa  # noqa: E402

import validation_corpus as corpus  # noqa: E402
from pipeline_fixtures import warehouse_copy, write_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="validation-trial-"))
    os.environ["PIPELINE_ARTIFACT_ROOT"] = str(root / "artifacts")
    os.environ["PIPELINE_WAREHOUSE"] = str(warehouse_copy(root))
    from pipeline_lib import artifacts
    from pipeline_lib.config import load_config
    from pipeline_lib.span import window
    from pipeline_lib.steps import ingest, validate
    import pipeline_lib
    print("pipeline_lib from", Path(pipeline_lib.__file__).parent)

    def rows(config, span, days):
        return pa.Table.from_batches(list(ingest.batches(config, *window(config, span, days))),
                                     schema=None) if days else None

    def run(config, span, days, table, corrupt=False):
        out = artifacts.step_dir(config.name, span, "ingest")
        with artifacts.atomic_dir(out) as tmp:
            written = ingest.write_splits(config, table.to_batches(), tmp)
            start, end = window(config, span, days)
            artifacts.write_json(tmp / artifacts.RESULT_FILENAME, {"examples": str(out), "rows": written,
                                 "window": {"start": start.isoformat(), "end": end.isoformat()}})
        if corrupt:
            data = out / "eval" / "data-00000.tfrecord"
            data.write_bytes(data.read_bytes()[:-7])
        return validate.run(config, artifacts.step_dir(config.name, span, "validate"), str(out))

    def show(name, result):
        findings = ", ".join(f"{a['feature']}/{a['kind']}[{a['severity'][0]}]" for a in result["anomalies"])
        print(f"  {name:<28} blocking {result['blocking']}  {findings or '-'}", flush=True)

    config = load_config(write_pipeline(root / "pipelines", {"name": "trial_clean"}))
    false_alarms, noisy, chain = 0, 0, []
    print("clean spans (span, window days, rows kept):")
    for i, (span, days, keep) in enumerate(corpus.clean_spans()):
        table = corpus.resample(rows(config, span, days), keep, seed=i)
        result = run(config, span, days, table)
        chain.append(result)
        show(f"{span} {days:>3}d {keep:.0%} {table.num_rows:>5} rows", result)
        false_alarms += result["blocking"] > 0
        noisy += bool(result["anomalies"])
    print(f"CLEAN: {false_alarms} of {len(chain)} spans blocked, {noisy} with any finding")

    history_span, history_days = corpus.HISTORY
    caught = 0
    cases = {**corpus.FAULTS, "unreadable data": (lambda t: t, "(data)", "blocking")}
    print("faults (each a later span against the same history span):")
    for n, (name, (change, feature, expect)) in enumerate(cases.items()):
        case = load_config(write_pipeline(root / "pipelines", {"name": f"trial_fault_{n}"}))
        run(case, history_span, history_days, rows(case, history_span, history_days))
        result = run(case, corpus.CASE_SPAN, corpus.CASE_WINDOW,
                     change(rows(case, corpus.CASE_SPAN, corpus.CASE_WINDOW)), corrupt=name == "unreadable data")
        hits = [a for a in result["anomalies"] if a["feature"] == feature
                and (expect == "any" or a["severity"] == "blocking")]
        caught += bool(hits)
        show(f"{name} ({'caught' if hits else 'MISSED'})", result)
        for a in result["anomalies"]:
            if "statistic" in a:
                print(f"    {a['description']}")
        shutil.rmtree(artifacts.pipeline_root(case.name))
    print(f"FAULTS: {caught} of {len(cases)} caught")

    if args.calibrate:
        import tensorflow_data_validation as tfdv
        from pipeline_lib import drift
        print("drift statistic (p-value) of each clean span against the previous one:")
        for feature in config.features.all():
            values = []
            for before, after in zip(chain, chain[1:]):
                change = drift.compare(feature, tfdv.load_stats_binary(before["statistics"]["train"]),
                                       tfdv.load_stats_binary(after["statistics"]["train"]))
                if change:
                    values.append(f"{change['statistic']:.3f}({change['p_value']:.0e})")
            print(f"  {feature:<24} {' '.join(values)}")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
