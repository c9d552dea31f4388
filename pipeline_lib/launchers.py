"""Run a step in the ML environment and bring back its JSON result.

The Airflow side never imports TensorFlow: an operator asks a launcher to run
`python -m pipeline_lib.cli <step> ...` where the ML stack lives, and only JSON crosses back.
Here: the local launcher, and what the container launchers (plugins/pipeline_ops/launchers.py)
need to run the same command in the ML image: its arguments, environment and paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline_lib import settings


class StepFailed(RuntimeError):
    """The step ran and failed; the message is the step's own error."""


ENTRYPOINT = ["python", "-m", "pipeline_lib.cli"]  # the ML image's (docker/ml/Dockerfile)


def cli_args(step: str, args: dict[str, str], result_file: str | Path) -> list[str]:
    """`pipeline_lib.cli`'s arguments: the step, where its result goes, then its own arguments."""
    out = [step, "--result-file", str(result_file)]
    for key, value in args.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def step_command(python: Path, step: str, args: dict[str, str], result_file: Path) -> list[str]:
    return [str(python), "-m", "pipeline_lib.cli", *cli_args(step, args, result_file)]


def in_image(args: dict[str, str], pipelines_dir: str) -> dict[str, str]:
    """The step's arguments for the ML image: its config is the image's copy of the pipeline
    (`<pipelines_dir>/<pipeline folder>/pipeline.yaml`); every other path is shared storage."""
    config = Path(args["config"])
    return {**args, "config": f"{pipelines_dir.rstrip('/')}/{config.parent.name}/{config.name}"}


def image_env(pipelines_dir: str) -> dict[str, str]:
    """The settings a step in the ML image needs: the Airflow side's storage paths, the image's pipelines."""
    return {"PIPELINE_ARTIFACT_ROOT": str(settings.artifact_root()),
            "PIPELINE_SERVING_ROOT": str(settings.serving_root()),
            "PIPELINE_WAREHOUSE": str(settings.warehouse_path()),
            "PIPELINES_DIR": pipelines_dir}


def storage_paths(config, step: str) -> list[Path]:
    """What a step reads or writes beyond its config: the artifact store, the model repository and,
    for a DuckDB ingest, the warehouse. A container must see each at the same path."""
    paths = [settings.artifact_root(), config.serving.model_dir()]
    if step == "ingest" and config.source.kind == "duckdb":
        paths.append(config.source.database_path())
    return paths


def unshared(paths: list[Path], roots: list[str]) -> list[str]:
    """The paths under none of `roots` (the places a container shares with the Airflow side)."""
    return [str(p) for p in paths if not any(Path(p).is_relative_to(root) for root in roots)]


def custom_job_spec(vertex, step: str, args: dict[str, str], display_name: str, output_uri: str) -> dict:
    """A Vertex AI CustomJob (aiplatform_v1) running the step in the ML image on one machine; its
    result file goes to the job's base output directory, seen through Vertex's /gcs/ mount."""
    result_file = "/gcs/" + output_uri.removeprefix("gs://").rstrip("/") + "/result.json"
    machine = {"machine_type": vertex.machine_type}
    if vertex.accelerator_type:
        machine.update(accelerator_type=vertex.accelerator_type, accelerator_count=vertex.accelerator_count)
    container = {"image_uri": vertex.image, "command": ENTRYPOINT,
                 "args": cli_args(step, in_image(args, vertex.pipelines_dir), result_file),
                 "env": [{"name": k, "value": v} for k, v in image_env(vertex.pipelines_dir).items()]}
    job_spec = {"worker_pool_specs": [{"machine_spec": machine, "replica_count": 1, "container_spec": container}],
                "base_output_directory": {"output_uri_prefix": output_uri}}
    if vertex.service_account:
        job_spec["service_account"] = vertex.service_account
    return {"display_name": display_name, "job_spec": job_spec}


class LocalLauncher:
    """The ML venv's python as a subprocess (the local default). The result carries the step
    process's wall time and peak memory under `launch`, so XCom (and the benchmark) show them."""

    def __init__(self, python: Path | None = None, env: dict[str, str] | None = None):
        self.python = Path(python or settings.ml_python())
        self.env = env or {}

    def run(self, step: str, args: dict[str, str], log: Callable[[str], None] = print) -> dict:
        if not self.python.exists():
            raise StepFailed(f"ML environment not found at {self.python} (run `make envs`)")
        with tempfile.TemporaryDirectory(prefix=f"{step}-") as tmp:
            result_file = Path(tmp) / "result.json"
            cmd = step_command(self.python, step, args, result_file)
            log("launching: " + " ".join(cmd))
            env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1", **self.env}
            env.pop("PYTHONPATH", None)  # the Airflow env's paths must not leak into the ML env
            start = time.perf_counter()
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=env, bufsize=1) as proc:
                for line in proc.stdout:
                    log(line.rstrip("\n"))
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
            launch = {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": result.pop("peak_rss_mib", None)}
            log(f"{step} ran {launch['seconds']:.1f} s, peak RSS {launch['peak_rss_mib']} MiB")
        if proc.returncode != 0 or "error" in result:
            raise StepFailed(result.get("error") or f"step {step} exited with {proc.returncode}")
        return {**result, "launch": launch}
