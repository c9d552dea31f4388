"""Launchers (config `launcher`): the exact pod a step runs in (the cncf.kubernetes provider's
KubernetesPodOperator), the exact Vertex AI custom job that trains, and what comes back from each.

No cluster and no cloud here, so the clients are faked at their boundary and the providers' own
code runs unchanged. Kubernetes: the hook hands out a fake CoreV1Api that runs a created pod's
base container as an ML-environment process, seeing only the pod's env and volumes; the operator's
execute creates, watches, reads the log, execs into the xcom sidecar and cleans up through it.
Vertex AI: CustomJobHook's job service client turns each request into the real CustomJob proto (a
wrong field fails) and plays the job's states; GCSHook's storage client is a folder."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from conftest import REPO
from google_fakes import FakeStorageClient
from pipeline_fixtures import write_pipeline

from pipeline_lib import settings
from pipeline_lib.artifacts import STEPS
from pipeline_lib.config import ConfigError, load_config

SPAN = dt.datetime(2016, 12, 1, tzinfo=dt.UTC)
IMAGE = "europe-docker.pkg.dev/acme-ml/images/taxi-ml:1.4"
PROJECT, REGION = "acme-ml", "europe-west4"
VERTEX = {"project": PROJECT, "region": REGION, "image": IMAGE + "-gpu", "staging_bucket": "gs://acme-ml-staging",
          "machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1,
          "service_account": "trainer@acme-ml.iam.gserviceaccount.com", "poll_seconds": 1}


def context_for(task, upstream: dict[str, dict], try_number: int = 1) -> dict:
    """A task's context with its upstream results as XCom, its templated inputs rendered."""
    ti = SimpleNamespace(dag_id=task.dag_id, task_id=task.task_id, try_number=try_number, map_index=-1,
                         xcom_pull=lambda task_ids, key="return_value": upstream[task_ids],
                         xcom_push=lambda key, value: None)
    context = {"logical_date": SPAN, "run_id": "scheduled__2016-12-01T00:00:00+00:00", "params": {},
               "ti": ti, "dag": task.dag, "task": task}
    task.render_template_fields(context)
    return context


@pytest.mark.parametrize("launcher, message", [
    ({"steps": {"trian": "kubernetes"}}, "steps names unknown steps ['trian']"),
    ({"steps": {"transform": "vertex"}, "vertex": VERTEX}, "vertex runs train only"),
    ({"kind": "vertex", "vertex": VERTEX}, "field 'launcher.kind': Input should be 'local' or 'kubernetes'"),
    ({"steps": {"train": "vertex"}}, "launcher.steps.train is vertex but the launcher.vertex section is missing"),
    ({"kind": "kubernetes"}, "launcher.kind is kubernetes but the launcher.kubernetes section is missing"),
    ({"kubernetes": {"image": IMAGE, "volume_claims": {}}},
     "field 'launcher.kubernetes.volume_claims': Dictionary should have at least 1 item"),
    ({"vertex": {**VERTEX, "accelerator_count": 0}},
     "field 'launcher.vertex': Value error, accelerator_type and accelerator_count (> 0) go together"),
    ({"vertex": {**VERTEX, "staging_bucket": "acme-ml-staging"}}, "field 'launcher.vertex.staging_bucket'"),
])
def test_a_bad_launcher_is_named(tmp_path, launcher, message):
    with pytest.raises(ConfigError) as err:
        load_config(write_pipeline(tmp_path, {"launcher": launcher}))
    assert message in str(err.value)


def test_steps_run_locally_unless_the_config_says_otherwise(tmp_path):
    assert {load_config(REPO / "pipelines/taxi_tips/pipeline.yaml").launcher.for_step(s) for s in STEPS} == {"local"}
    config = load_config(write_pipeline(tmp_path, {"launcher": {
        "kind": "kubernetes", "steps": {"train": "vertex", "push": "local"}, "vertex": VERTEX,
        "kubernetes": {"image": IMAGE, "volume_claims": {"ml-data": "/data"}}}}))
    assert [config.launcher.for_step(s) for s in STEPS] == [
        "kubernetes", "kubernetes", "kubernetes", "vertex", "kubernetes", "kubernetes", "local"]


# ---------------------------------------------------------------------------------------- Kubernetes

KUBE = {"image": IMAGE, "namespace": "ml", "service_account": "ml-steps",
        "volume_claims": {"ml-artifacts": "/data/artifacts", "ml-models": "/models"},
        "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        "resources": {"cpu": "2", "memory": "8Gi"}, "gpus": 1,
        "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}}


@pytest.fixture
def kube_connection(monkeypatch):
    """The Airflow connection production defines: a kubeconfig for the cluster (never contacted here)."""
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "prod",
                  "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:6443"}}],
                  "users": [{"name": "airflow", "user": {"token": "not-a-real-token"}}],
                  "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "airflow"}}]}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}))


def test_the_train_pod(tmp_path, monkeypatch, kube_connection):
    from kubernetes.client import models as k8s
    from pipeline_ops.launchers import pod_operator

    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", "/data/artifacts")
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", "/models")
    monkeypatch.setenv("PIPELINE_WAREHOUSE", "/data/warehouse.duckdb")
    config = load_config(write_pipeline(tmp_path, {"launcher": {"steps": {"train": "kubernetes"}, "kubernetes": KUBE}}))
    run = "/data/artifacts/taxi_tips/runs/2016-12-01"
    args = {"config": str(config.config_dir / "pipeline.yaml"), "output_dir": f"{run}/train",
            "transform_graph": f"{run}/transform/transform_graph",
            "examples": f"{run}/transform"}
    context = {"ti": SimpleNamespace(dag_id="taxi_tips", task_id="train", try_number=2, map_index=-1),
               "run_id": "scheduled__2016-12-01T00:00:00+00:00", "dag": None}

    pod = pod_operator(config, "train", args, "train").build_pod_request_obj(context)

    assert pod.metadata.namespace == "ml" and pod.metadata.name.startswith("train-")
    assert pod.metadata.annotations == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert {k: pod.metadata.labels[k] for k in ("dag_id", "task_id", "try_number", "airflow_kpo_in_cluster")} == {
        "dag_id": "taxi_tips", "task_id": "train", "try_number": "2", "airflow_kpo_in_cluster": "False"}
    spec = pod.spec
    assert (spec.service_account_name, spec.restart_policy) == ("ml-steps", "Never")
    assert spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    base, sidecar = spec.containers
    assert (base.name, base.image, base.command) == ("base", IMAGE, ["python", "-m", "pipeline_lib.cli"])
    assert base.args == [
        "train", "--result-file", "/airflow/xcom/return.json",
        "--config", "/opt/project/pipelines/taxi_tips/pipeline.yaml", "--output-dir", f"{run}/train",
        "--transform-graph", f"{run}/transform/transform_graph",
        "--examples", f"{run}/transform",
        "--error-file", "/dev/termination-log"]
    assert base.env == [k8s.V1EnvVar(name="PIPELINE_ARTIFACT_ROOT", value="/data/artifacts"),
                        k8s.V1EnvVar(name="PIPELINE_SERVING_ROOT", value="/models"),
                        k8s.V1EnvVar(name="PIPELINE_WAREHOUSE", value="/data/warehouse.duckdb"),
                        k8s.V1EnvVar(name="PIPELINES_DIR", value="/opt/project/pipelines")]
    assert base.resources == k8s.V1ResourceRequirements(requests={"cpu": "2", "memory": "8Gi"},
                                                        limits={"memory": "8Gi", "nvidia.com/gpu": "1"})
    assert [(m.name, m.mount_path) for m in base.volume_mounts] == [
        ("xcom", "/airflow/xcom"), ("storage-0", "/data/artifacts"), ("storage-1", "/models")]
    assert [(v.name, v.persistent_volume_claim and v.persistent_volume_claim.claim_name) for v in spec.volumes] == [
        ("xcom", None), ("storage-0", "ml-artifacts"), ("storage-1", "ml-models")]
    assert sidecar.name == "airflow-xcom-sidecar" and sidecar.volume_mounts[0].mount_path == "/airflow/xcom"


def test_a_pod_without_a_gpu_asks_for_none(tmp_path, monkeypatch, kube_connection):
    from pipeline_ops.launchers import pod_operator

    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", "/data/artifacts")
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", "/models")
    kube = {"image": IMAGE, "volume_claims": KUBE["volume_claims"]}
    config = load_config(write_pipeline(tmp_path, {"launcher": {"kind": "kubernetes", "kubernetes": kube}}))
    args = {"config": "pipelines/taxi_tips/pipeline.yaml", "output_dir": "/data/artifacts/x/validate",
            "examples": "/data/artifacts/x/ingest/examples"}
    pod = pod_operator(config, "validate", args, "validate").build_pod_request_obj(None, dry_run=True)
    base = pod.spec.containers[0]
    assert base.resources.limits is None and base.resources.requests is None
    assert pod.metadata.namespace == "default" and pod.spec.node_selector == {}


def test_a_step_whose_storage_is_not_mounted_does_not_start(tmp_path, monkeypatch):
    from pipeline_ops.launchers import pod_operator

    from pipeline_lib.launchers import StepFailed

    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", "/data/artifacts")
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", "/srv/models")
    config = load_config(write_pipeline(tmp_path, {"launcher": {"kind": "kubernetes", "kubernetes": KUBE}}))
    with pytest.raises(StepFailed, match=r"train cannot run in a pod: \['/srv/models/taxi_tips'\] not under"):
        pod_operator(config, "train", {"config": "c", "output_dir": "/data/artifacts/o"}, "train")


class FakeCoreV1Api:
    """kubernetes.client.CoreV1Api, as far as the provider's KubernetesPodOperator uses it: a
    created pod's base container runs at once, to completion, as a process of the ML environment
    that gets only the pod's env and arguments (each path in them must be on one of the pod's
    volumes, as in a real pod); its output is the container log, the files it writes at
    /airflow/xcom/return.json and /dev/termination-log are what the xcom sidecar (exec) and the
    container's termination message give back. The sidecar runs until the provider kills it."""

    def __init__(self, node: Path):
        from kubernetes.client import ApiClient

        self.api_client, self.node, self.pods, self.deleted = ApiClient(), node, {}, []

    def create_namespaced_pod(self, body, namespace, **_):
        name = body["metadata"]["name"]
        base = body["spec"]["containers"][0]
        mounts = [m["mountPath"] for m in base["volumeMounts"]]
        outside = [a for a in base["args"] if a.startswith("/") and not any(Path(a).is_relative_to(m) for m in mounts)]
        assert outside == ["/dev/termination-log"], f"paths the pod cannot see: {outside}"
        files = self.node / name
        files.mkdir(parents=True)
        seen = {"/airflow/xcom/return.json": files / "return.json", "/dev/termination-log": files / "termination"}
        env = {"PATH": os.environ["PATH"], "TF_USE_LEGACY_KERAS": "1", **{e["name"]: e["value"] for e in base["env"]}}
        assert base["command"] == ["python", "-m", "pipeline_lib.cli"]
        proc = subprocess.run([str(settings.ml_python()), "-m", "pipeline_lib.cli", *[str(seen.get(a, a)) for a in base["args"]]],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        self.pods[name] = SimpleNamespace(body=body, exit_code=proc.returncode, log=proc.stdout, files=seen,
                                          finished=dt.datetime.now(dt.UTC), sidecar_running=True)
        return self.read_namespaced_pod(name, namespace)

    def read_namespaced_pod(self, name, namespace, **_):
        from kubernetes.client import models as k8s

        pod = self.pods[name]
        message = pod.files["/dev/termination-log"].read_text() if pod.files["/dev/termination-log"].exists() else None
        base = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
            exit_code=pod.exit_code, finished_at=pod.finished, message=message))
        sidecar = k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()) if pod.sidecar_running else \
            k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=0, finished_at=pod.finished))
        phase = "Running" if pod.sidecar_running else "Failed" if pod.exit_code else "Succeeded"
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=pod.body["metadata"]["labels"]),
            spec=self.api_client._ApiClient__deserialize(pod.body["spec"], "V1PodSpec"),
            status=k8s.V1PodStatus(phase=phase, container_statuses=[
                k8s.V1ContainerStatus(name="base", state=base, image="", image_id="", ready=False, restart_count=0),
                k8s.V1ContainerStatus(name="airflow-xcom-sidecar", state=sidecar, image="", image_id="",
                                      ready=pod.sidecar_running, restart_count=0)]))

    def list_namespaced_pod(self, namespace, label_selector, **_):
        from kubernetes.client import models as k8s

        return k8s.V1PodList(items=[self.read_namespaced_pod(name, namespace) for name in self.pods])

    def list_namespaced_event(self, namespace, **_):
        from kubernetes.client import models as k8s

        return k8s.CoreV1EventList(items=[], metadata=k8s.V1ListMeta())

    def read_namespaced_pod_log(self, name, namespace, container, **_):
        stamp = self.pods[name].finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines = [f"{stamp} {line}\n".encode() for line in self.pods[name].log.splitlines()]
        return SimpleNamespace(stream=lambda amt=None, decode_content=True: iter(lines), release_conn=lambda: None)

    def connect_get_namespaced_pod_exec(self, name, namespace, container, command, **_):
        assert container == "airflow-xcom-sidecar"
        return FakeExec(self.pods[name], command)

    def patch_namespaced_pod(self, name, namespace, body, **_):
        self.pods[name].body["metadata"]["labels"].update(body["metadata"]["labels"])

    def delete_namespaced_pod(self, name, namespace, **_):
        self.deleted.append(name)


class FakeExec:
    """The websocket of an exec into the xcom sidecar: `cat` of the result file, then the kill."""

    def __init__(self, pod, command):
        self.pod, self.command = pod, command

    def run_forever(self, timeout=None):
        pass

    def read_all(self):
        from airflow.providers.cncf.kubernetes.utils.pod_manager import (
            EMPTY_XCOM_RESULT,
        )

        result = self.pod.files["/airflow/xcom/return.json"]
        return result.read_text() if result.exists() and result.stat().st_size else EMPTY_XCOM_RESULT

    def is_open(self):
        return self.pod.sidecar_running

    def write_stdin(self, text):
        assert text.startswith("kill -2"), text
        self.pod.sidecar_running = False

    def peek_stderr(self, timeout=0):
        return False

    def close(self):
        pass


@pytest.fixture
def cluster(monkeypatch, kube_connection, tmp_path):
    """The provider's hook hands out FakeCoreV1Api as its client: the operator's own execute runs."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    api = FakeCoreV1Api(tmp_path / "node")
    monkeypatch.setattr(KubernetesHook, "core_v1_client", property(lambda self: api))
    return api


def kube_pipeline(isolated, **kube) -> Path:
    claims = {"artifacts": str(isolated / "artifacts"), "models": str(isolated / "serving"),
              "warehouse": str(settings.warehouse_path().parent)}
    return write_pipeline(isolated / "pipelines", {"launcher": {"steps": {"ingest": "kubernetes"}, "kubernetes": {
        "image": IMAGE, "volume_claims": claims, "pipelines_dir": str(isolated / "pipelines"), **kube}}})


def test_ingest_in_a_pod_writes_the_examples_the_next_steps_read(isolated, cluster):
    from airflow.sdk import DAG
    from pipeline_ops.operators import IngestOperator

    with duckdb.connect(str(settings.warehouse_path())) as con:  # this warehouse, not the default one
        con.execute("DELETE FROM taxi_trips WHERE trip_start_timestamp >= ?", [int(SPAN.timestamp()) - 86400 * 30])
        (expected,) = con.execute("SELECT count(*) FROM taxi_trips WHERE trip_start_timestamp < ?",
                                  [int(SPAN.timestamp())]).fetchone()
    with DAG("taxi_tips", schedule=None):
        task = IngestOperator(config_path=str(kube_pipeline(isolated)))
    result = task.execute(context_for(task, {}))

    (name,) = cluster.pods
    assert cluster.pods[name].body["spec"]["containers"][0]["args"][:2] == ["ingest", "--result-file"]
    assert cluster.deleted == [name] and not cluster.pods[name].sidecar_running
    examples = Path(result["examples"])
    assert examples == isolated / "artifacts" / "taxi_tips" / "runs" / "2016-12-01" / "ingest"
    assert sum(result["rows"].values()) == expected
    assert all(Path(e["path"]).parent == isolated / "artifacts" / "taxi_tips" / "spans" for e in result["spans"])
    assert sum((Path(e["path"]) / "train" / "data-00000.tfrecord").stat().st_size for e in result["spans"]) > 0


def test_a_failed_step_in_a_pod_fails_the_task_with_its_own_error(isolated, cluster):
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException
    from pipeline_ops.operators import IngestOperator

    stale_image = isolated / "image-pipelines"  # an image built before this pipeline existed
    stale_image.mkdir()
    with DAG("taxi_tips", schedule=None):
        task = IngestOperator(config_path=str(kube_pipeline(isolated, pipelines_dir=str(stale_image))))
    with pytest.raises(AirflowException) as err:
        task.execute(context_for(task, {}))
    assert str(err.value).startswith("ingest failed: Pod ingest-")
    assert f"ConfigError: {stale_image}/taxi_tips/pipeline.yaml: cannot read pipeline config" in str(err.value)


# ----------------------------------------------------------------------------------------- Vertex AI

class FakeJobService:
    """aiplatform_v1.JobServiceClient: each created CustomJob (the real proto, made from the
    request) goes through `states` when polled; `container` is what its container does (it gets
    the job and the fake GCS root, and may write the step's result there)."""

    def __init__(self, gcs: Path, states: list[str], container, error: str = ""):
        self.gcs, self.states, self.container, self.error = gcs, list(states), container, error
        self.created, self.polled, self.cancelled = [], 0, []

    def create_custom_job(self, request, **_):
        from google.cloud.aiplatform_v1 import CustomJob

        job = CustomJob(request["custom_job"])  # a field CustomJob lacks raises here
        job.name = f"{request['parent']}/customJobs/{len(self.created) + 7}"
        self.created.append(request)
        self.job = job
        return job

    def get_custom_job(self, request, **_):
        from google.cloud.aiplatform_v1 import JobState

        assert request["name"] == self.job.name
        self.polled += 1
        state = self.states.pop(0)
        if state in ("SUCCEEDED", "FAILED"):
            self.container(self.job, self.gcs)
        self.job.state = JobState[f"JOB_STATE_{state}"]
        if state == "FAILED":
            self.job.error.message = self.error
        return self.job

    def cancel_custom_job(self, request, **_):
        self.cancelled.append(request["name"])


def writes_result(result: dict):
    """A container that writes `result` where the step's --result-file points (a /gcs/ path)."""
    def run(job, gcs: Path):
        args = job.job_spec.worker_pool_specs[0].container_spec.args
        target = gcs / args[args.index("--result-file") + 1].removeprefix("/gcs/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result))
    return run


@pytest.fixture
def vertex_env(monkeypatch, tmp_path):
    """Storage under Vertex's /gcs/ mount on every side; the connection production defines."""
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", "/gcs/acme-ml/artifacts")
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", "/gcs/acme-ml/serving")
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", '{"conn_type": "google_cloud_platform"}')
    return tmp_path / "gcs"


def vertex_job(monkeypatch, gcs: Path, states, container, error=""):
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook

    service = FakeJobService(gcs, states, container, error)
    monkeypatch.setattr(CustomJobHook, "get_job_service_client", lambda self, region=None: service)
    monkeypatch.setattr(GCSHook, "get_conn", lambda self: FakeStorageClient(gcs))
    return service


def train_task(tmp_path, vertex=VERTEX):
    from airflow.sdk import DAG
    from pipeline_ops.operators import TrainOperator

    with DAG("taxi_tips", schedule=None):
        task = TrainOperator(config_path=str(write_pipeline(
            tmp_path / "pipelines", {"launcher": {"steps": {"train": "vertex"}, "vertex": vertex}})))
    run = "/gcs/acme-ml/artifacts/taxi_tips/runs/2016-12-01"
    upstream = {"transform": {"transform_graph": f"{run}/transform/transform_graph",
                              "examples": f"{run}/transform"}}
    return task, upstream, run


def test_train_as_a_vertex_custom_job(monkeypatch, tmp_path, vertex_env):
    trained = {"model": "/gcs/acme-ml/artifacts/taxi_tips/runs/2016-12-01/train/model", "devices": ["GPU:0"]}
    service = vertex_job(monkeypatch, vertex_env, ["PENDING", "RUNNING", "SUCCEEDED"], writes_result(trained))
    task, upstream, run = train_task(tmp_path)

    assert task.execute(context_for(task, upstream, try_number=2)) == trained

    (request,) = service.created
    assert request["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    key = "scheduled__2016-12-01T00_00_00_00_00-try2"
    output = f"gs://acme-ml-staging/taxi_tips/train/{key}"
    assert request["custom_job"] == {
        "display_name": f"taxi_tips-train-{key}",
        "job_spec": {
            "worker_pool_specs": [{
                "machine_spec": {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                                 "accelerator_count": 1},
                "replica_count": 1,
                "container_spec": {
                    "image_uri": IMAGE + "-gpu", "command": ["python", "-m", "pipeline_lib.cli"],
                    "args": ["train", "--result-file", f"/gcs/acme-ml-staging/taxi_tips/train/{key}/result.json",
                             "--config", "/opt/project/pipelines/taxi_tips/pipeline.yaml",
                             "--output-dir", f"{run}/train", "--transform-graph", f"{run}/transform/transform_graph",
                             "--examples", f"{run}/transform"],
                    "env": [{"name": "PIPELINE_ARTIFACT_ROOT", "value": "/gcs/acme-ml/artifacts"},
                            {"name": "PIPELINE_SERVING_ROOT", "value": "/gcs/acme-ml/serving"},
                            {"name": "PIPELINE_WAREHOUSE", "value": str(settings.warehouse_path())},
                            {"name": "PIPELINES_DIR", "value": "/opt/project/pipelines"}]}}],
            "base_output_directory": {"output_uri_prefix": output},
            "service_account": "trainer@acme-ml.iam.gserviceaccount.com"}}
    assert service.polled == 3 and service.cancelled == []


def test_a_failed_training_job_fails_the_task_with_the_steps_error(monkeypatch, tmp_path, vertex_env):
    vertex_job(monkeypatch, vertex_env, ["RUNNING", "FAILED"],
               writes_result({"error": "ResourceExhaustedError: OOM when allocating tensor"}),
               error="The replica workerpool0-0 exited with a non-zero status of 1.")
    task, upstream, _ = train_task(tmp_path)
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match="^train failed: ResourceExhaustedError: OOM when allocating tensor$"):
        task.execute(context_for(task, upstream))


def test_a_job_that_fails_before_the_step_runs_fails_with_the_jobs_error(monkeypatch, tmp_path, vertex_env):
    vertex_job(monkeypatch, vertex_env, ["FAILED"], lambda job, gcs: None,
               error="Unable to pull image europe-docker.pkg.dev/acme-ml/images/taxi-ml:1.4-gpu")
    task, upstream, _ = train_task(tmp_path)
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException) as err:
        task.execute(context_for(task, upstream))
    assert str(err.value) == (f"train failed: Vertex AI custom job projects/{PROJECT}/locations/{REGION}/customJobs/7: "
                              "Unable to pull image europe-docker.pkg.dev/acme-ml/images/taxi-ml:1.4-gpu")


def test_a_killed_task_cancels_its_job(monkeypatch, tmp_path, vertex_env):
    def killed(job, gcs):
        raise KeyboardInterrupt  # the task is stopped while the job runs

    service = vertex_job(monkeypatch, vertex_env, ["RUNNING", "SUCCEEDED"], killed)
    task, upstream, _ = train_task(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        task.execute(context_for(task, upstream))
    task.on_kill()
    assert service.cancelled == [f"projects/{PROJECT}/locations/{REGION}/customJobs/7"]


def test_training_on_vertex_needs_the_storage_under_gcs(monkeypatch, tmp_path, vertex_env):
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", "/models")
    service = vertex_job(monkeypatch, vertex_env, [], None)
    task, upstream, _ = train_task(tmp_path)
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match=r"train cannot run on Vertex AI: \['/models/taxi_tips'\] not under /gcs/"):
        task.execute(context_for(task, upstream))
    assert service.created == []


def test_a_dag_with_remote_launchers_parses_without_their_providers(tmp_path):
    """The providers' operator and hooks load only when a task runs (their import would cost every parse)."""
    launcher = {"kind": "kubernetes", "steps": {"train": "vertex"}, "vertex": VERTEX, "kubernetes": KUBE}
    write_pipeline(tmp_path, {"launcher": launcher})
    code = ("import sys; from pathlib import Path; from pipeline_ops.dag_factory import build_all; "
            f"dags = build_all(Path({str(tmp_path)!r})); "
            "print(sorted(dags), [m for m in ('airflow.providers.cncf.kubernetes.operators.pod', "
            "'airflow.providers.google.cloud.hooks.vertex_ai.custom_job', 'kubernetes.client') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})
    assert out.stdout.strip().splitlines()[-1] == "['taxi_tips'] []"
