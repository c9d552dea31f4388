"""The ML steps, in process, on a small slice of the real taxi data (one import of the stack).

`chain` runs ingest..push once per session on ~90 days (~1,000 rows) with a short training; the
tests then look at what each step left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_fixtures import warehouse_copy, write_pipeline

from pipeline_lib import artifacts
from pipeline_lib.config import load_config

SPAN = dt.date(2014, 3, 1)
SMALL = {"source": {"window_days": 90}, "training": {"steps": 100, "batch_size": 32},
         "evaluation": {"thresholds": {"AUC": {"lower_bound": 0.5, "change_direction": "higher_is_better",
                                               "change_absolute": -0.05}},
                        "slices": [["trip_start_hour"]]}}


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    os.environ["PIPELINE_ARTIFACT_ROOT"] = str(root / "artifacts")
    os.environ["PIPELINE_SERVING_ROOT"] = str(root / "serving")
    os.environ["PIPELINE_WAREHOUSE"] = str(warehouse_copy(root))
    return root


@pytest.fixture(scope="session")
def make_config(env):
    def make(overrides=None, name="taxi_small"):
        path = write_pipeline(env / "pipelines", {"name": name, **SMALL, **(overrides or {})})
        return load_config(path)
    return make


@pytest.fixture(scope="session")
def config(make_config):
    return make_config()


def run_step(config, name: str, span=SPAN, **inputs) -> dict:
    """One step in process, as the CLI runs it (string arguments, the span's folder)."""
    import importlib

    step = importlib.import_module(f"pipeline_lib.steps.{name}")
    args = {**artifacts.run_args(name, span, f"test-{span}"), **inputs}
    if "span_date" in args:
        args["span_date"] = dt.date.fromisoformat(str(args["span_date"]))
    return step.run(config, output_dir=artifacts.step_dir(config.name, span, name), **args)


@pytest.fixture(scope="session")
def chain(config):
    """Every step once, in order, as the DAG runs them; returns each step's result."""
    out = {}
    for step in artifacts.STEPS:
        out[step] = run_step(config, step, **artifacts.inputs_from(step, out))
    return out


def eval_files(chain) -> list[str]:
    """The eval TFRecord files of the chain's window (its spans')."""
    from pipeline_lib import spans

    return spans.files(chain["ingest"]["spans"], "eval")
