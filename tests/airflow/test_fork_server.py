"""The local launcher's warm ML process (pipeline_lib/fork_server.py): every step forked from it
gives what a fresh process gives (result, artifacts, exit status, log), leaves nothing in the
system temp folder, dies alone when it crashes, dies when its task is killed, and a changed ML
environment gets a new server. Real steps on ~1,000 taxi rows, both ways."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pipeline_fixtures import warehouse_copy, write_pipeline

from pipeline_lib import artifacts, fork_server, settings
from pipeline_lib.launchers import LocalLauncher, StepFailed

SPAN = dt.date(2014, 3, 1)
SMALL = {"name": "taxi_small", "source": {"window_days": 90}, "training": {"steps": 100, "batch_size": 32}}
WAYS = ("fresh", "forked")

# the artifacts' content, in the ML environment: the spans' examples and statistics parsed (proto
# maps serialize in a per-process order), the transform graph's vocabularies, the model by its
# predictions
DIGEST = """
import hashlib, json, sys
from pathlib import Path
import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2
root, run = Path(sys.argv[1]), Path(sys.argv[2])
records = lambda path: [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
sha = lambda items: hashlib.sha256(b"".join(items)).hexdigest()
out = {}
for path in sorted(root.glob("spans/*/*/*.tfrecord")):
    rel = str(path.relative_to(root))
    if rel.endswith("statistics/stats.tfrecord"):  # one binary proto
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
        out[rel] = sha([stats.SerializeToString(deterministic=True)])
    else:
        out[rel] = sha(tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records(path))
for path in sorted(run.glob("transform/transform_graph/transform_fn/assets/*")):
    out[str(path.relative_to(run))] = sha([path.read_bytes()])
eval_files = sorted(root.glob("spans/*/eval/*.tfrecord"))
examples = [tf.train.Example.FromString(r) for path in eval_files for r in records(path)][:50]
for e in examples:
    del e.features.feature["tips"]
model = tf.saved_model.load(str(run / "train/model"))
outputs = model.signatures["serving_default"](examples=tf.constant([e.SerializeToString() for e in examples]))
out["predictions"] = outputs["outputs"].numpy().ravel().tolist()
print(json.dumps(out))
"""


def server_pids(runtime_dir: Path) -> list[int]:
    """The servers started under `runtime_dir` (each logs its pid when it is ready)."""
    return [int(pid) for log in runtime_dir.glob("*.log")
            for pid in re.findall(r"^fork server (\d+) on ", log.read_text(), re.MULTILINE)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not alive(pid)


def run_step(config: Path, step: str, results: dict, log=lambda line: None, **extra) -> dict:
    args = {"config": str(config), "output_dir": str(artifacts.step_dir("taxi_small", SPAN, step)),
            **artifacts.inputs_from(step, results), **artifacts.run_args(step, SPAN, "test"), **extra}
    return LocalLauncher().run(step, args, log=log)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """A private runtime folder (short: Unix socket paths are limited); its servers stop at the end."""
    path = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_RUNTIME_DIR", str(path))
        yield path
    fork_server.stop(path)


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory, runtime_dir):
    """Every step, in order, as a fresh process and forked; the system temp folder (TMPDIR, here a
    private one) is watched. Returns {way: (root, results, logs, what TMPDIR holds afterwards)}."""
    import tempfile

    out = {}
    for way in WAYS:
        root = tmp_path_factory.mktemp(way)
        system_tmp = root / "system-tmp"
        system_tmp.mkdir()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PIPELINE_FORK_SERVER", "1" if way == "forked" else "0")
            mp.setenv("PIPELINE_ARTIFACT_ROOT", str(root / "artifacts"))
            mp.setenv("PIPELINE_SERVING_ROOT", str(root / "serving"))
            mp.setenv("PIPELINE_WAREHOUSE", str(warehouse_copy(root)))
            mp.setenv("TMPDIR", str(system_tmp))
            mp.setattr(tempfile, "tempdir", None)
            config = write_pipeline(root / "pipelines", SMALL)
            results, logs = {}, {}
            for step in artifacts.STEPS:
                logs[step] = []
                results[step] = run_step(config, step, results, log=logs[step].append)
        out[way] = (root, results, logs, sorted(os.listdir(system_tmp)))
    return out


def comparable(result: dict, root: Path) -> dict:
    """A result without what differs from run to run anyway: timings, latencies, the artifact root."""
    result = json.loads(json.dumps(result).replace(str(root), "<root>"))
    result.pop("launch")
    result.pop("latency_ms", None)
    result.pop("signature_latency_ms", None)
    result.get("seconds", {}).clear()  # train's fit/evaluate/export times
    return result


def test_every_step_forked_gives_what_a_fresh_process_gives(both_ways):
    (fresh_root, fresh, fresh_logs, _), (forked_root, forked, forked_logs, _) = (both_ways[w] for w in WAYS)
    for step in artifacts.STEPS:
        assert comparable(forked[step], forked_root) == comparable(fresh[step], fresh_root), step
        assert set(forked[step]["launch"]) == set(fresh[step]["launch"]) == {"seconds", "peak_rss_mib"}
        assert forked[step]["launch"]["peak_rss_mib"] > 0
        # the task log: the command, the step's own output (its result as JSON), the closing line
        for logs in (fresh_logs, forked_logs):
            assert logs[step][0].startswith(f"launching: {settings.ml_python()} -m pipeline_lib.cli {step} ")
            assert logs[step][-1].startswith(f"{step} ran ") and "{" in logs[step]
        forked_as = [line for line in forked_logs[step] if line.startswith("forked as pid ")]
        assert len(forked_as) == 1 and not any(line.startswith("forked as pid ") for line in fresh_logs[step])
    assert forked["evaluate"]["blessed"] and forked["push"]["pushed"]

    run = lambda root: root / "artifacts" / "taxi_small" / "runs" / SPAN.isoformat()
    digests = [json.loads(subprocess.run([str(settings.ml_python()), "-c", DIGEST, str(run(root).parents[1]), str(run(root))],
                                         check=True, capture_output=True, text=True).stdout.splitlines()[-1])
               for root in (fresh_root, forked_root)]
    assert digests[0] == digests[1]
    first = forked["ingest"]["spans"][0]["span"]
    assert {f"spans/{first}/train/data-00000.tfrecord", f"spans/{first}/statistics/stats.tfrecord"} <= set(digests[0])
    assert any(k.startswith("transform/") for k in digests[0]) and len(digests[0]["predictions"]) == 50
    for name in ("evaluate/slices.json", "evaluate/blessing.json"):
        texts = [(run(root) / name).read_text().replace(str(root), "<root>") for root in (fresh_root, forked_root)]
        assert texts[0] == texts[1], name


def test_a_run_leaves_nothing_in_the_system_temp_folder(both_ways):
    for way in WAYS:
        assert both_ways[way][3] == [], way


def module_that(tmp_path: Path, code: str) -> Path:
    """A pipeline whose user module runs `code` when a step loads it (transform does, first thing)."""
    config = write_pipeline(tmp_path / "pipelines", SMALL)
    module = config.parent / "taxi_tips.py"
    module.write_text(f"{code}\n{module.read_text()}")
    return config


def test_a_crashing_step_dies_alone(both_ways, runtime_dir, tmp_path, monkeypatch):
    _, results, _, _ = both_ways["forked"]
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PIPELINE_WAREHOUSE", str(warehouse_copy(tmp_path)))
    config = module_that(tmp_path, "import os; os.abort()")
    [server] = server_pids(runtime_dir)
    for way in WAYS:
        monkeypatch.setenv("PIPELINE_FORK_SERVER", "1" if way == "forked" else "0")
        with pytest.raises(StepFailed, match=r"^step transform exited with -6$"):
            run_step(config, "transform", results)
    assert server_pids(runtime_dir) == [server] and alive(server)
    logs = []
    assert run_step(config, "ingest", {}, log=logs.append)["rows"] == results["ingest"]["rows"]
    assert logs[1].startswith("forked as pid ")


@pytest.mark.parametrize("way", WAYS)
def test_a_killed_task_kills_its_step(both_ways, runtime_dir, tmp_path, monkeypatch, way):
    _, results, _, _ = both_ways["forked"]
    monkeypatch.setenv("PIPELINE_FORK_SERVER", "1" if way == "forked" else "0")
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    config = module_that(tmp_path, "import time; time.sleep(600)")
    launcher, failed = LocalLauncher(), []
    args = {"config": str(config), "output_dir": str(tmp_path / "out"), **artifacts.inputs_from("transform", results)}

    def task():
        try:
            launcher.run("transform", args, log=lambda line: None)
        except StepFailed as e:
            failed.append(str(e))

    thread = threading.Thread(target=task)
    thread.start()
    while launcher.process is None:
        time.sleep(0.1)
    time.sleep(1)
    launcher.on_kill()  # what MLStepOperator.on_kill does
    thread.join(30)
    assert failed == ["step transform exited with -9"]
    assert gone_within(launcher.process.pid, 5)


KILLED_CLIENT = """
import sys
from pipeline_lib.launchers import LocalLauncher
LocalLauncher().run("transform", dict(a.split("=", 1) for a in sys.argv[1:]), log=lambda l: print(l, flush=True))
"""


def test_a_task_killed_outright_takes_its_forked_step_along(both_ways, runtime_dir, tmp_path, monkeypatch):
    """SIGKILL gives the task no on_kill: the server sees its client hang up and kills the step."""
    _, results, _, _ = both_ways["forked"]
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    config = module_that(tmp_path, "import time; time.sleep(600)")
    args = {"config": str(config), "output_dir": str(tmp_path / "out"), **artifacts.inputs_from("transform", results)}
    client = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, *(f"{k}={v}" for k, v in args.items())],
                              stdout=subprocess.PIPE, text=True)
    step = next(int(line.split()[3]) for line in client.stdout if line.startswith("forked as pid "))
    assert alive(step)
    client.kill()
    client.wait()
    assert gone_within(step, 10)


def test_a_changed_ml_environment_gets_a_new_server(tmp_path, monkeypatch):
    """A venv of links to the ML one: touching its `.synced` (as `make envs` does) is a new environment."""
    real = settings.ml_python()
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(real.resolve())
    (venv / "pyvenv.cfg").write_text((real.parent.parent / "pyvenv.cfg").read_text())
    for site in real.parent.parent.glob("lib/python*/site-packages"):
        (venv / site.parent.relative_to(real.parent.parent)).mkdir(parents=True)
        (venv / site.relative_to(real.parent.parent)).symlink_to(site)
    (venv / ".synced").touch()
    runtime = tmp_path / "run"
    monkeypatch.setenv("PIPELINE_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PIPELINE_WAREHOUSE", str(warehouse_copy(tmp_path)))
    config = write_pipeline(tmp_path / "pipelines", SMALL)
    args = {"config": str(config), "span_date": SPAN.isoformat()}
    try:
        first = LocalLauncher(venv / "bin" / "python").run("ingest", {**args, "output_dir": str(tmp_path / "a")})
        [old] = server_pids(runtime)
        os.utime(venv / ".synced", ns=(time.time_ns(), time.time_ns() + 10**9))
        second = LocalLauncher(venv / "bin" / "python").run("ingest", {**args, "output_dir": str(tmp_path / "b")})
        [new] = set(server_pids(runtime)) - {old}
        assert second["rows"] == first["rows"]
        assert gone_within(old, 3 * fork_server.CHECK_SECONDS + 5) and alive(new)
    finally:
        fork_server.stop(runtime)


def test_warm_starts_the_server_in_the_background_and_the_first_step_waits_for_that_one(tmp_path, monkeypatch):
    """`python -m pipeline_lib.launchers warm` (make demo, make airflow) starts the server without
    waiting for its imports; the first step, connecting while it still imports, waits for that
    server rather than starting a second one. Warming again starts none; with forking off, none."""
    runtime = tmp_path / "run"
    monkeypatch.setenv("PIPELINE_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PIPELINE_WAREHOUSE", str(warehouse_copy(tmp_path)))
    config = write_pipeline(tmp_path / "pipelines", SMALL)
    warm = [sys.executable, "-m", "pipeline_lib.launchers", "warm"]
    try:
        off = subprocess.run(warm, env={**os.environ, "PIPELINE_FORK_SERVER": "0"}, capture_output=True, text=True, check=True)
        assert "already there or off" in off.stdout and not runtime.exists()
        started = subprocess.run(warm, capture_output=True, text=True, check=True)
        assert "starting in the background" in started.stdout
        assert not fork_server.socket_path(runtime, settings.ml_python()).exists(), "warm does not wait for the imports"
        log = []
        result = run_step(config, "ingest", {}, log=log.append)
        assert sum(result["rows"].values()) > 0 and any("forked as pid" in line for line in log), log
        again = subprocess.run(warm, capture_output=True, text=True, check=True)
        assert "already there" in again.stdout
        [server] = server_pids(runtime)
        assert alive(server)
    finally:
        fork_server.stop(runtime)
