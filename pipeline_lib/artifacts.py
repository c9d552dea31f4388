"""The artifact store layout and atomic writes (a failed step never leaves half an artifact)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import uuid
from pathlib import Path

from pipeline_lib import settings

STEPS = ("ingest", "validate", "transform", "train", "evaluate", "infra_validate", "push")
RESULT_FILENAME = "result.json"
# each step's inputs: argument -> (upstream step, key of that step's result)
# (`examples`: the folder of a result that lists spans, ingest's the window's, transform's the
# training spans: the window's but those still blocked)
INPUTS: dict[str, dict[str, tuple[str, str]]] = {
    "ingest": {},
    "validate": {"examples": ("ingest", "examples")},
    "transform": {"examples": ("ingest", "examples"), "schema": ("validate", "schema")},
    "train": {"transform_graph": ("transform", "transform_graph"), "examples": ("transform", "examples")},
    "evaluate": {"model": ("train", "model"), "examples": ("transform", "examples"), "schema": ("validate", "schema")},
    "infra_validate": {"model": ("train", "model"), "examples": ("transform", "examples")},
    "push": {"model": ("train", "model"), "blessing": ("evaluate", "blessing"),
             "infra_blessing": ("infra_validate", "infra_blessing"), "examples": ("transform", "examples"),
             "schema": ("validate", "schema"), "transform_graph": ("transform", "transform_graph")},
}
# arguments that come from the run rather than from an upstream step
RUN_ARGS: dict[str, tuple[str, ...]] = {"ingest": ("span_date",), "push": ("run_id",)}


def inputs_from(step: str, results: dict[str, dict]) -> dict[str, str]:
    """A step's input arguments taken from its upstream steps' results."""
    return {arg: results[upstream][key] for arg, (upstream, key) in INPUTS[step].items()}


def run_args(step: str, span_date: dt.date, run_id: str) -> dict[str, str]:
    """The step's arguments that come from the run (RUN_ARGS)."""
    values = {"span_date": span_date.isoformat(), "run_id": run_id}
    return {name: values[name] for name in RUN_ARGS.get(step, ())}


def pipeline_root(pipeline: str) -> Path:
    return settings.artifact_root() / pipeline


def run_dir(pipeline: str, span_date: dt.date) -> Path:
    """One folder per span (logical date): re-running a date replaces that date's artifacts."""
    return pipeline_root(pipeline) / "runs" / span_date.isoformat()


def step_dir(pipeline: str, span_date: dt.date, step: str) -> Path:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; steps are {STEPS}")
    return run_dir(pipeline, span_date) / step


def filed_anomalies_path(pipeline: str, span_date: dt.date, step: str) -> Path:
    """The tracker records a step's findings were filed as (file_anomalies writes it, report names
    their ids)."""
    return run_dir(pipeline, span_date) / f".{step}.anomalies.json"


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a scratch folder that replaces `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def read_result(step_output: Path) -> dict:
    return json.loads((step_output / RESULT_FILENAME).read_text())
