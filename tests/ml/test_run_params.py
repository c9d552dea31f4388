"""The steps' side of the run params: a forced retrain skips the change thresholds (and only
them), a dry run pushes nothing. The Airflow side is in tests/airflow/test_run_params.py."""

from __future__ import annotations

from conftest import run_step

from pipeline_lib import artifacts, serving


def test_a_forced_retrain_skips_the_change_threshold_but_not_the_value_thresholds(chain, make_config, config):
    # must beat the serving model by 0.5 AUC: no candidate can
    demanding = make_config({"evaluation": {"thresholds": {"AUC": {
        "lower_bound": 0.5, "change_direction": "higher_is_better", "change_absolute": 0.5}}},
        "serving": {"model_name": config.serving.model_name}}, name="taxi_demanding")
    assert serving.versions(config.serving.model_dir()), "the chain pushed a serving model"
    inputs = artifacts.inputs_from("evaluate", chain)

    judged = run_step(demanding, "evaluate", **inputs)
    assert judged["blessed"] is False
    assert any("change vs serving model" in r for r in judged["reasons"]), judged["reasons"]

    forced = run_step(demanding, "evaluate", **inputs, skip_change_threshold=True)
    assert forced["blessed"] is True, forced["reasons"]
    assert any(r.startswith("change thresholds skipped") for r in forced["reasons"])

    impossible = make_config({"evaluation": {"thresholds": {"AUC": {"lower_bound": 0.999}}},
                              "serving": {"model_name": config.serving.model_name}}, name="taxi_impossible")
    still_judged = run_step(impossible, "evaluate", **inputs, skip_change_threshold=True)
    assert still_judged["blessed"] is False
    assert any(r.endswith("fails lower bound 0.999") for r in still_judged["reasons"])


def test_a_dry_run_pushes_nothing_even_when_blessed(chain, config):
    before = serving.versions(config.serving.model_dir())
    result = run_step(config, "push", **artifacts.inputs_from("push", chain), dry_run=True)
    assert chain["evaluate"]["blessed"] is True and chain["infra_validate"]["valid"] is True
    assert result == {"pushed": False, "version": before[-1], "path": None,
                      "reason": "dry run: blessed and infra-validated"}
    assert serving.versions(config.serving.model_dir()) == before
