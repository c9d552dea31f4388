"""Run a step in the ML environment and bring back its JSON result.

The Airflow side never imports TensorFlow: an operator asks a launcher to run
`python -m pipeline_lib.cli <step> ...` where the ML stack lives, and only JSON crosses back.
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


def step_command(python: Path, step: str, args: dict[str, str], result_file: Path) -> list[str]:
    cmd = [str(python), "-m", "pipeline_lib.cli", step, "--result-file", str(result_file)]
    for key, value in args.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


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
                _, status, usage = os.wait4(proc.pid, 0)  # wait() gives no rusage of the child
                proc.returncode = os.waitstatus_to_exitcode(status)
            launch = {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024)}
            log(f"{step} ran {launch['seconds']:.1f} s, peak RSS {launch['peak_rss_mib']} MiB")
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
        if proc.returncode != 0 or "error" in result:
            raise StepFailed(result.get("error") or f"step {step} exited with {proc.returncode}")
        return {**result, "launch": launch}
