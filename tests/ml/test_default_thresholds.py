"""Each task kind on its default thresholds (the example pipeline with `evaluation.thresholds`
removed), on the real taxi rows: a model of the real label is blessed and pushed as version 1; a
model trained on the same rows with the label shuffled is refused, the trivial model's bound named."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import run_step
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, serving
from pipeline_lib.config import DEFAULT_THRESHOLDS, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
# about 2015 (the sample's 2013 and 2014 rows often lack trip_miles: 0), ~4,900 rows in 4-week spans
SPAN = dt.date(2016, 1, 3)
WINDOW = {"schedule": None, "source": {"window_days": 365, "span_days": 28}}
# per example pipeline: its default threshold's metric (TFMA's name), the bound's words (where it
# comes from, with the eval rows it was computed on), and how a copy of the taxi table shuffles its
# label: a column whose values are permuted over the rows, and the column's new value from the
# permuted one. taxi_tips permutes the tip's share of the fare (its label: tips > 20% of the fare),
# since the fare is also a feature.
KINDS = {
    "taxi_tips": ("auc", (r"lower bound \S+ \(0\.5, the AUC of a constant score, plus 3\.1 standard errors "
                          r"on the (\d+) positive and (\d+) negative eval rows\)"),
                  ("tips", "tips / fare", "fare * shuffled")),
    "taxi_trip_length": ("sparse_categorical_accuracy", (r"lower bound \S+ \(\S+, the share of the majority class "
                                                         r"'short' in the (\d+) eval rows, plus 3\.1 standard errors\)"),
                         ("trip_miles", "trip_miles", "shuffled")),
    "taxi_fare": ("mean_squared_error", (r"upper bound \S+ \(\S+, the variance of the label in the (\d+) eval rows "
                                         r"\(the error of always answering their mean\), less 3\.1 standard errors\)"),
                  ("fare", "fare", "shuffled")),
}


def on_defaults(env: Path, pipeline: str, name: str, table: str = "taxi_trips", thresholds: dict | None = None):
    """The example pipeline on about a year of rows, under `name`, with `thresholds` (default: none
    set, so its task's defaults)."""
    path = write_pipeline(env / "pipelines", {"name": name, "serving": {"model_name": name}, **WINDOW,
                                              "source": {**WINDOW["source"], "table": table}},
                          source=REPO / "pipelines" / pipeline)
    raw = yaml.safe_load(path.read_text())
    del raw["evaluation"]["thresholds"]
    if thresholds is not None:
        raw["evaluation"]["thresholds"] = thresholds
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def shuffled_copy(column: str, value: str, new_value: str) -> str:
    """A copy of the taxi table whose `column` is `new_value` of another row's `value`."""
    table = f"taxi_shuffled_{column}"
    with duckdb.connect(os.environ["PIPELINE_WAREHOUSE"]) as con:
        con.execute(f"""CREATE OR REPLACE TABLE {table} AS
            WITH numbered AS (SELECT *, row_number() OVER (ORDER BY trip_start_timestamp, {column}) AS i FROM taxi_trips),
                 permuted AS (SELECT {value} AS shuffled, row_number() OVER (ORDER BY hash(i)) AS i FROM numbered)
            SELECT numbered.* EXCLUDE (i) REPLACE ({new_value} AS {column}) FROM numbered JOIN permuted USING (i)""")
    return table


def first_models(pipeline: str) -> dict:
    """What the test judges, run in a process of its own: a transform graph loaded in a process keeps
    its lookup tables by name, and another pipeline's graph reuses the names with other key types.
    Every step on the defaults; then, with the same transform graph and judged on the same eval rows,
    a model trained on shuffled labels, and the first one held to change thresholds only."""
    env = Path(os.environ["PIPELINE_ARTIFACT_ROOT"]).parent
    config = on_defaults(env, pipeline, f"{pipeline}_defaults")
    chain = {}
    for step in artifacts.STEPS:
        chain[step] = run_step(config, step, SPAN, **artifacts.inputs_from(step, chain))
    judged_on = {"examples": chain["transform"]["examples"], "schema": chain["validate"]["schema"]}

    shuffled = on_defaults(env, pipeline, f"{pipeline}_shuffled", shuffled_copy(*KINDS[pipeline][2]))
    ingested = run_step(shuffled, "ingest", SPAN)
    trained = run_step(shuffled, "train", SPAN, transform_graph=chain["transform"]["transform_graph"],
                       examples=ingested["examples"])
    refused = run_step(shuffled, "evaluate", SPAN, model=trained["model"], **judged_on)

    change_only = on_defaults(env, pipeline, f"{pipeline}_change_only", thresholds={
        name: threshold.model_dump(exclude={"lower_bound", "upper_bound"}, exclude_none=True)
        for name, threshold in DEFAULT_THRESHOLDS[config.label.task].items()})
    unjudged = run_step(change_only, "evaluate", SPAN, model=chain["train"]["model"], **judged_on)
    return {"chain": chain, "versions": serving.versions(config.serving.model_dir()), "refused": refused,
            "unjudged": unjudged}


@pytest.mark.parametrize("pipeline", list(KINDS))
def test_defaults_bless_a_first_model_and_refuse_one_trained_on_shuffled_labels(env, pipeline):
    metric, basis, _ = KINDS[pipeline]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        got = child.submit(first_models, pipeline).result()
    chain, refused, unjudged = got["chain"], got["refused"], got["unjudged"]
    good = chain["evaluate"]
    assert good["blessed"] is True, good["reasons"]
    assert good["baseline_version"] is None and "first model: judged on value thresholds only (no model is serving)" \
        in good["reasons"]
    bound, = [v for v in good["thresholds"] if v["metric"] == metric]
    words = re.fullmatch(basis, bound["threshold"])
    assert words and bound["kind"] == "value" and bound["passed"] is True, bound
    assert sum(map(int, words.groups())) == good["evaluated"]["rows"], "computed on the rows TFMA judged"
    assert chain["push"]["pushed"] is True and chain["push"]["version"] == 1 and got["versions"] == [1]

    assert refused["blessed"] is False and refused["baseline_version"] is None
    failed, = [v for v in refused["thresholds"] if not v["passed"]]
    assert failed["metric"] == metric and failed["threshold"] == bound["threshold"], "the same rows, the same bound"
    assert refused["reasons"][0] == f"{metric} = {failed['value']:.4f} fails {bound['threshold']}"

    assert unjudged["blessed"] is False and unjudged["thresholds"] == []
    assert unjudged["reasons"][0] == ("no threshold applies to this model, and none is blessed without one: "
                                      "evaluation.thresholds sets no lower_bound or upper_bound, and change "
                                      "thresholds need a serving model")
    assert not any("missing_thresholds" in r for r in unjudged["reasons"])


@pytest.mark.parametrize("pipeline, threshold, field", [
    ("taxi_fare", {"MeanAbsoluteError": {"upper_bound": "trivial"}}, "MeanAbsoluteError.upper_bound"),
    ("taxi_tips", {"AUC": {"upper_bound": "trivial"}}, "AUC.upper_bound"),
])
def test_a_trivial_bound_is_only_where_the_trivial_model_has_a_score(env, pipeline, threshold, field):
    with pytest.raises(ConfigError, match=rf"field 'evaluation.thresholds.{field}': `trivial` is a bound of "
                                          r"AUC \(lower_bound\), BinaryAccuracy \(lower_bound\), "):
        on_defaults(env, pipeline, f"{pipeline}_misplaced", thresholds=threshold)
