"""Airflow plugin: the Models and Data pages (pipeline_ops/pipeline_pages.py) in the UI's nav."""

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from pipeline_ops.links import PAGES_PREFIX
from pipeline_ops.pipeline_pages import app


class PipelinePagesPlugin(AirflowPlugin):
    name = "pipeline_pages"
    fastapi_apps: ClassVar[list[dict]] = [{"app": app, "url_prefix": PAGES_PREFIX, "name": "Pipeline pages"}]
    external_views: ClassVar[list[dict]] = [{"name": "Models", "href": f"{PAGES_PREFIX}/models", "destination": "nav", "url_route": "models"},
                      {"name": "Data", "href": f"{PAGES_PREFIX}/data", "destination": "nav", "url_route": "data"}]
