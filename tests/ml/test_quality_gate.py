"""The model quality gate on the real taxi slice: warm start, resumable training, change thresholds
against the serving model, infra validation, the push record, atomic and idempotent push, rollback."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import SPAN, eval_files, run_step

from pipeline_lib import artifacts, serving
from pipeline_lib.steps import train

REPO = Path(__file__).resolve().parents[2]


def train_with(make_config, chain, name: str, training: dict):
    """Train on the chain's transform output; the serving model is the chain's (version 1)."""
    config = make_config({"training": training}, name=name)
    return config, run_step(config, "train", **artifacts.inputs_from("train", chain))


def step_command(config, step: str, output_dir: Path, **inputs) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline_lib.cli", step, "--config", str(config.config_dir / "pipeline.yaml"),
           "--output-dir", str(output_dir)]
    for key, value in inputs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def test_training_logs_its_strategy_keeps_tensorboard_and_exports_weights(chain):
    result = chain["train"]
    assert result["distribution"]["strategy"] == "_DefaultDistributionStrategy"  # no GPU here
    assert result["distribution"]["mixed_precision"] is False
    assert result["warm_start"] == {"from_version": None, "reason": "no serving model"}
    assert list(Path(result["tensorboard"]).glob("train/events.out.tfevents.*"))
    assert list(Path(result["tensorboard"]).glob("validation/events.out.tfevents.*"))
    assert (Path(result["model"]) / train.WEIGHTS).is_file()
    assert not list(Path(result["model"]).parent.parent.glob(".train.backup*")), "backups go once training ends"


def _predictions(model_dir, chain, count: int = 100):
    """The model's serving_default outputs for the first `count` raw eval examples."""
    examples = tf.stack([e for e in tf.data.TFRecordDataset(eval_files(chain)).take(count)])
    return tf.saved_model.load(str(model_dir)).signatures["serving_default"](examples=examples)["outputs"].numpy()


def test_warm_start_begins_from_the_serving_models_weights(chain, make_config):
    """One step at a negligible learning rate: warm, the model answers as the serving one; cold, not."""
    serving_outputs = _predictions(chain["push"]["path"], chain)
    tiny = {"steps": 1, "epochs": 1, "learning_rate": 1e-9}
    _, warm = train_with(make_config, chain, "taxi_warm", tiny)
    assert warm["warm_start"]["from_version"] == 1
    assert {"embed_company", "hidden_0", "output"} <= set(warm["warm_start"]["layers"])
    assert abs(_predictions(warm["model"], chain) - serving_outputs).max() < 1e-3

    _, cold = train_with(make_config, chain, "taxi_cold", {**tiny, "warm_start": {"enabled": False}})
    assert cold["warm_start"] == {"from_version": None, "reason": "disabled"}
    assert abs(_predictions(cold["model"], chain) - serving_outputs).mean() > 0.05

    _, embeddings = train_with(make_config, chain, "taxi_embed", {**tiny, "warm_start": {"layers": ["embed_.*"]}})
    loaded = embeddings["warm_start"]["layers"]
    assert loaded and all(name.startswith("embed_") for name in loaded)
    assert "hidden_0" in embeddings["warm_start"]["not_selected"]


def test_early_stopping_stops_when_the_eval_loss_stops_improving(chain, make_config):
    _, result = train_with(make_config, chain, "taxi_early",
                           {"steps": 40, "epochs": 20, "learning_rate": 0.5, "warm_start": {"enabled": False},
                            "early_stopping": {"patience": 1, "min_delta": 0.5}})
    assert result["stopped_early"] is True
    assert len(result["epochs_run"]) < 5, "val_loss cannot keep improving by 0.5 an epoch"


def test_a_killed_training_resumes_from_its_last_epoch_on_retry(chain, make_config):
    config = make_config({"training": {"steps": 3000, "epochs": 30, "warm_start": {"enabled": False},
                                       "early_stopping": {"patience": None}},
                          "serving": {"model_name": "taxi_resume"}}, name="taxi_resume")
    output = artifacts.step_dir(config.name, SPAN, "train")
    backup = output.parent / ".train.backup"
    proc = subprocess.Popen(step_command(config, "train", output, **artifacts.inputs_from("train", chain)),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    deadline = time.monotonic() + 120
    while not list(backup.glob("**/checkpoint")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # a few more epochs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(backup.glob("**/checkpoint")), "the killed run left its epoch backup"
    assert not output.exists(), "a killed training leaves no model behind"

    resumed = run_step(config, "train", **artifacts.inputs_from("train", chain))
    assert resumed["epochs_run"][0] > 0, "the retry starts at the epoch after the last backup"
    assert resumed["epochs_run"][-1] == 29
    assert not backup.exists()


def test_a_worse_candidate_is_blocked_by_the_change_threshold(chain, make_config, config):
    worse, cold = train_with(make_config, chain, "taxi_worse",
                             {"steps": 1, "epochs": 1, "warm_start": {"enabled": False}})
    before = serving.versions(config.serving.model_dir())
    verdict = run_step(worse, "evaluate", **{**artifacts.inputs_from("evaluate", chain), "model": cold["model"]})
    assert verdict["blessed"] is False and verdict["baseline_version"] == before[-1]
    change = [v for v in verdict["thresholds"] if v["kind"] == "change"]
    assert change == [{"metric": "auc", "kind": "change", "threshold": "change >= -0.05", "passed": False,
                       "value": pytest.approx(verdict["metrics"]["candidate"]["auc"]
                                              - verdict["metrics"]["baseline"]["auc"], abs=1e-6)}]
    assert any(r.startswith("auc change vs serving model = -") for r in verdict["reasons"])
    report = Path(verdict["report"]).read_text()
    assert "NOT BLESSED" in report and "| auc | change >= -0.05 |" in report and "trip_start_hour=" in report
    slices = json.loads(Path(verdict["slices"]).read_text())
    assert slices["Overall"]["candidate"]["example_count"] == chain["ingest"]["rows"]["eval"]

    infra = run_step(worse, "infra_validate", model=cold["model"], examples=chain["ingest"]["examples"])
    pushed = run_step(worse, "push", **{**artifacts.inputs_from("push", chain), "model": cold["model"],
                                        "blessing": verdict["blessing"], "infra_blessing": infra["infra_blessing"]})
    assert pushed["pushed"] is False and pushed["reason"].startswith("not blessed: auc change vs serving model")
    assert serving.versions(config.serving.model_dir()) == before


def test_infra_validation_answers_requests_and_records_latency(chain):
    infra = chain["infra_validate"]
    assert infra["valid"] is True and infra["reasons"] == []
    assert infra["signatures"] == ["classify", "serving_default", "transform_features"]
    assert infra["signature_latency_ms"]["classify"]["single"]["requests"] == 100
    single, batch = infra["latency_ms"]["single"], infra["latency_ms"]["batch_100"]
    assert single["requests"] == 100 and 0 < single["p50"] <= single["p99"]
    assert batch["requests"] == 20 and single["p50"] < batch["p50"] <= batch["p99"]


def test_the_pushed_binary_model_answers_tf_servings_classify(chain):
    """classify: TF Serving's Classify API (method name, `inputs`, class names and a score each)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(chain["push"]["path"])
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    methods = {k: v.method_name for k, v in proto.meta_graphs[0].signature_def.items() if not k.startswith("__")}
    assert methods["classify"] == "tensorflow/serving/classify"
    assert methods["serving_default"] == "tensorflow/serving/predict"
    model = tf.saved_model.load(str(path))
    examples = tf.stack([e for e in tf.data.TFRecordDataset(eval_files(chain)).take(3)])
    answer = model.signatures["classify"](inputs=examples)
    probability = model.signatures["serving_default"](examples=examples)["outputs"].numpy()[:, 0]
    assert answer["classes"].numpy().tolist() == [[b"0", b"1"]] * 3
    assert answer["scores"].numpy()[:, 1] == pytest.approx(probability)
    assert answer["scores"].numpy().sum(axis=1) == pytest.approx([1.0] * 3)


class WrongShape(tf.Module):
    """A binary model whose serving_default answers two columns (its classify is right)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        return {"outputs": tf.zeros([tf.shape(examples)[0], 2])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        n = tf.shape(inputs)[0]
        return {"classes": tf.tile(tf.constant([["0", "1"]]), [n, 1]), "scores": tf.fill([n, 2], 0.5)}


@pytest.mark.parametrize("broken, reason", [
    ("not_a_model", "model failed to load: "),
    ("wrong_shape", "signature 'serving_default' output 'outputs' has shape [1, 2] for 1 examples, expected [1, 1]"),
])
def test_a_model_failing_infra_validation_is_not_pushed(chain, config, tmp_path, broken, reason):
    model = tmp_path / broken
    if broken == "wrong_shape":
        module = WrongShape()
        tf.saved_model.save(module, str(model), signatures={"serving_default": module.serve,
                                                            "classify": module.classify})
        (model / serving.LABEL_INFO).parent.mkdir()
        (model / serving.LABEL_INFO).write_text(json.dumps({"task": "binary", "key": "big_tipper",
                                                            "classes": ["0", "1"]}))
    else:
        model.mkdir()
        (model / "saved_model.pb").write_bytes(b"not a SavedModel")
    infra = run_step(config, "infra_validate", span=dt.date(2014, 3, 9), model=str(model),
                     examples=chain["ingest"]["examples"])
    assert infra["valid"] is False and infra["reasons"][0].startswith(reason)

    blessing = json.loads(Path(chain["evaluate"]["blessing"]).read_text())
    forged = tmp_path / "blessing.json"  # blessed by TFMA, so only infra validation can refuse it
    forged.write_text(json.dumps({**blessing, "candidate": str(model)}))
    before = serving.versions(config.serving.model_dir())
    pushed = run_step(config, "push", span=dt.date(2014, 3, 9), **{
        **artifacts.inputs_from("push", chain), "model": str(model), "blessing": str(forged),
        "infra_blessing": infra["infra_blessing"]})
    assert pushed["pushed"] is False and pushed["reason"].startswith("failed infra validation: " + reason)
    assert serving.versions(config.serving.model_dir()) == before


def test_each_version_records_what_it_came_from_and_a_span_pushes_once(chain, config):
    model_dir = config.serving.model_dir()
    record = serving.record(model_dir, chain["push"]["version"])
    ingest = chain["ingest"]
    assert record["span"] == ingest["span"] == "2014-02-16" and record["run_id"] == f"test-{SPAN}"
    assert record["window"] == ingest["window"] and record["rows"] == ingest["rows"]
    assert record["spans"] == {"count": 13, "newest": "2014-02-16", "excluded": []}
    assert record["schema"]["sha256"] == hashlib.sha256(Path(chain["validate"]["schema"]).read_bytes()).hexdigest()
    assert record["transform_graph"] == chain["transform"]["transform_graph"]
    assert record["metrics"] == chain["evaluate"]["metrics"]["candidate"]
    assert record["latency_ms"] == chain["infra_validate"]["latency_ms"]
    assert record["warm_start"] == chain["train"]["warm_start"]

    before = serving.versions(model_dir)
    again = run_step(config, "push", **artifacts.inputs_from("push", chain))
    assert again == {"pushed": False, "version": chain["push"]["version"], "path": chain["push"]["path"],
                     "reason": f"span 2014-02-16 already pushed as version {chain['push']['version']}"}
    assert serving.versions(model_dir) == before


KILL_DURING_COPY = """
import os, shutil, signal, sys
from pipeline_lib import cli
copied = []
real = shutil.copyfile
def copyfile(src, dst, **kw):
    if len(copied) == 2:  # two files in, the rest never arrive
        os.kill(os.getpid(), signal.SIGKILL)
    copied.append(src)
    return real(src, dst, **kw)
shutil.copyfile = copyfile
cli.main(sys.argv[1:])
"""


def test_a_push_killed_midway_leaves_serving_alone_and_a_retry_completes_it(chain, make_config):
    config = make_config({"serving": {"model_name": "taxi_kill"}}, name="taxi_kill")
    model_dir = config.serving.model_dir()
    first = run_step(config, "push", **artifacts.inputs_from("push", chain))
    assert first["version"] == 1

    span = dt.date(2014, 3, 2)  # the next week's run
    examples = run_step(config, "ingest", span=span, span_date=span)["examples"]
    inputs = {**artifacts.inputs_from("push", chain), "examples": examples, "run_id": "next-day"}
    output = artifacts.step_dir(config.name, span, "push")
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_COPY,
                             *step_command(config, "push", output, **inputs)[3:]], cwd=REPO, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert serving.versions(model_dir) == [1], "a partial copy is never a version"
    assert list(model_dir.glob(".incoming-*")), "the partial copy stays hidden"

    retried = run_step(config, "push", span=span, **inputs)
    assert retried["pushed"] is True and retried["version"] == 2
    assert serving.versions(model_dir) == [1, 2] and not list(model_dir.glob(".incoming-*"))
    assert serving.record(model_dir, 2)["span"] == "2014-02-23", "the new week's"


def test_rollback_restores_the_previous_version_as_a_new_one(chain, make_config):
    config = make_config({"serving": {"model_name": "taxi_rollback"}}, name="taxi_rollback")
    model_dir = config.serving.model_dir()
    with pytest.raises(ValueError, match="nothing to roll back to"):
        serving.rollback(model_dir)
    serving.publish(Path(chain["train"]["model"]), model_dir, {"span": "2014-03-01", "run_id": "a"})
    serving.publish(Path(chain["train"]["model"]), model_dir, {"span": "2014-03-02", "run_id": "b"})

    listed = subprocess.run([sys.executable, "-m", "pipeline_lib.serving", "rollback", "--config",
                             str(config.config_dir / "pipeline.yaml"), "--by", "oncall"],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "version 3 now serves (a copy of version 1)" in listed.stdout
    assert serving.versions(model_dir) == [1, 2, 3]
    assert serving.record(model_dir, 3)["rollback"] == {"restores": 1, "replaces": 2, "by": "oncall"}
    assert serving.record(model_dir, 3)["run_id"] == "a"
    assert (model_dir / "3" / "saved_model.pb").read_bytes() == (model_dir / "1" / "saved_model.pb").read_bytes()
    with pytest.raises(ValueError, match="cannot roll back to 3"):
        serving.rollback(model_dir, to=3)


MIRRORED = """
import json, sys
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from pipeline_lib.config import load_config
from pipeline_lib.steps import train
def two_replicas():  # what the GPU path does with two GPUs, on two logical CPUs
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return strategy, {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync}
train.distribution = two_replicas
config = load_config(sys.argv[1])
result = train.run(config, __import__("pathlib").Path(sys.argv[2]), sys.argv[3], sys.argv[4])
print(json.dumps(result))
"""


def test_training_under_mirrored_strategy_warm_starts_and_exports(chain, make_config, tmp_path):
    """No GPU here: MirroredStrategy over two logical CPUs runs the multi-replica path (mirrored
    variables, warm start inside the scope, the export) that MirroredStrategy over GPUs runs."""
    config = make_config({"training": {"steps": 40, "epochs": 2}}, name="taxi_mirrored")
    inputs = artifacts.inputs_from("train", chain)
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(config.config_dir / "pipeline.yaml"),
                           str(tmp_path / "train"), inputs["transform_graph"], inputs["examples"]],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["distribution"] == {"strategy": "MirroredStrategy", "replicas": 2}
    assert result["warm_start"]["from_version"] == 1 and result["warm_start"]["layers"]
    model = tf.saved_model.load(result["model"])
    examples = [e for e in tf.data.TFRecordDataset(eval_files(chain)).take(4)]
    outputs = model.signatures["serving_default"](examples=tf.stack(examples))["outputs"].numpy()
    assert outputs.shape == (4, 1)


def test_overlapping_pushes_take_distinct_increasing_versions(chain, tmp_path):
    """Six pushes at once (threads: each opens the lock file itself, so flock serializes them as it
    does processes)."""
    from concurrent.futures import ThreadPoolExecutor

    spans = [f"2014-04-{day:02d}" for day in range(1, 7)]
    publish = lambda span: serving.publish(Path(chain["train"]["model"]), tmp_path / "m", {"span": span, "run_id": span})
    with ThreadPoolExecutor(len(spans)) as pool:
        got = [version for version, _, new in pool.map(publish, spans)]
    assert sorted(got) == list(range(1, len(spans) + 1))
    assert {serving.record(tmp_path / "m", v)["span"] for v in got} == set(spans)
