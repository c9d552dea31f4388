"""Operator extra links: buttons on a task instance in Airflow's UI that open our pages for that
task's run (Airflow 3 computes them when the task ends and keeps them in XCom)."""

from __future__ import annotations

from urllib.parse import urlencode

import attrs
from airflow.sdk import BaseOperatorLink

PAGES_PREFIX = "/pipeline-pages"  # where the plugin mounts pipeline_pages.app


@attrs.define
class PipelinePageLink(BaseOperatorLink):
    page: str  # "models" or "data"

    @property
    def name(self) -> str:
        return f"{self.page.capitalize()} page"

    @property
    def xcom_key(self) -> str:
        return f"_link_pipeline_{self.page}"

    def get_link(self, operator, *, ti_key) -> str:
        return f"{PAGES_PREFIX}/{self.page}?{urlencode({'pipeline': ti_key.dag_id, 'run_id': ti_key.run_id})}"


MODELS_LINK, DATA_LINK = PipelinePageLink("models"), PipelinePageLink("data")


def pages_doc(pipeline: str) -> str:
    """The DAG doc's pointer to the pages."""
    query = urlencode({"pipeline": pipeline})
    return (f"Where to look: the [Models page]({PAGES_PREFIX}/models?{query}) (serving versions, evaluations, "
            f"metrics by slice, rollback) and the [Data page]({PAGES_PREFIX}/data?{query}) (statistics, drift, "
            "anomalies), also in the nav; on a task instance, the *Data page* link of validate and the "
            "*Models page* link of evaluate and push open them for that run.")
