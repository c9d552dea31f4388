"""The typed pipeline config: one `pipeline.yaml` per pipeline, validated by pydantic.

A data scientist writes this file, a module with `preprocessing_fn` and a model builder, and gets
the whole pipeline. A wrong config fails when the DAG is parsed, with one message naming every
wrong field.
"""

from __future__ import annotations

import datetime as dt
from operator import attrgetter
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline_lib import settings
from pipeline_lib.artifacts import STEPS

CONFIG_FILENAME = "pipeline.yaml"


class ConfigError(ValueError):
    """A pipeline config that cannot be used; the message names the file and the field."""


class FieldError(ValueError):
    """A whole-config check's finding about one field, so the message names that field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class FieldErrors(ValueError):
    """Every finding of a check (each a FieldError), raised together so that one message lists them all."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e}" for e in errors))
        self.errors = errors


def _raise_all(errors: list[FieldError]) -> None:
    if errors:
        raise FieldErrors(errors)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Freshness(_Strict):
    """The new-data sensor before ingest: a run waits until the source holds rows from `lag_days`
    before the logical date on (BigQuery: that day's partition exists), checking every
    `poke_seconds` without holding a worker slot, and fails after `timeout_minutes`."""

    lag_days: PositiveInt = 1
    poke_seconds: PositiveInt = 300
    timeout_minutes: PositiveInt = 720


class Source(_Strict):
    """Where the rows come from and which of them belong to a run's window. `duckdb`: the local
    warehouse; `bigquery`: `table` is `project.dataset.table`, read through `gcp_conn_id`."""

    kind: Literal["duckdb", "bigquery"] = "duckdb"
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    timestamp_column: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timestamp_unit: Literal["epoch_seconds", "timestamp"] = "timestamp"
    window_days: PositiveInt = Field(description="the training window: the last spans that cover this many days")
    span_days: PositiveInt | None = Field(default=None, description=(
        "days per span, the unit that is ingested, validated and analyzed once; default: 7 for a "
        "@weekly schedule, else 1"))
    database: str | None = Field(default=None, description="DuckDB file; default: settings")
    gcp_conn_id: str = Field(default="google_cloud_default", description="bigquery: the Airflow connection")
    location: str | None = Field(default=None, description="bigquery: the dataset's location")
    partition_column: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                         description="bigquery: DATE partitioning column, e.g. _PARTITIONDATE")
    freshness: Freshness = Freshness()

    @model_validator(mode="after")
    def _bigquery_table_is_qualified(self):
        if self.kind == "bigquery" and self.table.count(".") != 2:
            raise ValueError("a bigquery table is written project.dataset.table")
        return self

    def bigquery_table(self) -> tuple[str, str, str]:
        project, dataset, table = self.table.split(".")
        return project, dataset, table

    def database_path(self) -> Path:
        return Path(self.database) if self.database else settings.warehouse_path()


class Features(_Strict):
    """Raw feature columns by kind; the preprocessing_fn and the model builder read these lists."""

    numeric: list[str] = []
    bucketized: list[str] = []
    categorical: list[str] = Field(default=[], description="small integer ids")
    vocabulary: list[str] = Field(default=[], description="strings mapped through a vocabulary")
    bucket_count: PositiveInt = 10
    vocab_size: PositiveInt = 1000
    oov_buckets: PositiveInt = 10

    def all(self) -> list[str]:
        return [*self.numeric, *self.bucketized, *self.categorical, *self.vocabulary]

    @model_validator(mode="after")
    def _distinct(self):
        names = self.all()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features listed under more than one kind: {dupes}")
        return self


TaskKind = Literal["binary", "multiclass", "regression"]


class Label(_Strict):
    """The label is computed by preprocessing_fn from raw columns that serving requests lack.
    `task` decides the model's output, loss, default metrics and serving signature: `binary`
    (a 0/1 label, one sigmoid output), `multiclass` (class ids from the label's TFT vocabulary
    named `key`, whose tokens are the class names; one softmax output per class) or `regression`
    (a number, one linear output)."""

    key: str = Field(description="transformed feature the model learns")
    raw_columns: list[str] = Field(min_length=1, description="raw inputs absent at serving")
    task: TaskKind = "binary"


class Split(_Strict):
    """Rows go to eval by a hash of the `key` columns only (default: the source's timestamp column),
    so a corrupted feature column cannot move rows between train and eval."""

    eval_percent: int = Field(default=20, ge=1, le=99)
    key: list[str] = Field(default=[], description="columns hashed to choose the split; [] = the timestamp column")


class UserModule(_Strict):
    """File (relative to the config) that may define the preprocessing_fn and the model builder;
    the platform's ready-made ones (pipeline_lib.transforms, pipeline_lib.models) stand in for
    what it does not define. A function name set here must be defined."""

    file: str
    preprocessing_fn: str = "preprocessing_fn"
    model_fn: str = "build_model"


class WarmStart(_Strict):
    """Start from the serving model's weights, for the layers whose names match `layers` (regular
    expressions, e.g. `embed_.*` for every embedding of the taxi model)."""

    enabled: bool = True
    layers: list[str] = [".*"]


class EarlyStopping(_Strict):
    """Stop when `monitor` (on the eval split, checked each epoch) stops improving; keep the best
    epoch's weights. `patience: null` turns it off."""

    monitor: str = "val_loss"
    patience: PositiveInt | None = 2
    min_delta: float = Field(default=0.0, ge=0)


class Training(_Strict):
    """`steps` in all, in `epochs` epochs: an epoch is the unit of early stopping and of the
    backups a retried task resumes from."""

    steps: PositiveInt = 1000
    epochs: PositiveInt = 4
    batch_size: PositiveInt = 64
    steps_per_execution: PositiveInt = Field(default=50, description=(
        "training steps per call into TensorFlow (the module passes it to compile): fewer Python "
        "round trips for small models, the same results"))
    learning_rate: float = Field(default=0.001, gt=0)
    hidden_units: list[PositiveInt] = [64, 32]
    seed: int = Field(default=0, description="weights and shuffling repeat from run to run")
    model: Literal["wide_and_deep", "dnn"] = Field(default="wide_and_deep", description=(
        "the platform's model (pipeline_lib.models) when the module defines no model builder"))
    warm_start: WarmStart = WarmStart()
    early_stopping: EarlyStopping = EarlyStopping()


TRIVIAL = "trivial"
# the metrics whose bound may be `trivial`, and which bound: the trivial model's score on the eval
# rows (AUC: chance; accuracy: the majority class's share; MSE: the label's variance), passed by a
# margin that sampling noise does not explain (pipeline_lib.steps.evaluate.trivial_bounds)
TRIVIAL_BOUNDS = {"AUC": "lower_bound", "BinaryAccuracy": "lower_bound",
                  "SparseCategoricalAccuracy": "lower_bound", "MeanSquaredError": "upper_bound"}


class Threshold(_Strict):
    """A value threshold (lower/upper bound) and/or a change threshold against the serving model.
    A bound `trivial` is computed from the eval rows: the model must beat the trivial one
    (TRIVIAL_BOUNDS)."""

    lower_bound: float | Literal["trivial"] | None = None
    upper_bound: float | Literal["trivial"] | None = None
    change_direction: Literal["higher_is_better", "lower_is_better"] | None = None
    change_absolute: float | None = None
    change_relative: float | None = Field(default=None, description="a fraction of the serving model's value")

    @model_validator(mode="after")
    def _something_to_check(self):
        if (self.change_direction is None) != (self.change_absolute is None and self.change_relative is None):
            raise ValueError("change_direction goes with change_absolute or change_relative")
        if self.lower_bound is None and self.upper_bound is None and self.change_direction is None:
            raise ValueError("a threshold needs a bound or a change threshold")
        return self


# TFMA metric class names that mean something for each task kind; multi-class `Precision` and
# `Recall` are computed per class (TFMA's class binarization) and averaged (`evaluation.average`).
TASK_METRICS: dict[str, list[str]] = {
    "binary": ["ExampleCount", "BinaryAccuracy", "AUC", "AUCPrecisionRecall", "Precision", "Recall",
               "BinaryCrossentropy", "MeanLabel", "MeanPrediction", "Calibration"],
    "multiclass": ["ExampleCount", "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
                   "Precision", "Recall", "MultiClassConfusionMatrixPlot"],
    "regression": ["ExampleCount", "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
                   "MeanLabel", "MeanPrediction"],
}
# what a config without `evaluation.metrics` / `evaluation.thresholds` is judged on: better than the
# trivial model, and no worse than the serving model
DEFAULT_METRICS = {
    "binary": ["ExampleCount", "BinaryAccuracy", "AUC"],
    "multiclass": ["ExampleCount", "SparseCategoricalAccuracy", "Precision", "Recall"],
    "regression": ["ExampleCount", "MeanSquaredError", "MeanAbsoluteError"],
}
DEFAULT_THRESHOLDS = {
    "binary": {"AUC": Threshold(lower_bound=TRIVIAL, change_direction="higher_is_better", change_absolute=-0.01)},
    "multiclass": {"SparseCategoricalAccuracy": Threshold(lower_bound=TRIVIAL, change_direction="higher_is_better",
                                                          change_absolute=-0.01)},
    "regression": {"MeanSquaredError": Threshold(upper_bound=TRIVIAL, change_direction="lower_is_better",
                                                 change_relative=0.02)},
}


class Evaluation(_Strict):
    """TFMA metrics (class names), slices (feature lists) and the thresholds that bless a model.
    Metrics and thresholds default per `label.task` (DEFAULT_METRICS, DEFAULT_THRESHOLDS).
    The candidate is judged on the eval split of the newest spans that hold `recent_rows` eval
    rows together (null: of the whole window)."""

    recent_rows: PositiveInt | None = 20_000

    metrics: list[str] | None = Field(default=None, min_length=1)
    slices: list[list[str]] = []
    thresholds: dict[str, Threshold] | None = None
    average: Literal["macro", "micro", "weighted"] = Field(
        default="macro", description="multiclass: how per-class Precision/Recall make one number")
    top_k: list[PositiveInt] = Field(default=[], description="multiclass: also Precision/Recall of the top k classes")

    def for_task(self, task: str) -> Evaluation:
        """This section with the task's defaults filled in and every metric checked against it."""
        metrics = self.metrics or DEFAULT_METRICS[task]
        thresholds = DEFAULT_THRESHOLDS[task] if self.thresholds is None else self.thresholds
        errors = []
        for field, names in (("evaluation.metrics", metrics), ("evaluation.thresholds", list(thresholds))):
            unfit = [m for m in names if m not in TASK_METRICS[task]]
            if unfit:
                errors.append(FieldError(field, f"{unfit} do not fit a {task} label (label.task: {task}); "
                                         f"{task} metrics are {TASK_METRICS[task]}"))
        unknown = sorted(set(thresholds) - set(metrics))
        if unknown:
            errors.append(FieldError("evaluation.thresholds", f"names metrics not in `metrics`: {unknown}"))
        if self.top_k and task != "multiclass":
            errors.append(FieldError("evaluation.top_k", "is for multiclass labels (label.task)"))
        errors += [FieldError(f"evaluation.thresholds.{name}.{side}", f"`{TRIVIAL}` is a bound of "
                              f"{', '.join(f'{m} ({b})' for m, b in TRIVIAL_BOUNDS.items())} only")
                   for name, threshold in thresholds.items() for side in ("lower_bound", "upper_bound")
                   if getattr(threshold, side) == TRIVIAL and TRIVIAL_BOUNDS.get(name) != side]
        _raise_all(errors)
        return self.model_copy(update={"metrics": metrics, "thresholds": thresholds})


class InfraValidation(_Strict):
    """The candidate must answer `requests` single-example requests and `batch_requests` of
    `batch_size` examples through every signature it exports, each output shaped as the label's
    task says (read from the model and its label vocabulary); optionally with the single requests'
    p99 latency under `max_p99_ms`."""

    requests: PositiveInt = 100
    batch_requests: PositiveInt = 20
    batch_size: PositiveInt = 100
    max_p99_ms: float | None = Field(default=None, gt=0)


class Vertex(_Strict):
    """Production: each pushed version is also copied under `artifact_root` (gs://...) and
    registered as a version of one Vertex AI model, then deployed to `endpoint_id` if set."""

    project: str
    region: str
    artifact_root: str = Field(pattern=r"^gs://[^/]+")
    serving_image: str = Field(description="a Vertex prebuilt TF serving container, e.g. "
                               "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest")
    endpoint_id: str | None = None
    machine_type: str = "n1-standard-2"
    max_replicas: PositiveInt = 1
    gcp_conn_id: str = "google_cloud_default"
    timeout_s: PositiveInt = 1800


class Serving(_Strict):
    model_name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    root: str | None = Field(default=None, description="model repository; default: settings")
    vertex: Vertex | None = None

    def model_dir(self) -> Path:
        return Path(self.root or settings.serving_root()) / self.model_name


class Dataflow(_Strict):
    """The Beam steps (validate, transform, evaluate) on Google Cloud Dataflow through Beam's
    DataflowRunner; the workers run the ML image, so they hold the same libraries as the steps."""

    project: str
    region: str
    temp_location: str = Field(pattern=r"^gs://")
    sdk_container_image: str
    machine_type: str = "n1-standard-4"
    max_num_workers: PositiveInt = 10
    service_account_email: str | None = None
    subnetwork: str | None = None


class Beam(_Strict):
    """Runner options. `direct_running_mode: auto` picks in-process under `multi_process_min_rows`
    (worker start-up costs ~14 s per pipeline here) and multi-process above it."""

    direct_running_mode: Literal["auto", "in_memory", "multi_threading", "multi_processing"] = "auto"
    direct_num_workers: int = Field(default=0, ge=0, description="0: one per CPU")
    multi_process_min_rows: PositiveInt = 200_000
    batch_size: int = Field(default=8192, ge=0, description=(
        "rows per Arrow batch that TFDV, TFT and TFMA read; 0: Beam's dynamic batching (1 to 1,000 rows)"))
    pipeline_args: list[str] = Field(default=[], description="more Beam options, appended as given")
    dataflow: Dataflow | None = Field(default=None, description="run the Beam steps on Dataflow")


class Resources(_Strict):
    """A step pod's requests (`cpu`, `memory`); memory is its limit too (no CPU limit, no throttling)."""

    cpu: str | None = None
    memory: str | None = None


class KubernetesLaunch(_Strict):
    """Steps as pods running the ML image, through the cncf.kubernetes provider's
    KubernetesPodOperator. Each PersistentVolumeClaim in `volume_claims` (name -> mount path) is
    mounted at the path where the Airflow workers see it, so the artifact store and the model
    repository have the same paths in the pod and on the Airflow side."""

    image: str
    namespace: str = "default"
    volume_claims: dict[str, str] = Field(min_length=1, description="PersistentVolumeClaim -> mount path")
    service_account: str | None = None
    resources: Resources = Resources()
    gpus: int = Field(default=0, ge=0, description="nvidia.com/gpu limit")
    node_selector: dict[str, str] = {}
    annotations: dict[str, str] = Field(default={}, description='e.g. gke-gcsfuse/volumes: "true" for a bucket claim')
    kubernetes_conn_id: str = Field(default="kubernetes_default", description="the Airflow connection")
    pipelines_dir: str = Field(default="/opt/project/pipelines", description="the pipelines folder in the image")
    startup_timeout_seconds: PositiveInt = 600


class VertexJob(_Strict):
    """Training as a Vertex AI custom job (GPUs) running the ML image, through the google provider.
    Vertex mounts Cloud Storage buckets at /gcs/<bucket>: with the artifact store and the model
    repository under /gcs/ everywhere, the job reads and writes the same paths as the other steps.
    The step's result comes back through `staging_bucket` (the job's base output directory)."""

    project: str
    region: str
    image: str = Field(description="the ML image built with ML_VARIANT=gpu for accelerators")
    staging_bucket: str = Field(pattern=r"^gs://[^/]+")
    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = Field(default=None, description="e.g. NVIDIA_TESLA_T4")
    accelerator_count: int = Field(default=0, ge=0)
    service_account: str | None = None
    gcp_conn_id: str = "google_cloud_default"
    pipelines_dir: str = Field(default="/opt/project/pipelines", description="the pipelines folder in the image")
    poll_seconds: PositiveInt = 60

    @model_validator(mode="after")
    def _accelerator_type_and_count_go_together(self):
        if (self.accelerator_type is None) != (self.accelerator_count == 0):
            raise ValueError("accelerator_type and accelerator_count (> 0) go together")
        return self


LaunchKind = Literal["local", "kubernetes", "vertex"]


class Launcher(_Strict):
    """Where each step runs: `local` (a subprocess of the ML environment next to the Airflow
    worker), `kubernetes` (a pod) or `vertex` (a Vertex AI custom job; train only: the Beam steps
    scale out on Dataflow through `beam.dataflow`). `kind` for every step, `steps` per step."""

    kind: Literal["local", "kubernetes"] = "local"
    steps: dict[str, LaunchKind] = {}
    kubernetes: KubernetesLaunch | None = None
    vertex: VertexJob | None = None

    @model_validator(mode="after")
    def _kinds_are_usable(self):
        errors = []
        unknown = sorted(set(self.steps) - set(STEPS))
        if unknown:
            errors.append(FieldError("launcher", f"steps names unknown steps {unknown}; steps are {list(STEPS)}"))
        if any(kind == "vertex" for step, kind in self.steps.items() if step != "train"):
            errors.append(FieldError("launcher", "vertex runs train only (the Beam steps run on Dataflow: beam.dataflow)"))
        chosen = {"launcher.kind": self.kind, **{f"launcher.steps.{s}": k for s, k in self.steps.items()}}
        for field, kind in chosen.items():
            if kind != "local" and getattr(self, kind) is None:
                errors.append(FieldError("launcher", f"{field} is {kind} but the launcher.{kind} section is missing"))
        _raise_all(errors)
        return self

    def for_step(self, step: str) -> str:
        return self.steps.get(step, self.kind)


class Alerts(_Strict):
    """Where new or reopened anomalies, failed tasks and blocked pushes are announced; the secrets
    (webhook token, SMTP password) stay in the Airflow connections named here."""

    slack_conn_id: str | None = Field(default=None, description="a slackwebhook connection")
    email_to: list[str] = []
    smtp_conn_id: str = "smtp_default"
    on_push: bool = Field(default=False, description="also announce each successful push (the serving version)")
    no_push_days: PositiveInt | None = Field(default=None, description=(
        "the freshness deadline: more days than this without a model pushed is announced once, naming "
        "why (the maintenance DAG checks it daily); default: three spans"))


Severity = Literal["blocking", "warning"]
SCHEDULE_SPAN_DAYS = {"@daily": 1, "@weekly": 7}


# what a finding's kind is grouped under for its severity (other kinds: TFDV's schema checks)
KIND_GROUPS = {"DRIFT": "drift", "SKEW": "skew", "EMPTY_WINDOW": "data", "EMPTY_SPLIT": "data",
               "UNREADABLE_DATA": "data", "NO_DATA": "data", "VOLUME_DROP": "data", "VOLUME_SPIKE": "data",
               "DUPLICATE_ROWS": "data"}
DEFAULT_SEVERITY = {"schema": "blocking", "data": "blocking", "label": "blocking", "drift": "warning", "skew": "warning"}


def kind_group(kind: str) -> str:
    return "label" if kind.startswith("LABEL_") else KIND_GROUPS.get(kind, "schema")


class Graded(_Strict):
    """Drift and skew thresholds (numbers: Wasserstein distance over the inner quantiles / the
    reference's interdecile range; strings: the largest change of a value's share): past
    `drift`/`skew` a finding with the feature's severity (a warning unless set), past
    `drift_block`/`skew_block` a blocking one."""

    drift: float | None = Field(default=None, gt=0, description="against the previous spans")
    drift_block: float | None = Field(default=None, gt=0)
    skew: float | None = Field(default=None, gt=0, description="the new span vs serving-time data")
    skew_block: float | None = Field(default=None, gt=0)

    def levels(self, kind: str, fallback: Graded) -> tuple[float | None, float | None]:
        """(threshold, block level) of DRIFT or SKEW: this feature's where it sets them (an
        explicit null turns the check off), else `fallback`'s (the platform's per type)."""
        name = kind.lower()
        own = {f: getattr(self, f) for f in (name, f"{name}_block") if f in self.model_fields_set}
        if name in own and own[name] is None:
            return None, None
        return own.get(name, getattr(fallback, name)), own.get(f"{name}_block", getattr(fallback, f"{name}_block"))


class FeatureChecks(Graded):
    """One feature's drift and skew levels over the platform's for its type, and its severity:
    one for all kinds, or per kind group (schema, drift, skew, data, label) or per exact kind
    (e.g. FEATURE_TYPE_LOW_FRACTION_PRESENT)."""

    severity: Severity | dict[str, Severity] | None = None


class Volume(_Strict):
    """A checked span's rows against the median of the `validation.reference_spans` before it:
    fewer than (1 - drop) or more than (1 + spike) times it, and unlikely by chance (Poisson,
    `validation.significance`), is a VOLUME_DROP or VOLUME_SPIKE."""

    drop: float = Field(default=0.6, gt=0, lt=1)
    spike: float = Field(default=0.8, gt=0)


class Duplicates(_Strict):
    """Rows of a span that repeat an earlier row of it, whole (`key: []`) or by the `key` columns;
    more than `max_fraction` of the span's rows is a DUPLICATE_ROWS finding."""

    key: list[str] = []
    max_fraction: float = Field(default=0.01, ge=0, lt=1)


class Validation(_Strict):
    """The schema file (next to the config; inferred on the first run when absent, then curated),
    the checks of a new span (every feature's drift and skew by its type, `numbers`, `categories`
    or `strings`, over which `features` sets its own; volume; duplicates), and how long a blocked
    run waits for its anomalies to be resolved."""

    schema_file: str = "schema.pbtxt"
    # calibrated on clean taxi spans (209 weeks, 59 dense days; docs/benchmarks.md): no number
    # drifted significantly (p < 0.001), community area codes up to 0.196, strings up to 0.064
    numbers: Graded = Graded(drift=0.1, drift_block=0.3, skew=0.1, skew_block=0.3)
    categories: Graded = Field(default=Graded(drift=0.25, drift_block=0.6, skew=0.25, skew_block=0.6), description=(
        "the integer ids listed under features.categorical: compared as numbers, whose order means nothing"))
    strings: Graded = Graded(drift=0.15, drift_block=0.3, skew=0.15, skew_block=0.3)
    reference_spans: PositiveInt = Field(default=7, description="the spans before a new one that it is compared with")
    volume: Volume = Volume()
    duplicates: Duplicates = Duplicates()
    severity: dict[str, Severity] = Field(default={}, description=(
        "per kind group or exact kind, over the defaults: schema, data, label blocking; drift, skew warning"))
    features: dict[str, FeatureChecks] = {}
    significance: float = Field(default=0.001, gt=0, lt=1, description=(
        "drift/skew also needs a test (KS for numbers, chi-square for strings) below this p-value: "
        "small spans cannot alarm on noise"))
    label_shift: float = Field(default=0.1, gt=0, description=(
        "after transform: a new span's class share moved by more, or a regression label's distance "
        "(as drift), against the spans before it blocks"))
    worse_margin: float = Field(default=0.5, gt=0, description=(
        "an acknowledged/accepted drift reopens when its statistic exceeds the alerted one by this fraction"))
    serving_data: str = Field(default="serving_data/*.tfrecord",
                              description="serving-time tf.Examples; relative to the pipeline's artifact folder")
    wait_timeout_seconds: PositiveInt = 24 * 3600
    poke_interval_seconds: PositiveInt = 300

    @field_validator("severity", mode="before")
    @classmethod
    def _one_severity_is_the_schemas(cls, value):
        """`severity: blocking` (the older form) sets the schema checks' severity."""
        return {"schema": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _severity_keys_are_kinds(self):
        maps = [("validation.severity", self.severity)] + [
            (f"validation.features.{f}.severity", c.severity) for f, c in self.features.items() if isinstance(c.severity, dict)]
        errors = []
        for field, table in maps:
            unknown = sorted(k for k in table if k not in DEFAULT_SEVERITY and not k.isupper())
            if unknown:
                errors.append(FieldError(field, f"{unknown} are neither kind groups {sorted(DEFAULT_SEVERITY)} "
                                         "nor kinds (UPPER_CASE)"))
        _raise_all(errors)
        return self

    def severity_of(self, feature: str, kind: str) -> str:
        """Most specific first: the feature's (kind, group, all), then the pipeline's, then the default."""
        group = kind_group(kind)
        own = (self.features.get(feature) or FeatureChecks()).severity
        if isinstance(own, str):
            return own
        for table in (own or {}, self.severity, DEFAULT_SEVERITY):
            for key in (kind, group):
                if key in table:
                    return table[key]
        return "blocking"


class Retention(_Strict):
    """What the maintenance DAG keeps of the pipeline (pipeline_lib/retention.py): the newest run's
    window of spans plus `margin_days`, the newest `full_runs` runs whole (older ones keep their
    records), and the live serving version plus `versions` before it plus `pinned_versions`."""

    margin_days: NonNegativeInt = 7
    full_runs: PositiveInt = 7
    versions: NonNegativeInt = Field(default=5, description="rollback targets kept besides the live version")
    pinned_versions: list[PositiveInt] = []


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    owner: str = "ml-platform"
    schedule: str | None = "@daily"
    start_date: dt.date
    end_date: dt.date | None = Field(default=None, description="no scheduled runs after it")
    source: Source
    features: Features
    label: Label
    split: Split = Split()
    module: UserModule | None = Field(default=None, description="none: a config-only pipeline")
    training: Training = Training()
    evaluation: Evaluation = Field(default=Evaluation(), validate_default=True)  # filled in per label.task
    infra_validation: InfraValidation = InfraValidation()
    serving: Serving
    beam: Beam = Beam()
    launcher: Launcher = Launcher()
    alerts: Alerts = Alerts()
    validation: Validation = Validation()
    retention: Retention = Retention()
    config_dir: Path = Field(default=Path("."), exclude=True, validate_default=True)

    # The checks across sections are field validators that read the sections declared before them
    # (info.data): unlike a model validator, each runs whatever other section failed, so that a
    # config's every mistake is reported at once.

    @field_validator("source")
    @classmethod
    def _spans_fit_the_schedule(cls, source: Source, info: ValidationInfo) -> Source:
        """A run adds one span: a preset schedule fixes the span's length."""
        schedule = info.data.get("schedule")
        preset = SCHEDULE_SPAN_DAYS.get(schedule)
        if source.span_days is None:
            return source.model_copy(update={"span_days": preset or 1})
        if preset and source.span_days != preset:
            raise FieldError("source.span_days", f"is {source.span_days} but a {schedule} schedule adds a "
                             f"{preset}-day span each run: set span_days: {preset}, or the schedule to match")
        return source

    @field_validator("evaluation")
    @classmethod
    def _evaluation_fits_task(cls, evaluation: Evaluation, info: ValidationInfo) -> Evaluation:
        label = info.data.get("label")
        return evaluation.for_task(label.task) if label else evaluation

    @field_validator("config_dir")
    @classmethod
    def _what_it_names_exists(cls, config_dir: Path, info: ValidationInfo) -> Path:
        """The columns that split and validation name, the module file and the schema's features
        (unless context `check_schema` is False). On the last field, so that every section that
        validated is in info.data."""
        sections, columns = info.data, _columns_by_field(info.data)
        errors = []
        if columns is not None:
            read = {c for _, c in columns}
            errors += [FieldError(f"{name}.{attr}", f"names columns the pipeline does not read: {unknown}")
                       for name, attrs in NAMED_COLUMNS.items() if name in sections for attr in attrs
                       if (unknown := sorted(set(attrgetter(attr)(sections[name])) - read))]
        module, validation = sections.get("module"), sections.get("validation")
        if module and not (config_dir / module.file).is_file():
            errors.append(FieldError("module.file", f"no such file {config_dir / module.file}"))
        if validation and columns is not None and (info.context or {}).get("check_schema", True):
            errors += _schema_errors(config_dir / validation.schema_file, columns)
        _raise_all(errors)
        return config_dir

    def columns_by_field(self) -> list[tuple[str, str]]:
        """(config field, column) for every column the pipeline reads."""
        return _columns_by_field(dict(self))

    def raw_columns(self) -> list[str]:
        """Columns ingest reads: every feature, the label's inputs and the timestamp."""
        return list(dict.fromkeys(c for _, c in self.columns_by_field()))

    def module_path(self) -> Path | None:
        return self.config_dir / self.module.file if self.module else None

    def schema_path(self) -> Path:
        return self.config_dir / self.validation.schema_file


# the lists of columns in a section (attribute paths) that must be columns the pipeline reads
NAMED_COLUMNS = {"split": ("key",), "validation": ("features", "duplicates.key")}


def _columns_by_field(sections: dict) -> list[tuple[str, str]] | None:
    """(config field, column) for every column the pipeline reads; None unless `sections` (a
    config's, or those that validated) hold features, label and source."""
    if not {"features", "label", "source"} <= sections.keys():
        return None
    features, label, source = sections["features"], sections["label"], sections["source"]
    kinds = ("numeric", "bucketized", "categorical", "vocabulary")
    return [*((f"features.{kind}", c) for kind in kinds for c in getattr(features, kind)),
            *(("label.raw_columns", c) for c in label.raw_columns),
            ("source.timestamp_column", source.timestamp_column)]


def _schema_errors(schema: Path, columns: list[tuple[str, str]]) -> list[FieldError]:
    """The columns that the schema (if there is one yet) has no feature for."""
    if not schema.exists():
        return []
    try:
        names = schema_feature_names(schema.read_text())
    except ValueError as e:
        return [FieldError("validation.schema_file", f"{schema}: {e}")]
    return [FieldError(field, f"{column!r} has no feature in the schema {schema}")
            for field, column in columns if column not in names]


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline config"]
    for e in err.errors():
        cause = e.get("ctx", {}).get("error")
        found = cause.errors if isinstance(cause, FieldErrors) else [cause] if isinstance(cause, FieldError) else []
        if found:
            lines += [f"  field '{f.field}': {f}" for f in found]
            continue
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  field '{field}': {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, check_schema: bool = True) -> PipelineConfig:
    """Read and validate one pipeline config; raise ConfigError naming every bad field.
    `check_schema=False` leaves the columns' presence in the schema to the caller (preflight,
    which also lists the source table's columns)."""
    path = Path(path).resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read pipeline config: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a pipeline config is a mapping of fields")
    try:
        return PipelineConfig.model_validate({**raw, "config_dir": path.parent}, context={"check_schema": check_schema})
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from None


def schema_feature_names(text: str) -> set[str]:
    """The top-level feature names of a TFDV schema (protobuf text), read without the protobuf
    classes (the Airflow environment has none); ValueError for unbalanced braces or quotes.
    Validate reads the schema fully."""
    depth, block, names = 0, [], set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].strip() if '"' not in line else line.strip()
        if line.count('"') % 2:
            raise ValueError(f"line {number}: unbalanced quote")
        if line.endswith("{"):
            block.append(line[:-1].strip().rstrip(":").strip())
            depth += 1
        elif line == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"line {number}: '}}' without '{{'")
            block.pop()
        elif depth == 1 and block[-1] == "feature" and line.startswith("name:"):
            names.add(line.split(":", 1)[1].strip().strip('"'))
    if depth:
        raise ValueError("a '{' is never closed")
    return names


def discover(pipelines_dir: Path | None = None) -> list[Path]:
    """Every `<pipelines_dir>/<name>/pipeline.yaml`, sorted."""
    root = pipelines_dir or settings.pipelines_dir()
    return sorted(root.glob(f"*/{CONFIG_FILENAME}"))
