"""The production push destination through the google provider's hooks, with the Google clients
faked at their boundary (no cloud here): the GCS storage client writes into a folder, the Vertex AI
ModelService/EndpointService clients record their requests. The hooks' own code runs unchanged."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from google.cloud.aiplatform_v1 import EndpointServiceClient, ModelServiceClient
from google_fakes import FakeStorageClient

from pipeline_lib.config import Vertex

PROJECT, REGION = "ml-prod", "europe-west4"


class Done:
    """A long-running operation that has finished."""

    def __init__(self, value=None):
        self.value = value

    def result(self, timeout=None):
        return self.value


class FakeModelService:
    """aiplatform_v1.ModelServiceClient: a registry of models and their versions, in memory."""

    common_location_path = staticmethod(ModelServiceClient.common_location_path)
    model_path = staticmethod(ModelServiceClient.model_path)

    def __init__(self):
        self.versions: dict[str, list] = {}  # model resource name -> versions
        self.uploads = []

    def list_models(self, request, **_):
        wanted = request["filter"].split("=", 1)[1].strip('"')
        return [SimpleNamespace(name=name) for name, vs in self.versions.items() if vs[0].display_name == wanted]

    def list_model_versions(self, request, **_):
        return self.versions[request["name"]]

    def upload_model(self, request, **_):
        self.uploads.append(request)
        name = request.get("parent_model") or f"{request['parent']}/models/{len(self.versions) + 1}"
        versions = self.versions.setdefault(name, [])
        version = SimpleNamespace(name=name, version_id=str(len(versions) + 1),
                                  display_name=request["model"]["display_name"],
                                  version_aliases=request["model"]["version_aliases"])
        versions.append(version)
        return Done(SimpleNamespace(model=name, model_version_id=version.version_id))


class FakeEndpointService:
    common_location_path = staticmethod(EndpointServiceClient.common_location_path)
    endpoint_path = staticmethod(EndpointServiceClient.endpoint_path)

    def __init__(self):
        self.deployments = []

    def deploy_model(self, request, **_):
        self.deployments.append(request)
        return Done()


@pytest.fixture
def google(monkeypatch, tmp_path):
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import (
        EndpointServiceHook,
    )
    from airflow.providers.google.cloud.hooks.vertex_ai.model_service import (
        ModelServiceHook,
    )

    # the connection production defines (credentials come from it; none are needed by the fakes)
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", '{"conn_type": "google_cloud_platform"}')
    clients = SimpleNamespace(gcs=tmp_path / "gcs", models=FakeModelService(), endpoints=FakeEndpointService())
    monkeypatch.setattr(GCSHook, "get_conn", lambda self: FakeStorageClient(clients.gcs))
    monkeypatch.setattr(ModelServiceHook, "get_model_service_client", lambda self, region=None: clients.models)
    monkeypatch.setattr(EndpointServiceHook, "get_endpoint_service_client", lambda self, region=None: clients.endpoints)
    return clients


def model_version(root: Path, version: int) -> Path:
    folder = root / "taxi_tips" / str(version)
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph %d" % version)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def test_each_pushed_version_goes_to_gcs_then_the_registry_then_the_endpoint(google, tmp_path):
    from pipeline_ops import vertex

    config = Vertex(project=PROJECT, region=REGION, artifact_root="gs://ml-models/serving",
                    serving_image="us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest", endpoint_id="42")
    v1 = vertex.publish(config, "taxi_tips", 1, model_version(tmp_path / "repo", 1), {"span": "2017-01-01"})
    model = f"projects/{PROJECT}/locations/{REGION}/models/1"
    assert v1 == {"artifact_uri": "gs://ml-models/serving/taxi_tips/1", "files": 2, "model": f"{model}@1",
                  "endpoint": "42"}
    assert (google.gcs / "ml-models" / "serving" / "taxi_tips" / "1" / "saved_model.pb").read_bytes() == b"graph 1"
    first = google.models.uploads[0]
    assert first["parent"] == f"projects/{PROJECT}/locations/{REGION}" and "parent_model" not in first
    assert first["model"]["artifact_uri"] == "gs://ml-models/serving/taxi_tips/1"
    assert first["model"]["version_aliases"] == ["v1"] and first["model"]["labels"]["span"] == "2017_01_01"

    v2 = vertex.publish(config, "taxi_tips", 2, model_version(tmp_path / "repo", 2), {"span": "2017-01-02"})
    assert v2["model"] == f"{model}@2"
    assert google.models.uploads[1]["parent_model"] == model, "a new version of the same registry model"
    deployed = google.endpoints.deployments[-1]
    assert deployed["endpoint"] == f"projects/{PROJECT}/locations/{REGION}/endpoints/42"
    assert deployed["deployed_model"]["model"] == f"{model}@2" and deployed["traffic_split"] == {"0": 100}

    retried = vertex.publish(config, "taxi_tips", 2, tmp_path / "repo" / "taxi_tips" / "2", {"span": "2017-01-02"})
    assert retried["model"] == f"{model}@2"
    assert len(google.models.uploads) == 2, "a retry finds the version its earlier try registered"


def test_without_an_endpoint_the_version_is_only_registered(google, tmp_path):
    from pipeline_ops import vertex

    config = Vertex(project=PROJECT, region=REGION, artifact_root="gs://ml-models",
                    serving_image="us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest")
    out = vertex.publish(config, "taxi_tips", 1, model_version(tmp_path, 1), {"span": "2017-01-01"})
    assert out["endpoint"] is None and google.endpoints.deployments == []
    assert out["artifact_uri"] == "gs://ml-models/taxi_tips/1"
