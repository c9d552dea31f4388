"""The Models and Data pages in the Airflow 3 UI: a FastAPI app that the plugin mounts at
/pipeline-pages. What they show is read by pipeline_lib.pages from the artifact store and the
model repository; this module only checks access (page_auth), renders (Jinja2, autoescaped) and
draws the charts (pygal, SVG without JavaScript). Rollback calls pipeline_lib.serving.rollback,
the function behind the rollback CLI, with the signed-in user recorded."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import pygal
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, Form, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pygal.style import CleanStyle

from pipeline_lib import pages, serving
from pipeline_lib.config import ConfigError, discover, load_config
from pipeline_ops.alerts import PAGE_PREFIX as ANOMALY_PREFIX
from pipeline_ops.links import PAGES_PREFIX as PREFIX
from pipeline_ops.page_auth import CSRF_FIELD, check_csrf, csrf_token, may, require

app = FastAPI(title="Pipeline pages", docs_url=None, redoc_url=None, openapi_url=None)
templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
templates.globals["url"] = lambda path, **query: f"{path}?{urlencode(query)}"


def page_url(page: str, pipeline: str, **query) -> str:
    return f"{PREFIX}/{page}?{urlencode({'pipeline': pipeline, **{k: v for k, v in query.items() if v}})}"


def _readable(user) -> tuple[dict, list[str]]:
    """The pipelines the user may read (name -> config) and the configs that do not load: one
    broken config does not hide the others."""
    configs, broken = {}, []
    for path in discover():
        try:
            config = load_config(path)
        except ConfigError as e:
            broken.append(" ".join(str(e).split()))
            continue
        if may(user, "GET", config.name):
            configs[config.name] = config
    return configs, broken


def _chosen(user, pipeline: str | None):
    configs, broken = _readable(user)
    if pipeline is None and configs:
        pipeline = min(configs)
    if pipeline not in configs:
        require(user, "GET", pipeline or "")  # 403 for a pipeline the user may not read ...
        raise HTTPException(404, f"no pipeline {pipeline!r}")  # ... 404 for one that does not exist
    return configs, broken, configs[pipeline]


def span_of_run(pipeline: str, run_id: str) -> str | None:
    """A run's span, as the operators compute it: its logical date, else the time it ran for."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == pipeline, DagRun.run_id == run_id))
    return (run.logical_date or run.run_after).date().isoformat() if run else None


def line_chart(title: str, x_labels: list[str], series: dict[str, list]) -> Markup:
    chart = pygal.Line(title=title, x_labels=x_labels, js=[], height=260, width=560, explicit_size=True,
                       style=CleanStyle, x_label_rotation=30, legend_at_bottom=True, allow_interruptions=True,
                       dots_size=3)
    for name, values in series.items():
        chart.add(name, values)
    return Markup(chart.render(is_unicode=True, disable_xml_declaration=True))


def _snake(name: str) -> str:
    """A metric class's name as TFMA names its values: AUC -> auc, MeanSquaredError -> mean_squared_error."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


def directions(config) -> dict[str, str]:
    """TFMA metric name -> the config's change direction (e.g. AUC -> auc: higher_is_better)."""
    return {_snake(name): t.change_direction for name, t in config.evaluation.thresholds.items() if t.change_direction}


def _render(name: str, **values) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(prefix=PREFIX, anomaly_prefix=ANOMALY_PREFIX, **values))


@app.get("/models", response_class=HTMLResponse)
def models(user: GetUserDep, pipeline: str | None = None, run_id: str | None = None, span: str | None = None,
           message: str | None = Query(default=None, alias="msg")):
    configs, broken, config = _chosen(user, pipeline)
    if run_id and not span:
        span = span_of_run(config.name, run_id)
    evaluated = pages.evaluations(config.name)
    slices_span, per_slice = pages.slices_of(evaluated, span)
    metrics, rows = pages.slice_table(per_slice)
    history = pages.metric_history(evaluated)
    charts = [line_chart(metric, h["spans"], {"candidate": h["candidate"], "baseline (serving)": h["baseline"]})
              for metric, h in history.items()]
    return _render("models.html", user=user.get_name(), pipelines=sorted(configs), broken=broken, config=config,
                   versions=pages.served_versions(config.serving.model_dir()), evaluated=evaluated,
                   span=span, slices_span=slices_span, metrics=metrics, rows=rows, charts=charts,
                   confusion=pages.confusion_of(evaluated, slices_span),
                   directions=directions(config), may_edit=may(user, "PUT", config.name),
                   csrf_field=CSRF_FIELD, csrf=csrf_token(user), message=message)


@app.post("/models/rollback")
def rollback(user: GetUserDep, pipeline: str = Form(), to: int = Form(), confirm: str | None = Form(default=None),
             token: str | None = Form(default=None, alias=CSRF_FIELD)):
    """Serve version `to` again as a new version (pipeline_lib.serving.rollback), recorded as done
    by the signed-in user; needs edit permission on the pipeline's DAG, the form's CSRF token and
    the confirmation box ticked."""
    _, _, config = _chosen(user, pipeline)
    require(user, "PUT", pipeline)
    check_csrf(user, token)
    if confirm != "yes":
        message = "rollback not confirmed: tick the confirmation box"
    else:
        try:
            version, _ = serving.rollback(config.serving.model_dir(), to, by=user.get_name())
            message = f"version {version} now serves (a copy of version {to}), rolled back by {user.get_name()}"
        except ValueError as e:
            message = f"rollback refused: {e}"
    return RedirectResponse(page_url("models", pipeline, msg=message), status_code=303)


def _tracked(pipeline: str, span: str) -> dict[tuple[str, str], dict]:
    """(feature, kind) -> the tracker's record of the anomalies seen in this span."""
    from pipeline_ops.anomaly_ops import tracker

    return {(a["feature"], a["kind"]): a for a in tracker().list(pipeline=pipeline)
            if any(r["span"] == span for r in a["runs"])}


@app.get("/data", response_class=HTMLResponse)
def data(user: GetUserDep, pipeline: str | None = None, span: str | None = None, run_id: str | None = None):
    configs, broken, config = _chosen(user, pipeline)
    spans = pages.spans(config.name)
    if run_id and not span:
        span = span_of_run(config.name, run_id)
    span = span or (spans[-1] if spans else None)
    if span and span not in spans:
        raise HTTPException(404, f"no span {span} of pipeline {config.name}")
    views = pages.data_views(config.name, span) if span else None
    tracked = _tracked(config.name, span) if span else {}
    drift = [line_chart(name, h["spans"], {"distance": h["value"], "threshold": h["threshold"]})
             for name, h in pages.drift_history(config.name).items()]
    return _render("data.html", user=user.get_name(), pipelines=sorted(configs), broken=broken, config=config,
                   spans=spans, span=span, views=views, tracked=tracked, drift=drift,
                   drift_checked=pages.drift_checked(config.validation))


@app.get("/data/statistics.html")
def statistics_html(user: GetUserDep, pipeline: str, span: str):
    """TFDV's own Facets Overview of the span's splits, as validate wrote it. Sandboxed: its
    scripts run without access to this origin (and so to the user's session)."""
    _chosen(user, pipeline)
    if span not in pages.spans(pipeline) or not pages.statistics_html(pipeline, span).is_file():
        raise HTTPException(404, f"no TFDV statistics view for {pipeline} span {span}")
    return FileResponse(pages.statistics_html(pipeline, span), media_type="text/html",
                        headers={"Content-Security-Policy": "sandbox allow-scripts"})
