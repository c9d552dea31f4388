"""The CI soak (`make soak`, bench/soak/season-ci.yaml): 5 daily taxi_tips runs through the real
scheduler with a new payment type on day 2 (accepted) and all labels 0 on day 4 (fixed at the
source, the run cleared), a scripted operator and the maintenance DAG each day. Every scheduled
fault is caught and alerted, no clean day is blocked, each day ends as scheduled, versions
increase, retention removes spans and the pipeline's storage stops growing by more than a day."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

SEASON = REPO / "bench" / "soak" / "season-ci.yaml"
DAYS = 5
GATES = {"wait_for_anomalies", "wait_for_transform_anomalies"}


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    out = tmp_path_factory.mktemp("soak") / "season"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--days", str(DAYS),
                           "--pipelines", "taxi_tips", "--season", str(SEASON), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert (out / "soak.json").exists(), proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads((out / "soak.json").read_text())
    return proc, report, yaml.safe_load(SEASON.read_text())


def test_every_scheduled_fault_is_caught_and_alerted_and_no_clean_day_is_blocked(soak):
    proc, report, season = soak
    summary = report["summary"]
    assert [(f["day"], f["fault"]) for f in summary["faults"]] == [(f["day"], f["fault"]) for f in season["faults"]]
    for fault in summary["faults"]:
        caught = fault["caught_by"]["taxi_tips"]
        assert caught, f"day {fault['day']} {fault['fault']} not caught: {report['daily'][fault['day'] - 1]}"
        filed = {a["id"]: a for a in report["daily"][fault["day"] - 1]["pipelines"]["taxi_tips"]["anomalies"]}
        assert all(filed[i]["kind"] in fault["expect"] and filed[i]["received"] == ["email", "slack"] for i in caught)
    assert summary["clean_days_blocked"] == []
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_each_day_ends_as_scheduled_and_versions_increase(soak):
    _, report, season = soak
    faults = {f["day"]: f for f in season["faults"]}
    assert [d["date"] for d in report["daily"]] == ["2016-12-01", "2016-12-02", "2016-12-03", "2016-12-04", "2016-12-05"]
    for day in report["daily"]:
        run = day["pipelines"]["taxi_tips"]
        if day["day"] in faults:
            # blocked at a gate on the fault's anomalies, the operator's action, then pushed
            (action,) = run["actions"]
            assert action["at"] in GATES and action["action"] == faults[day["day"]]["operator"], run
            assert set(action["kinds"]) & set(faults[day["day"]]["expect"]), run
            assert run["pushed"], run["outcome"]
        else:
            assert run["actions"] == [], run
            assert run["pushed"] or run["final"].startswith("push refused: not blessed"), run["outcome"]
        assert all(s and s > 0 for s in run["run_seconds"])
    fixed = [d["pipelines"]["taxi_tips"] for d in report["daily"] if faults.get(d["day"], {}).get("operator") == "fix"]
    assert all(len(r["run_seconds"]) == 2 for r in fixed), "a fixed day's run is cleared and runs again"
    served = [d["pipelines"]["taxi_tips"]["served"] for d in report["daily"]]
    pushed = [int(d["pipelines"]["taxi_tips"]["final"].removeprefix("pushed v")) for d in report["daily"]
              if d["pipelines"]["taxi_tips"]["pushed"]]
    assert served[0] == 1 and served == sorted(served) and pushed == list(range(1, len(pushed) + 1)), served
    assert served[-1] == pushed[-1] >= 3


def test_retention_removes_spans_and_storage_stops_growing(soak):
    _, report, season = soak
    daily = report["daily"]
    if any("skipped" in d["maintenance"] for d in daily):
        pytest.fail(f"the maintenance DAG did not run: {[d['maintenance'] for d in daily]}")
    assert all(d["maintenance"]["task_states"]["retention"] == "success" for d in daily), [d["maintenance"] for d in daily]
    removed = [s for d in daily for s in d["maintenance"]["returns"]["retention"]["taxi_tips"]["spans"]]
    assert removed and removed == sorted(removed), "the oldest spans go, each once"
    window = season["overrides"]["source"]["window_days"] + season["overrides"]["retention"]["margin_days"]
    assert daily[-1]["pipelines"]["taxi_tips"]["disk"]["span_count"] == window
    last, before = (d["pipelines"]["taxi_tips"]["disk"] for d in daily[-2:])
    storage = {k: d["spans"] + d["runs"] + d["serving"] for k, d in (("last", last), ("before", before))}
    assert storage["last"] <= storage["before"] + last["newest_span"], storage
