"""The Models and Data pages on real runs: two weekly runs of the taxi DAG (dag.test, real steps)
push versions 1 and 2; the second checks payment_type's drift with a threshold it crosses (a
warning, filed in the tracker). Beside it, one run of the multi-class example (taxi_trip_length)
and the ingest and validate steps of a pipeline whose window is a single span. The routes are tested in the real API app (auth, permissions, CSRF, escaping,
content), then the pages in a real headless Chromium against that app served by uvicorn."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, airflow_token, isolate
from pipeline_fixtures import merge, write_pipeline

from pipeline_lib import artifacts, pages, serving, settings

DAY1 = dt.datetime(2016, 12, 25, tzinfo=dt.UTC)  # Sundays: taxi_tips is @weekly
DAY2 = DAY1 + dt.timedelta(days=7)
XSS = "<script>alert('pages')</script>"
SMALL = {"start_date": "2016-01-03", "source": {"window_days": 365}, "training": {"steps": 300},
         "description": f"Tips {XSS}"}
# day 2: a shorter window (other data than day 1's); any AUC change passes (so version 2 is pushed
# and compared with version 1); every change counts as significant, so payment_type's drift against
# the spans before crosses its threshold, as a warning that does not hold the run (and so does
# whatever else changed: no level blocks, and schema, data and label findings warn)
WARN_ONLY = {"drift": 0.1, "skew": 0.1}
DAY2_CONFIG = merge(SMALL, {"source": {"window_days": 200}, "evaluation": {"thresholds": {"AUC": {"change_absolute": -1.0}}},
                            "validation": {"significance": 0.999, "severity": {"schema": "warning", "data": "warning", "label": "warning"},
                                           "numbers": WARN_ONLY, "categories": WARN_ONLY, "strings": WARN_ONLY,
                                           "features": {"payment_type": {"drift": 1e-9, "severity": "warning"}}}})
# the multi-class example, small: value bounds a short training meets
LENGTH = {"start_date": "2016-01-03", "source": {"window_days": 180}, "training": {"steps": 300},
          "evaluation": {"thresholds": {"SparseCategoricalAccuracy": {"lower_bound": 0.4}, "Recall": {"lower_bound": 0.1}}},
          "validation": {"wait_timeout_seconds": 5, "poke_interval_seconds": 1}}


@pytest.fixture(scope="module")
def runs(airflow_db, tmp_path_factory):
    from pipeline_ops.dag_factory import build_dag

    with pytest.MonkeyPatch.context() as mp:
        root = isolate(tmp_path_factory.mktemp("pages"), mp)
        config_path = write_pipeline(root / "pipelines", SMALL)
        done = {}
        for day, overrides in ((DAY1, SMALL), (DAY2, DAY2_CONFIG)):
            write_pipeline(root / "pipelines", overrides)
            run = build_dag(config_path).test(logical_date=day)
            assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
            done[day.date().isoformat()] = run.run_id
        yield {"root": root, "runs": done, "model_dir": settings.serving_root() / "taxi_tips"}


@pytest.fixture(scope="module")
def multiclass(runs):
    """One run of the multi-class example next to taxi_tips; its evaluate result."""
    from pipeline_ops.dag_factory import build_dag

    path = write_pipeline(runs["root"] / "pipelines", LENGTH, source=REPO / "pipelines" / "taxi_trip_length")
    run = build_dag(path).test(logical_date=DAY2)
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    return pages.step_result("taxi_trip_length", DAY2.date().isoformat(), "evaluate")


FIRST = {**SMALL, "name": "taxi_week", "serving": {"model_name": "taxi_week"}, "source": {"window_days": 7}}


@pytest.fixture(scope="module")
def first_span(runs):
    """The real ingest and validate steps of a pipeline whose window is one weekly span: no span
    before it to measure drift against."""
    from pipeline_lib.launchers import LocalLauncher

    path = write_pipeline(runs["root"] / "pipelines", FIRST)
    results = {}
    for step in ("ingest", "validate"):
        results[step] = LocalLauncher().run(step, {
            "config": str(path), "output_dir": str(artifacts.step_dir("taxi_week", DAY2.date(), step)),
            **artifacts.inputs_from(step, results), **artifacts.run_args(step, DAY2.date(), "first")}, log=lambda line: None)
    return results


@pytest.fixture(scope="module")
def client(runs):
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    return TestClient(create_app(), base_url="http://127.0.0.1")


def as_user(client, role):
    client.cookies.set("_token", airflow_token(role))
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_pages_need_airflow_auth_and_read_permission(client):
    client.cookies.clear()
    for url in ("/pipeline-pages/models", "/pipeline-pages/data", "/pipeline-pages/data/statistics.html?pipeline=taxi_tips&span=2017-01-01"):
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer forged"}).status_code == 403
    assert client.post("/pipeline-pages/models/rollback", data={"pipeline": "taxi_tips", "to": 1}).status_code == 401
    nobody = as_user(client, None)  # signed in, but may read no DAG
    assert nobody.get("/pipeline-pages/models", params={"pipeline": "taxi_tips"}).status_code == 403
    assert nobody.get("/pipeline-pages/data", params={"pipeline": "taxi_tips"}).status_code == 403
    viewer = as_user(client, "viewer")
    assert viewer.get("/pipeline-pages/models", params={"pipeline": "no_such"}).status_code == 404
    assert viewer.get("/pipeline-pages/data", params={"pipeline": "taxi_tips", "span": "1999-01-01"}).status_code == 404


def test_models_page_shows_versions_candidates_charts_and_slices(client, runs):
    page = as_user(client, "viewer").get("/pipeline-pages/models", params={"pipeline": "taxi_tips"})
    assert page.status_code == 200 and "Signed in as viewer-user" in page.text
    assert XSS not in page.text and "&lt;script&gt;" in page.text, "the config's description is escaped"
    versions = page.text.split('id="versions"')[1].split("</table>")[0]
    assert re.search(r'<tr class="live"><td>2 \(live\)</td>', versions)
    for version in serving.versions(runs["model_dir"]):
        record = serving.record(runs["model_dir"], version)
        assert record["run_id"] in versions and record["schema"]["sha256"][:12] in versions
        assert f"single {record['latency_ms']['single']['p50']:.2f}" in versions
    assert "<form" not in versions, "a viewer gets no rollback form"
    candidates = page.text.split('id="candidates"')[1].split("</table>")[0]
    assert candidates.count('class="good">blessed') == 2 and "pushed v1" in candidates and "pushed v2" in candidates
    assert page.text.count("<svg") == len(pages.metric_history(pages.evaluations("taxi_tips"))) >= 2
    # the slices of the newest evaluation: every metric slices.json holds, candidate vs baseline
    per_slice = json.loads((settings.artifact_root() / "taxi_tips/runs/2017-01-01/evaluate/slices.json").read_text())
    table = page.text.split('<div class="scroll"><table id="slices">')[1].split("</table>")[0]
    metrics = sorted({m for by_model in per_slice.values() for values in by_model.values() for m in values})
    assert table.split("</tr>")[0] == "<tr><th>slice</th>" + "".join(f"<th>{m}</th>" for m in metrics), \
        "one column per metric"
    auc = per_slice["Overall"]["candidate - baseline"]["auc"]
    assert f"<br>{auc:+.4f}</td>" in table
    assert table.count("<tr>") == len(per_slice) + 1 and "payment_type=Cash" in table
    assert re.search(r'class="num (better|worse)" title="baseline \d\.\d{4}">\d\.\d{4}<br>[+-]\d\.\d{4}</td>', table), \
        "AUC's difference is judged"
    # the confusion matrices at 0.5 of the newest evaluation, as TFMA counted them: they agree with
    # its example count and binary accuracy
    matrix = pages.step_result("taxi_tips", "2017-01-01", "evaluate")["confusion_matrix"]
    assert matrix["classes"] == ["0", "1"] and set(matrix) == {"classes", "candidate", "baseline"}
    for model in ("candidate", "baseline"):
        (tn, fp), (fn, tp) = matrix[model]
        overall = per_slice["Overall"][model]
        assert tn + fp + fn + tp == overall["example_count"] and min(tn, tp) > 0
        assert (tn + tp) / overall["example_count"] == pytest.approx(overall["binary_accuracy"], abs=1e-6)
        shown = page.text.split(f'id="confusion-{model}"')[1].split("</table>")[0]
        assert "<tr><th>actual \\ predicted</th><th>0</th><th>1</th></tr>" in shown
        assert f'<tr><th>1</th><td class="num">{fn:,.0f}</td><td class="num good">{tp:,.0f}</td></tr>' in shown

    day1 = client.get("/pipeline-pages/models", params={"pipeline": "taxi_tips", "run_id": runs["runs"]["2016-12-25"]})
    assert "Metrics by slice (span 2016-12-25)" in day1.text


def test_data_page_shows_statistics_drift_and_anomalies_linked_with_the_tracker(client, runs):
    page = as_user(client, "viewer").get("/pipeline-pages/data", params={"pipeline": "taxi_tips"})
    assert page.status_code == 200 and "Statistics of the run of 2017-01-01" in page.text
    statistics = json.loads((settings.artifact_root() / "taxi_tips/runs/2017-01-01/validate/statistics.json").read_text())
    assert set(statistics) == {"window", "new span"}
    for split, s in statistics.items():
        table = page.text.split(f'id="statistics-{split.replace(" ", "-")}"')[1].split("</table>")[0]
        assert table.count("<tr>") == len(s["features"]) + 1 and f"{s['examples']:,} examples in {s['spans']} span" in page.text
    assert "company" in table and "Cash (" in page.text, "top values of a string feature"
    drift = json.loads((settings.artifact_root() / "taxi_tips/runs/2017-01-01/validate/drift.json").read_text())
    assert {"payment_type", "company", "fare", "trip_miles", "trip_seconds"} <= set(drift), "every feature is compared"
    assert page.text.count("<svg") == sum(len(m) for m in drift.values())
    anomalies = page.text.split('id="anomalies"')[1].split("</table>")[0]
    found = re.search(r'href="/anomaly-tracker/\?pipeline=taxi_tips&amp;id=(\d+)&amp;status=open">#\d+</a>', anomalies)
    assert found and "payment_type" in anomalies and "DRIFT" in anomalies
    tracker_page = client.get("/anomaly-tracker/", params={"pipeline": "taxi_tips"}).text
    assert 'href="/pipeline-pages/data?pipeline=taxi_tips&amp;span=2017-01-01"' in tracker_page
    assert f'/dags/taxi_tips/runs/{runs["runs"]["2017-01-01"]}"'.replace("+", "%2B").replace(":", "%3A") in tracker_page

    html = client.get("/pipeline-pages/data/statistics.html", params={"pipeline": "taxi_tips", "span": "2017-01-01"})
    assert html.status_code == 200 and "facets-overview" in html.text
    assert html.headers["content-security-policy"] == "sandbox allow-scripts"
    first = client.get("/pipeline-pages/data", params={"pipeline": "taxi_tips", "run_id": runs["runs"]["2016-12-25"]})
    assert "Statistics of the run of 2016-12-25" in first.text and "No anomalies." in first.text
    assert 'id="no-drift"' not in page.text


def test_the_data_page_says_why_no_drift_was_measured(client, runs, first_span):
    assert pages.spans("taxi_week") == [DAY2.date().isoformat()] and first_span["validate"]["checked"]
    assert not pages.drift_history("taxi_week"), "a first span has nothing before it"
    viewer = as_user(client, "viewer")
    page = viewer.get("/pipeline-pages/data", params={"pipeline": "taxi_week"}).text
    assert "Statistics of the run of 2017-01-01" in page
    assert "No drift measured yet: a span's drift is measured against the spans before it, and no validated span had any" in page
    off = {"drift": None, "drift_block": None}
    write_pipeline(runs["root"] / "pipelines", merge(FIRST, {"validation": {"numbers": off, "categories": off, "strings": off}}))
    page = viewer.get("/pipeline-pages/data", params={"pipeline": "taxi_week"}).text
    assert "No drift measured: no feature has a drift threshold" in page and "No drift measured yet" not in page
    write_pipeline(runs["root"] / "pipelines", merge(FIRST, {"validation": {
        "numbers": off, "categories": off, "strings": off, "features": {"fare": {"drift": 0.1}}}}))
    page = viewer.get("/pipeline-pages/data", params={"pipeline": "taxi_week"}).text
    assert "No drift measured yet" in page, "one feature with its own threshold is measured"


def test_a_multiclass_model_shows_its_confusion_matrix_and_per_class_metrics_one_column_each(client, multiclass):
    counts, classes = multiclass["confusion_matrix"]["candidate"], multiclass["confusion_matrix"]["classes"]
    label = json.loads((Path(multiclass["candidate"]) / serving.LABEL_INFO).read_text())
    assert classes == label["classes"] and sorted(classes) == ["long", "medium", "short"]
    per_slice = json.loads(Path(multiclass["slices"]).read_text())
    overall = per_slice["Overall"]["candidate"]
    assert sum(map(sum, counts)) == overall["example_count"]
    assert sum(counts[i][i] for i in range(3)) / overall["example_count"] == pytest.approx(
        overall["sparse_categorical_accuracy"], abs=1e-6)
    for i, name in enumerate(classes):  # rows are actual classes: a class scored above 0.5 is the top
        # class, so the share of a row on its diagonal is at least TFMA's recall of that class
        assert counts[i][i] / sum(counts[i]) >= overall[f"recall[{name}]"] - 1e-9

    page = as_user(client, "viewer").get("/pipeline-pages/models", params={"pipeline": "taxi_trip_length"}).text
    shown = page.split('id="confusion-candidate"')[1].split("</table>")[0]
    for i, name in enumerate(classes):
        cells = "".join(f'<td class="num{" good" if j == i else ""}">{n:,.0f}</td>' for j, n in enumerate(counts[i]))
        assert f"<tr><th>{name}</th>{cells}</tr>" in shown
    assert 'id="confusion-baseline"' not in page, "a first model has no baseline"
    table = page.split('<div class="scroll"><table id="slices">')[1].split("</table>")[0]
    metrics = {m for by_model in per_slice.values() for values in by_model.values() for m in values}
    assert {f"precision[{c}]" for c in classes} <= metrics
    assert table.split("</tr>")[0].count("<th>") == len(metrics) + 1, "per-class metrics: one column each"


def test_task_instances_link_to_the_pages_of_their_run(client, runs):
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {airflow_token('viewer')}"}
    run_id = runs["runs"]["2017-01-01"]
    for task, name, page in (("validate", "Data page", "data"), ("evaluate", "Models page", "models"),
                             ("push", "Models page", "models")):
        links = client.get(f"/api/v2/dags/taxi_tips/dagRuns/{run_id}/taskInstances/{task}/links", headers=headers)
        assert links.status_code == 200, links.text
        url = links.json()["extra_links"][name]
        assert url.startswith(f"/pipeline-pages/{page}?pipeline=taxi_tips&run_id=")
        opened = client.get(url, headers=headers)
        assert opened.status_code == 200 and ("span 2017-01-01" in opened.text)
    doc = client.get("/api/v2/dags/taxi_tips/details", headers=headers).json()["doc_md"]
    assert "(/pipeline-pages/models?pipeline=taxi_tips)" in doc and "(/pipeline-pages/data?pipeline=taxi_tips)" in doc


def test_rollback_needs_edit_permission_csrf_and_confirmation_and_does_what_the_cli_does(client, runs):
    model_dir = runs["model_dir"]
    form = {"pipeline": "taxi_tips", "to": "1", "confirm": "yes"}
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from pipeline_ops.page_auth import csrf_token

    viewers = csrf_token(SimpleAuthManagerUser(username="viewer-user", role="viewer"))
    viewer = as_user(client, "viewer")
    assert viewer.post("/pipeline-pages/models/rollback", data={**form, "csrf_token": viewers}).status_code == 403
    admin = as_user(client, "admin")
    page = admin.get("/pipeline-pages/models", params={"pipeline": "taxi_tips"}).text
    assert 'action="/pipeline-pages/models/rollback"' in page and "Roll back to v1" in page and "Roll back to v2" not in page
    assert admin.post("/pipeline-pages/models/rollback", data=form).status_code == 403
    assert admin.post("/pipeline-pages/models/rollback", data={**form, "csrf_token": "forged"}).status_code == 403
    assert admin.post("/pipeline-pages/models/rollback", data={**form, "csrf_token": viewers}).status_code == 403
    token = csrf_of(page)
    unconfirmed = admin.post("/pipeline-pages/models/rollback", data={**form, "confirm": "", "csrf_token": token})
    assert "rollback not confirmed" in unconfirmed.text and serving.versions(model_dir) == [1, 2]

    done = admin.post("/pipeline-pages/models/rollback", data={**form, "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert serving.versions(model_dir) == [1, 2, 3]
    record = serving.record(model_dir, 3)
    assert record["rollback"] == {"restores": 1, "replaces": 2, "by": "admin-user"}
    assert record["run_id"] == runs["runs"]["2016-12-25"]
    assert (model_dir / "3" / "saved_model.pb").read_bytes() == (model_dir / "1" / "saved_model.pb").read_bytes()
    shown = admin.get(done.headers["location"]).text
    assert "version 3 now serves (a copy of version 1), rolled back by admin-user" in shown
    assert "restores v1, replaced v2, by admin-user" in shown
    refused = admin.post("/pipeline-pages/models/rollback", data={**form, "to": "3", "csrf_token": token})
    assert "rollback refused" in refused.text and "cannot roll back to 3" in refused.text



@pytest.fixture(scope="module")
def server(runs):
    """The real API app (UI, REST, plugins) served by uvicorn on a free port of 127.0.0.1."""
    import uvicorn
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the API server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, through its chromium-driver (`make test` installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver are missing: `make test` installs them (apt)"
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    yield browser
    browser.quit()


def screenshot(browser, name: str) -> None:
    """docs/<name>.png when SCREENSHOTS is set (how the README's screenshots are made)."""
    if os.environ.get("SCREENSHOTS"):
        browser.save_screenshot(str(settings.REPO_ROOT / "docs" / f"{name}.png"))


def test_in_a_browser_log_in_open_the_pages_from_the_nav_and_a_task_and_roll_back(server, browser, runs):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])

    def click(text: str, css: str = "a, button") -> None:
        """Click the element showing `text` once the UI has rendered it (React may re-render it first)."""
        def clicked(b):
            found = [e for e in b.find_elements(By.CSS_SELECTOR, css) if e.text == text]
            return found and (found[0].click() or True)
        wait.until(clicked)
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
        SimpleAuthManager,
    )

    password = SimpleAuthManager.get_passwords()["admin"]
    browser.get(f"{server}/auth/login/")
    username_input, password_input = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "input"))[:2]
    username_input.send_keys("admin")
    password_input.send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: b.get_cookie("_token"))

    def from_nav(name: str):
        browser.get(f"{server}/")
        click("Plugins")
        click(name, "[role=menuitem]")
        browser.switch_to.frame(wait.until(lambda b: b.find_element(By.TAG_NAME, "iframe")))
        return wait.until(lambda b: b.find_element(By.TAG_NAME, "h1")).text

    assert from_nav("Models") == "Models: taxi_tips"
    versions = browser.find_element(By.ID, "versions").text
    live = serving.latest_version(runs["model_dir"])
    assert "Signed in as admin." in browser.page_source and f"{live} (live)" in versions
    assert len(browser.find_elements(By.CSS_SELECTOR, ".charts svg")) >= 2
    browser.switch_to.default_content()
    screenshot(browser, "models-page")

    assert from_nav("Data") == "Data: taxi_tips"
    assert "payment_type" in browser.find_element(By.ID, "anomalies").text
    assert browser.find_elements(By.CSS_SELECTOR, "#statistics-window tr")
    browser.switch_to.default_content()
    screenshot(browser, "data-page")

    # the evaluate task of day 1: its "Models page" extra link opens the page for that run
    run_id = runs["runs"]["2016-12-25"]
    browser.get(f"{server}/dags/taxi_tips/runs/{run_id}/tasks/evaluate")
    click("Details")
    click("Models page", "a")
    wait.until(lambda b: "Metrics by slice (span 2016-12-25)" in b.page_source)

    # roll back to version 1 from the page: the box must be ticked, then the dialog answered
    browser.get(f"{server}/pipeline-pages/models?pipeline=taxi_tips")
    form = next(f for f in browser.find_elements(By.CSS_SELECTOR, "form.rollback")
                if f.find_element(By.NAME, "to").get_attribute("value") == "1")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert serving.latest_version(runs["model_dir"]) == live, "not submitted without the box ticked"
    form.find_element(By.NAME, "confirm").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    dialog = wait.until(expected_conditions.alert_is_present())
    assert dialog.text == "Serve version 1 of taxi_tips again, as a new version?"
    dialog.accept()
    message = wait.until(lambda b: b.find_element(By.ID, "message")).text
    assert message == f"version {live + 1} now serves (a copy of version 1), rolled back by admin"
    assert serving.record(runs["model_dir"], live + 1)["rollback"] == {"restores": 1, "replaces": live, "by": "admin"}
    assert f"{live + 1} (live)" in browser.find_element(By.ID, "versions").text


def test_in_a_browser_the_multiclass_models_page_fits_the_window(server, browser, multiclass):
    """The slice table of a multi-class model (per-class metrics) scrolls within its own box: the
    page is no wider than the window."""
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/pipeline-pages/models")
    browser.add_cookie({"name": "_token", "value": airflow_token("viewer")})
    browser.get(f"{server}/pipeline-pages/models?pipeline=taxi_trip_length")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Models: taxi_trip_length"
    page, window, box = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        " document.getElementById('slices').parentElement.getBoundingClientRect().right]")
    assert page <= window and box <= window, (page, window, box)
    assert browser.find_element(By.ID, "confusion-candidate").is_displayed()


REGRESSION_SLICES = {  # a regression pipeline's slices.json, as evaluate writes it
    "Overall": {"candidate": {"mean_squared_error": 4.0, "mean_absolute_error": 1.5, "example_count": 300.0},
                "baseline": {"mean_squared_error": 3.5, "mean_absolute_error": 1.6, "example_count": 300.0},
                "candidate - baseline": {"mean_squared_error": 0.5, "mean_absolute_error": -0.1}},
    "trip_start_hour=3": {"candidate": {"mean_squared_error": 9.25}, "baseline": {"mean_squared_error": 8.0},
                          "candidate - baseline": {"mean_squared_error": 1.25}}}


def test_metrics_tables_and_charts_follow_whatever_metrics_a_pipeline_evaluates(client, runs):
    """A regression pipeline's metrics (lower is better), as evaluate would write them for it."""
    import yaml

    path = write_pipeline(runs["root"] / "pipelines", {"name": "taxi_fare", "serving": {"model_name": "taxi_fare"}})
    raw = yaml.safe_load(path.read_text())
    raw["label"]["task"] = "regression"
    raw["evaluation"].update(metrics=["ExampleCount", "MeanSquaredError", "MeanAbsoluteError"], thresholds={
        "MeanSquaredError": {"change_direction": "lower_is_better", "change_absolute": 1.0}})
    path.write_text(yaml.safe_dump(raw))
    evaluate = settings.artifact_root() / "taxi_fare/runs/2017-01-01/evaluate"
    evaluate.mkdir(parents=True)
    (evaluate / "slices.json").write_text(json.dumps(REGRESSION_SLICES))
    (evaluate / "result.json").write_text(json.dumps({
        "blessed": False, "baseline_version": 4, "slices": str(evaluate / "slices.json"),
        "reasons": ["mean_squared_error change vs serving model = 0.5000 fails change <= -0.1"],
        "thresholds": [{"metric": "mean_squared_error", "kind": "change", "threshold": "change <= -0.1",
                        "value": 0.5, "passed": False}],
        "metrics": {k: REGRESSION_SLICES["Overall"][k] for k in ("candidate", "baseline")}}))
    page = as_user(client, "viewer").get("/pipeline-pages/models", params={"pipeline": "taxi_fare"}).text
    table = page.split('<div class="scroll"><table id="slices">')[1].split("</table>")[0]
    assert table.split("</tr>")[0] == ("<tr><th>slice</th><th>example_count</th><th>mean_absolute_error</th>"
                                       "<th>mean_squared_error</th>")
    assert '<td class="num worse" title="baseline 3.5000">4<br>+0.5000</td>' in table, "higher error is worse"
    assert '<td class="num worse" title="baseline 8">9.2500<br>+1.2500</td>' in table
    assert '<td class="num changed" title="baseline 1.6000">1.5000<br>-0.1000</td>' in table, \
        "no direction configured for MAE: marked as changed"
    assert 'id="confusion-' not in page, "a regression model has no confusion matrix"
    assert "auc" not in table
    assert page.count("<svg") == 2, "one chart per metric but the count"
    assert "mean_squared_error (change) = 0.5000 fails change &lt;= -0.1" in page
