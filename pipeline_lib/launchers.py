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

from pipeline_lib import fork_server, settings


class StepFailed(RuntimeError):
    """The step ran and failed; the message is the step's own error."""


ENTRYPOINT = ["python", "-m", "pipeline_lib.cli"]  # the ML image's (docker/ml/Dockerfile)


def cli_args(step: str, args: dict[str, str], result_file: str | Path) -> list[str]:
    """`pipeline_lib.cli`'s arguments: the step, where its result goes, then its own arguments."""
    out = [step, "--result-file", str(result_file)]
    for key, value in args.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


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
    """The ML venv's python next to the worker (the local default): forked from the warm ML process
    (fork_server.py) when it can be reached or started, else a plain subprocess; the same command,
    log, result and exit status either way. The result carries the step process's wall time and peak
    memory under `launch`, so XCom (and the benchmark) show them. The step's temporary files go to
    a folder of its own (TMPDIR), removed with it even when the step is killed."""

    def __init__(self, python: Path | None = None, env: dict[str, str] | None = None):
        self.python = Path(python or settings.ml_python())
        self.env = env or {}
        self.process = None

    def run(self, step: str, args: dict[str, str], log: Callable[[str], None] = print) -> dict:
        if not self.python.exists():
            raise StepFailed(f"ML environment not found at {self.python} (run `make envs`)")
        with tempfile.TemporaryDirectory(prefix=f"{step}-") as tmp:
            argv = cli_args(step, args, Path(tmp) / "result.json")
            cmd = [str(self.python), "-m", "pipeline_lib.cli", *argv]
            log("launching: " + " ".join(cmd))
            env = self.environment()
            start = time.perf_counter()
            self.process = self._start(cmd, argv, {**env, "TMPDIR": tmp}, env, log)
            try:
                for line in self.process.stdout:
                    log(line.rstrip("\n"))
                returncode = self.process.wait()
            finally:
                self.process.stdout.close()
            result_file = Path(tmp) / "result.json"
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
            launch = {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": result.pop("peak_rss_mib", None)}
            log(f"{step} ran {launch['seconds']:.1f} s, peak RSS {launch['peak_rss_mib']} MiB")
        if returncode != 0 or "error" in result:
            raise StepFailed(result.get("error") or f"step {step} exited with {returncode}")
        return {**result, "launch": launch}

    def warm(self) -> bool:
        """Starts the warm ML process in the background when none runs (and forking is on);
        whether it started one."""
        if not (settings.fork_server() and self.python.exists()):
            return False
        return fork_server.start(self.python, settings.runtime_dir(), self.environment())

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1", **self.env}
        env.pop("PYTHONPATH", None)  # the Airflow env's paths must not leak into the ML env
        return env

    def _start(self, cmd: list[str], argv: list[str], env: dict[str, str], server_env: dict[str, str],
               log: Callable[[str], None]):
        """The step (`cmd`, or the CLI's `argv` in a fork) forked by the warm ML process, or a
        subprocess when there is none to be had."""
        if settings.fork_server():
            try:
                step = fork_server.ForkedStep(fork_server.connect(self.python, settings.runtime_dir(), server_env),
                                              argv, env, os.getcwd())
                log(f"forked as pid {step.pid} from the warm ML process (pipeline_lib/fork_server.py)")
                return step
            except fork_server.Unavailable as e:
                log(f"no warm ML process ({e}): running a fresh process")
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)

    def on_kill(self):
        """A killed task kills its step (forked steps are not the task's children)."""
        if self.process:
            self.process.kill()


def main(argv: list[str] | None = None) -> None:
    """`python -m pipeline_lib.launchers warm`, as `make demo` and `make airflow` run it before
    Airflow starts: the warm ML process starts in the background, so that its imports (5-10 s)
    overlap Airflow's start-up instead of sitting inside the first step."""
    import argparse

    parser = argparse.ArgumentParser(prog="pipeline_lib.launchers", description=main.__doc__)
    parser.add_argument("command", choices=["warm"])
    parser.parse_args(argv)
    try:
        started = LocalLauncher().warm()
    except fork_server.Unavailable as e:  # the first step starts one, or runs as a fresh process
        print(f"no warm ML process: {e}")
        return
    print("warm ML process " + ("starting in the background" if started else "already there or off"))


if __name__ == "__main__":
    main()
