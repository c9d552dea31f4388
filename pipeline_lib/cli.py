"""`python -m pipeline_lib.cli <step> ...`: one entry point per step, run in the ML environment.

Each step reads artifact URIs, writes its artifacts under --output-dir (atomically) and its JSON
result both there (result.json) and to --result-file for the launcher, with the process's peak
memory added (`peak_rss_mib`). On failure the result file
holds {"error": ...} (the error alone also goes to --error-file, if given) and the exit code is 1.
A step imports only the libraries it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from pipeline_lib import run_params
from pipeline_lib.artifacts import INPUTS, RUN_ARGS, STEPS

# each step's arguments besides --config/--output-dir/--result-file
STEP_ARGS: dict[str, tuple[str, ...]] = {step: (*INPUTS[step], *RUN_ARGS.get(step, ())) for step in STEPS}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline_lib.cli", description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    for step, extra in STEP_ARGS.items():
        p = sub.add_parser(step)
        p.add_argument("--config", required=True, type=Path)
        p.add_argument("--output-dir", required=True, type=Path)
        p.add_argument("--result-file", type=Path)
        p.add_argument("--error-file", type=Path, help="on failure, the error alone goes here too (in a "
                       "pod: /dev/termination-log, the termination message Kubernetes reports)")
        for name in extra:
            kind = dt.date.fromisoformat if name == "span_date" else str
            p.add_argument(f"--{name.replace('_', '-')}", required=True, type=kind)
        if step == "ingest":
            p.add_argument("--rows-file", type=Path, help="the rows of the spans to ingest as Arrow IPC (BigQuery "
                           "extract), their window's fingerprints next to it")
        if step == "transform":
            p.add_argument("--exclude-spans", default="", help="comma-separated spans to leave out of training "
                           "(blocked by open anomalies)")
        for param in run_params.for_step(step):  # optional: the run's params (run_params.py)
            p.add_argument(param.flag(), type=param.parse, default=param.default, help=param.description)
    return parser


def peak_rss_mib() -> int:
    """This process's peak resident memory since it started the step's program. Linux's VmHWM:
    ru_maxrss would also count the launcher's memory, inherited through fork before exec."""
    status = Path("/proc/self/status")
    if status.exists():
        return round(int(next(l for l in status.read_text().splitlines() if l.startswith("VmHWM:")).split()[1]) / 1024)
    import resource  # no /proc (macOS): ru_maxrss, in bytes there

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


@contextlib.contextmanager
def scratch_space(step: str):
    """The step's temporary files (AutoGraph's generated modules, Beam's temp and cache folders,
    TFT's and TFMA's) in one folder of its own, removed with the step: Python's default temp folder
    and TMPDIR for the processes it starts."""
    scratch = tempfile.mkdtemp(prefix=f"{step}-scratch-")
    previous = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = scratch
    try:
        yield
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if previous[0] is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous[0]
        tempfile.tempdir = previous[1]


def record_error(output_dir: Path, error: str | None) -> None:
    """A failed step's error next to its output folder (`.<step>.error`), which `report` shows;
    removed when the step succeeds."""
    path = output_dir.with_name(f".{output_dir.name}.error")
    if error:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(error)
    else:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipeline_lib.config import load_config

    kwargs = {name: getattr(args, name) for name in STEP_ARGS[args.step]}
    kwargs.update({p.name: getattr(args, p.name) for p in run_params.for_step(args.step)})
    if args.step == "ingest":
        kwargs["rows_file"] = args.rows_file
    if args.step == "transform":
        kwargs["exclude_spans"] = args.exclude_spans
    try:
        with scratch_space(args.step):
            config = load_config(args.config)
            step = importlib.import_module(f"pipeline_lib.steps.{args.step}")
            result = step.run(config, output_dir=args.output_dir, **kwargs)
        code = 0
    except Exception as e:  # noqa: BLE001 - the step's own message goes back to Airflow
        traceback.print_exc()
        result, code = {"error": f"{type(e).__name__}: {e}"}, 1
    if args.result_file:
        args.result_file.write_text(json.dumps({**result, "peak_rss_mib": peak_rss_mib()}, default=str))
    record_error(args.output_dir, result.get("error") if code else None)
    if code and args.error_file:
        args.error_file.write_text(result["error"])
    print(json.dumps(result, indent=2, default=str), flush=True)
    return code


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # skip interpreter teardown: TF's AtomicFunction.__del__ spams TypeErrors there, and it costs time
    os._exit(code)
