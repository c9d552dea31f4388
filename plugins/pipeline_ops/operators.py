"""One operator per pipeline step. Each builds the step's arguments, launches it in the ML
environment (where: the config's `launcher`, see launchers.py), logs its output, and returns its
JSON result as XCom; a failed step fails the task with the step's own message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from pipeline_lib import artifacts, bigquery, run_params, serving, spans
from pipeline_lib.config import load_config
from pipeline_lib.launchers import StepFailed
from pipeline_ops.launchers import launcher_for
from pipeline_ops.links import DATA_LINK, MODELS_LINK


def span_date(context) -> dt.date:
    """The run's logical date; manual runs in Airflow 3 may have none, then the time it ran for."""
    moment = context.get("logical_date") or context["dag_run"].run_after
    return moment.date()


def from_task(task_id: str, key: str) -> str:
    """A template for one field of an upstream step's result."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"


class MLStepOperator(BaseOperator):
    """Runs `python -m pipeline_lib.cli <step>` through a launcher. Its inputs are the upstream
    tasks' results (artifacts.INPUTS), templated so the UI shows the URIs each run used."""

    step: str
    template_fields: Sequence[str] = ("step_inputs",)
    ui_color = "#e8f0fe"

    def __init__(self, *, config_path: str, **kwargs):
        self.config_path = config_path
        self.step_inputs = {arg: from_task(upstream, key)
                            for arg, (upstream, key) in artifacts.INPUTS[self.step].items()}
        kwargs.setdefault("task_id", self.step)
        super().__init__(**kwargs)

    def step_args(self, context, pipeline: str) -> dict[str, str]:
        day = span_date(context)
        return {"config": self.config_path,
                "output_dir": str(artifacts.step_dir(pipeline, day, self.step)),
                **self.step_inputs, **artifacts.run_args(self.step, day, context["run_id"]),
                **run_params.step_args(self.step, context.get("params") or {})}

    def execute(self, context):
        self.launcher = launcher_for(load_config(self.config_path), self.step, context)
        try:
            return self.launcher.run(self.step, self.step_args(context, self.dag_id), log=self.log.info)
        except StepFailed as e:
            raise AirflowException(f"{self.step} failed: {e}") from None

    def on_kill(self):
        """A killed task kills its local step, deletes its pod or cancels its Vertex AI job."""
        getattr(getattr(self, "launcher", None), "on_kill", lambda: None)()


class IngestOperator(MLStepOperator):
    """A BigQuery source is read here, through the google provider's hook: the window's
    fingerprints from the table's partitions, then the rows of the spans to ingest into an Arrow
    file that the step turns into examples. Each run updates the pipeline's examples Asset (its
    outlet)."""

    step = "ingest"

    def step_args(self, context, pipeline):
        args = super().step_args(context, pipeline)
        config = load_config(self.config_path)
        if config.source.kind == "bigquery":
            params = context.get("params") or {}
            target = artifacts.run_dir(pipeline, span_date(context)) / "source" / "rows.arrow"
            planned = bigquery.extract_with_hook(config, spans.window(config, span_date(context), params.get("window_days")),
                                                 bool(params.get("reingest")), target)
            self.log.info("BigQuery %s: spans %s -> %s", config.source.table, planned, target)
            args["rows_file"] = str(target)
        return args

    def execute(self, context):
        result = super().execute(context)
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {k: result[k] for k in ("examples", "rows", "window", "ingested")}
        return result


class ValidateOperator(MLStepOperator):
    step = "validate"
    operator_extra_links = (DATA_LINK,)


class TransformOperator(MLStepOperator):
    """Spans with a blocking anomaly still open (the tracker's) stay out of the training window."""

    step = "transform"

    def step_args(self, context, pipeline):
        from pipeline_ops.anomaly_ops import tracker

        blocked = tracker().blocked_spans(pipeline)
        if blocked:
            self.log.info("left out of training, blocked by open anomalies: %s", ", ".join(blocked))
        return {**super().step_args(context, pipeline), "exclude_spans": ",".join(blocked)}


class TrainOperator(MLStepOperator):
    step = "train"


class EvaluateOperator(MLStepOperator):
    step = "evaluate"
    operator_extra_links = (MODELS_LINK,)


class InfraValidateOperator(MLStepOperator):
    step = "infra_validate"


SKIP_REASON = "skip_reason"


class PushOperator(MLStepOperator):
    """Skipped, with the reasons, when the model is not blessed or not infra-validated, or when its
    span already pushed a version: serving is untouched."""

    step = "push"
    operator_extra_links = (MODELS_LINK,)

    def execute(self, context):
        result = super().execute(context)
        vertex = load_config(self.config_path).serving.vertex
        if result["path"] and vertex:  # this span's version, new or pushed by an earlier try
            from pipeline_ops import (
                vertex as vertex_ai,  # the google provider loads only when used
            )

            path = Path(result["path"])
            result["vertex"] = vertex_ai.publish(vertex, path.parent.name, result["version"], path,
                                                 serving.record(path.parent, result["version"]))
            self.log.info("published to Vertex AI: %s", result["vertex"])
        if not result["pushed"]:
            context["ti"].xcom_push(key=SKIP_REASON, value=result["reason"])  # for the skipped-push alert
            raise AirflowSkipException(f"model not pushed, {serving.still_serving(result['version'])}: "
                                       f"{result['reason']}")
        return result


OPERATORS = (IngestOperator, ValidateOperator, TransformOperator, TrainOperator, EvaluateOperator,
             InfraValidateOperator, PushOperator)
