"""The production push destination: a version that push put in the model repository is copied to
GCS and registered in the Vertex AI Model Registry (one model per pipeline, a new model version per
push, aliased `v<N>`), then deployed to the configured endpoint, all through the google provider's
hooks. It runs on the Airflow side: API calls only, no TensorFlow.

The version is registered only after every file is in GCS, so Vertex never serves a partial copy."""

from __future__ import annotations

from pathlib import Path

from airflow.providers.google.cloud.hooks.gcs import GCSHook, _parse_gcs_url
from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import (
    EndpointServiceHook,
)
from airflow.providers.google.cloud.hooks.vertex_ai.model_service import (
    ModelServiceHook,
)


def upload_folder(gcs: GCSHook, folder: Path, uri: str) -> int:
    bucket, prefix = _parse_gcs_url(uri)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for file in files:
        gcs.upload(bucket_name=bucket, object_name=f"{prefix.rstrip('/')}/{file.relative_to(folder)}",
                   filename=str(file))
    return len(files)


def register(models: ModelServiceHook, where: dict, model_name: str, version: int, artifact_uri: str,
             vertex, record: dict) -> str:
    """The model version's resource name (`...models/ID@VERSION`); registered once, so a retried
    task finds the version its earlier try registered (by its alias `v<N>`)."""
    existing = list(models.list_models(**where, filter=f'display_name="{model_name}"'))
    parent = existing[0].name.rpartition("/")[-1] if existing else None
    if parent:
        for known in models.list_model_versions(**where, model_id=parent):
            if f"v{version}" in known.version_aliases:
                return f"{known.name}@{known.version_id}"
    model = {"display_name": model_name, "artifact_uri": artifact_uri,
             "container_spec": {"image_uri": vertex.serving_image},
             "version_aliases": [f"v{version}"],
             "labels": {"pipeline_version": str(version), "span": str(record.get("span", "")).replace("-", "_")}}
    uploaded = models.upload_model(**where, model=model, parent_model=parent).result(timeout=vertex.timeout_s)
    return f"{uploaded.model}@{uploaded.model_version_id}"


def publish(vertex, model_name: str, version: int, folder: Path, record: dict) -> dict:
    """Mirror `folder` (model version `version`) to Vertex AI; returns what it points at."""
    where = {"project_id": vertex.project, "region": vertex.region}
    artifact_uri = f"{vertex.artifact_root.rstrip('/')}/{model_name}/{version}"
    files = upload_folder(GCSHook(gcp_conn_id=vertex.gcp_conn_id), folder, artifact_uri)
    resource = register(ModelServiceHook(gcp_conn_id=vertex.gcp_conn_id), where, model_name, version,
                        artifact_uri, vertex, record)
    if vertex.endpoint_id:
        deployed = {"model": resource, "display_name": f"{model_name}-v{version}",
                    "dedicated_resources": {"machine_spec": {"machine_type": vertex.machine_type},
                                            "min_replica_count": 1, "max_replica_count": vertex.max_replicas}}
        EndpointServiceHook(gcp_conn_id=vertex.gcp_conn_id).deploy_model(
            **where, endpoint=vertex.endpoint_id, deployed_model=deployed,
            traffic_split={"0": 100}).result(timeout=vertex.timeout_s)  # "0": the model deployed now
    return {"artifact_uri": artifact_uri, "files": files, "model": resource, "endpoint": vertex.endpoint_id}
