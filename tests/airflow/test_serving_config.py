"""TF Serving's model config (pipeline_lib.serving.model_config): one entry per pipeline whose
model has a version, read back with TF Serving's own ModelServerConfig protobuf (the ML env's
tensorflow-serving-api); one pipeline's broken config never leaves out another's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pipeline_fixtures import write_pipeline

from pipeline_lib import serving, settings

EXAMPLES = ("taxi_fare", "taxi_tips", "taxi_trip_length")
PARSE = """import json, sys
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
config = text_format.Parse(sys.stdin.read(), model_server_config_pb2.ModelServerConfig())
print(json.dumps([[m.name, m.base_path, m.model_platform] for m in config.model_config_list.config]))"""


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """The three example pipelines in a private pipelines folder; yields the private serving root."""
    monkeypatch.setenv("PIPELINES_DIR", str(tmp_path / "pipelines"))
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", str(tmp_path / "serving"))
    for name in EXAMPLES:
        write_pipeline(tmp_path / "pipelines", source=settings.REPO_ROOT / "pipelines" / name)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"stands in for the exported model")
    return tmp_path


def push(root, name: str) -> None:
    serving.publish(root / "model", root / "serving" / name, {"span": "2017-01-01"})


def served(text: str) -> dict[str, tuple[str, str]]:
    """The config's models as TF Serving reads them: name -> (base_path, platform)."""
    parsed = subprocess.run([str(settings.ml_python()), "-c", PARSE], input=text, capture_output=True,
                            text=True, check=True)
    return {name: (base, platform) for name, base, platform in json.loads(parsed.stdout)}


def test_each_pipeline_joins_the_config_at_its_first_version(repository):
    root = repository / "serving"
    assert served(serving.model_config()) == {}, "no version yet: TF Serving would wait for it"
    push(repository, "taxi_tips")
    push(repository, "taxi_fare")
    assert served(serving.model_config()) == {name: (str(root / name), "tensorflow") for name in ("taxi_fare", "taxi_tips")}
    push(repository, "taxi_trip_length")
    assert served(serving.model_config()) == {name: (str(root / name), "tensorflow") for name in EXAMPLES}


def test_a_broken_config_leaves_out_only_its_own_model(repository):
    for name in EXAMPLES:
        push(repository, name)
    broken = repository / "pipelines" / "taxi_trip_length" / "pipeline.yaml"
    broken.write_text(broken.read_text() + "scheduel: '@daily'\n")  # a typo: no such field
    command = subprocess.run([sys.executable, "-m", "pipeline_lib.serving", "model-config"],
                             capture_output=True, text=True, check=False)
    assert command.returncode == 0, command.stderr
    assert f"not served: {broken}: invalid pipeline config" in command.stderr
    assert "scheduel" in command.stderr
    written = repository / "serving" / serving.MODEL_CONFIG
    assert command.stdout == f"{written}:\n{written.read_text()}"
    assert served(written.read_text()).keys() == {"taxi_fare", "taxi_tips"}
