"""Run params (window size, forced retrain, dry run): validated by Airflow before a run starts,
passed to the steps as flags, and acted on by the steps."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import REPO
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, run_params, serving, settings
from pipeline_lib.cli import _parser

DAY = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)


def test_the_dag_offers_each_run_param_with_its_default():
    from pipeline_ops.dag_factory import build_dag

    params = build_dag(REPO / "pipelines" / "taxi_tips" / "pipeline.yaml").params
    assert params.dump() == {"window_days": None, "reingest": False, "skip_change_threshold": False, "dry_run": False}


@pytest.mark.parametrize("conf, message", [
    ({"window_days": 0}, "0 is less than the minimum of 1"),
    ({"window_days": "ten"}, "'ten' is not of type 'null', 'integer'"),
    ({"dry_run": "yes"}, "'yes' is not of type 'boolean'"),
])
@pytest.mark.usefixtures("airflow_db")
def test_a_bad_param_is_refused_before_any_step_runs(isolated, conf, message):
    from airflow.sdk.exceptions import ParamValidationError
    from pipeline_ops.dag_factory import build_dag

    dag = build_dag(write_pipeline(isolated / "pipelines"))
    day = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # a date of its own: the refused run stays in the db
    with pytest.raises(ParamValidationError, match=message):
        dag.test(logical_date=day, run_conf=conf)
    assert not artifacts.run_dir("taxi_tips", day.date()).exists()


def test_the_cli_parses_what_the_operators_pass():
    values = {"window_days": 30, "reingest": True, "skip_change_threshold": True, "dry_run": True}
    args = {step: run_params.step_args(step, values) for step in artifacts.STEPS}
    assert args == {"ingest": {"window_days": "30", "reingest": "true"}, "validate": {}, "transform": {}, "train": {},
                    "evaluate": {"skip_change_threshold": "true"}, "infra_validate": {}, "push": {"dry_run": "true"}}
    assert run_params.step_args("ingest", {"window_days": None}) == {"reingest": "false"}
    push = ["push", "--config", "c", "--output-dir", "o", "--model", "m", "--blessing", "b", "--infra-blessing", "i",
            "--examples", "e", "--schema", "s", "--transform-graph", "t", "--run-id", "r"]
    assert _parser().parse_args([*push, "--dry-run", "true"]).dry_run is True
    with pytest.raises(SystemExit):
        _parser().parse_args([*push, "--dry-run", "yes"])


@pytest.mark.usefixtures("airflow_db")
def test_params_reach_the_steps_a_dry_run_pushes_nothing(isolated):
    from pipeline_ops.dag_factory import build_dag

    config_path = write_pipeline(isolated / "pipelines", {"training": {"steps": 50}})
    run = build_dag(config_path).test(
        logical_date=DAY, run_conf={"window_days": 30, "skip_change_threshold": True, "dry_run": True})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"wait_for_data": "success", "file_anomalies": "success", "wait_for_anomalies": "success",
                      "file_transform_anomalies": "success", "wait_for_transform_anomalies": "success",
                      **{step: "success" for step in artifacts.STEPS}, "push": "skipped"}

    def result(step):
        return artifacts.read_result(artifacts.step_dir("taxi_tips", DAY.date(), step))

    # 30 days of weekly spans: the 5 weeks before 2017-01-01
    assert result("ingest")["window"] == {"start": "2016-11-27T00:00:00+00:00", "end": "2017-01-01T00:00:00+00:00"}
    assert any(r.startswith("change thresholds skipped") for r in result("evaluate")["reasons"])
    assert result("push")["reason"].startswith("dry run: ")
    assert result("push")["pushed"] is False
    assert serving.versions(settings.serving_root() / "taxi_tips") == []

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:  # ingest's outlet: the pipeline's examples Asset
        events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                                 .where(AssetModel.name == "taxi_tips_examples",
                                        AssetEvent.source_run_id == run.run_id)).all()
        assert [e.extra for e in events] == [{k: result("ingest")[k] for k in ("examples", "rows", "window", "ingested")}]
