"""Airflow plugin: the anomaly tracker's page (pipeline_ops/anomaly_ui.py) in the UI's nav."""

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from pipeline_ops.alerts import PAGE_PREFIX
from pipeline_ops.anomaly_ui import app


class AnomalyTrackerPlugin(AirflowPlugin):
    name = "anomaly_tracker"
    fastapi_apps: ClassVar[list[dict]] = [{"app": app, "url_prefix": PAGE_PREFIX, "name": "Anomaly tracker"}]
    external_views: ClassVar[list[dict]] = [{"name": "Data anomalies", "href": f"{PAGE_PREFIX}/", "destination": "nav",
                       "url_route": "anomalies"}]
