"""Where a step runs, per the config's `launcher` section: the ML environment next to the worker
(pipeline_lib's LocalLauncher), a pod (the cncf.kubernetes provider's KubernetesPodOperator) or,
for train, a Vertex AI custom job (the google provider's CustomJobHook). Each runs the same
`python -m pipeline_lib.cli <step> ...` and returns the step's JSON result, so task ids, XCom and
the UI are the same whichever runs a step. A provider is imported only when a step uses it (its
import would cost every DAG parse)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from airflow.sdk.exceptions import AirflowException

from pipeline_lib import launchers
from pipeline_lib.launchers import LocalLauncher, StepFailed

XCOM_RESULT = "/airflow/xcom/return.json"  # where the provider's xcom sidecar reads the result
TERMINATION_LOG = "/dev/termination-log"  # Kubernetes reports it as the container's termination message


def launcher_for(config, step: str, context):
    kind = config.launcher.for_step(step)
    if kind == "kubernetes":
        return PodLauncher(config, context)
    if kind == "vertex":
        return VertexJobLauncher(config, context)
    return LocalLauncher()


def checked(step: str, result: dict) -> dict:
    if "error" in result:
        raise StepFailed(result["error"])
    return result


def pod_operator(config, step: str, args: dict[str, str], task_id: str):
    """The KubernetesPodOperator that runs the step in the ML image; the shared storage must be on
    the mounted claims (else the pod would write where nobody reads)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    kube = config.launcher.kubernetes
    missing = launchers.unshared(launchers.storage_paths(config, step), list(kube.volume_claims.values()))
    if missing:
        raise StepFailed(f"{step} cannot run in a pod: {missing} not under any of launcher.kubernetes."
                         f"volume_claims {kube.volume_claims}")
    requests = kube.resources.model_dump(exclude_none=True)
    limits = {"memory": kube.resources.memory} if kube.resources.memory else {}
    if kube.gpus:
        limits["nvidia.com/gpu"] = str(kube.gpus)
    claims = list(kube.volume_claims.items())
    return KubernetesPodOperator(
        task_id=task_id, kubernetes_conn_id=kube.kubernetes_conn_id, namespace=kube.namespace,
        image=kube.image, cmds=launchers.ENTRYPOINT,
        arguments=[*launchers.cli_args(step, launchers.in_image(args, kube.pipelines_dir), XCOM_RESULT),
                   "--error-file", TERMINATION_LOG],
        env_vars=launchers.image_env(kube.pipelines_dir),
        container_resources=k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None),
        volumes=[k8s.V1Volume(name=f"storage-{i}", persistent_volume_claim=
                              k8s.V1PersistentVolumeClaimVolumeSource(claim_name=claim))
                 for i, (claim, _) in enumerate(claims)],
        volume_mounts=[k8s.V1VolumeMount(name=f"storage-{i}", mount_path=path) for i, (_, path) in enumerate(claims)],
        service_account_name=kube.service_account, node_selector=kube.node_selector, annotations=kube.annotations,
        startup_timeout_seconds=kube.startup_timeout_seconds,
        do_xcom_push=True, get_logs=True, log_pod_spec_on_failure=False, on_finish_action="delete_pod")


class PodLauncher:
    """The step as a pod: the provider's operator runs inside our task (same task id, its pod
    labelled with our run), its xcom sidecar brings the result back; a failed step fails the pod
    and the provider's error carries the step's own message (the termination message)."""

    def __init__(self, config, context):
        self.config, self.context, self.operator = config, context, None

    def run(self, step: str, args: dict[str, str], log: Callable[[str], None] = print) -> dict:
        self.operator = pod_operator(self.config, step, args, self.context["ti"].task_id)
        log(f"launching pod: {self.config.launcher.kubernetes.image} {' '.join(self.operator.arguments)}")
        try:
            return checked(step, self.operator.execute(self.context))
        except AirflowException as e:
            raise StepFailed(str(e)) from None

    def on_kill(self):
        if self.operator:
            self.operator.on_kill()


def run_key(context) -> str:
    """One name per task try (run ids hold ':' and '+')."""
    ti = context["ti"]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', context['run_id'])}-try{ti.try_number}"


class VertexJobLauncher:
    """The step as a Vertex AI custom job: created and polled through the provider's CustomJobHook
    (credentials from the Airflow connection); the step writes its result under the job's output
    directory (through Vertex's /gcs/ mount), read back with GCSHook. A failed step fails the task
    with its own error, a job that failed before writing one with the job's error."""

    def __init__(self, config, context):
        self.config, self.context, self.job_id = config, context, None

    def run(self, step: str, args: dict[str, str], log: Callable[[str], None] = print) -> dict:
        from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import (
            CustomJobHook,
        )

        vertex = self.config.launcher.vertex
        missing = launchers.unshared(launchers.storage_paths(self.config, step), ["/gcs"])
        if missing:
            raise StepFailed(f"{step} cannot run on Vertex AI: {missing} not under /gcs/<bucket>/ (set "
                             "PIPELINE_ARTIFACT_ROOT and PIPELINE_SERVING_ROOT to Cloud Storage FUSE paths)")
        name = f"{self.context['ti'].dag_id}-{step}-{run_key(self.context)}"
        output_uri = f"{vertex.staging_bucket.rstrip('/')}/{self.context['ti'].dag_id}/{step}/{run_key(self.context)}"
        spec = launchers.custom_job_spec(vertex, step, args, name, output_uri)
        hook, where = CustomJobHook(gcp_conn_id=vertex.gcp_conn_id), {"project_id": vertex.project, "region": vertex.region}
        job = hook.create_custom_job(**where, custom_job=spec)
        self.job_id = hook.extract_custom_job_id(job.name)
        log(f"Vertex AI custom job {job.name}: {step} on {vertex.machine_type}"
            + (f" with {vertex.accelerator_count} x {vertex.accelerator_type}" if vertex.accelerator_type else ""))
        job_error = None
        try:
            hook.wait_for_custom_job(**where, custom_job_id=self.job_id, poll_interval=vertex.poll_seconds)
        except RuntimeError as e:  # failed, cancelled, expired: the job's own error
            job_error = f"Vertex AI custom job {job.name}: {e}"
        result = read_result(vertex.gcp_conn_id, f"{output_uri}/result.json")
        if result is None:
            raise StepFailed(job_error or f"{step} wrote no result to {output_uri}/result.json")
        if job_error and "error" not in result:
            raise StepFailed(job_error)
        return checked(step, result)

    def on_kill(self):
        if self.job_id:
            from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import (
                CustomJobHook,
            )

            vertex = self.config.launcher.vertex
            CustomJobHook(gcp_conn_id=vertex.gcp_conn_id).cancel_custom_job(
                project_id=vertex.project, region=vertex.region, custom_job=self.job_id)


def read_result(gcp_conn_id: str, uri: str) -> dict | None:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook, _parse_gcs_url
    from google.api_core.exceptions import NotFound

    try:
        return json.loads(GCSHook(gcp_conn_id=gcp_conn_id).download(*_parse_gcs_url(uri)))
    except NotFound:
        return None
