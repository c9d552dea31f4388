"""Infra validation: before a push, the candidate is loaded in a fresh process (this step's own,
not the one that trained it) the way a model server loads it, and answers serialized tf.Example
requests from the eval data through its serving signature. A load failure, a missing signature, an
error, a wrong output shape or a non-finite output fails the gate; p50/p99 latency is recorded."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline_lib import artifacts
from pipeline_lib.serving import SERVING_SIGNATURE

INFRA_BLESSING = "infra_blessing.json"


class WrongResponse(Exception):
    """The model answered, but not with what a client expects."""


def requests(config, examples: Path, count: int) -> list[bytes]:
    """Serialized eval examples as a client sends them: without the label's raw columns."""
    files = sorted(str(p) for p in (examples / "eval").glob("*.tfrecord"))
    out = []
    for record in tf.data.TFRecordDataset(files).take(count):
        example = tf.train.Example.FromString(record.numpy())
        for column in config.label.raw_columns:
            del example.features.feature[column]
        out.append(example.SerializeToString())
    if not out:
        raise ValueError(f"no eval examples under {examples}")
    return out


def _problem(outputs, batch: int, shape: list[int]) -> str | None:
    """Why one response is wrong, or None."""
    for name, tensor in outputs.items():
        if list(tensor.shape) != [batch, *shape]:
            return f"output {name!r} has shape {list(tensor.shape)} for {batch} examples, expected {[batch, *shape]}"
        if not np.isfinite(tensor.numpy()).all():
            return f"output {name!r} holds non-finite values"
    return None


def _timed(serve, batch: list[bytes], shape: list[int]) -> float:
    """One request's latency in ms; raises WrongResponse when the response is wrong."""
    start = time.perf_counter()
    outputs = serve(examples=tf.constant(batch))
    elapsed = (time.perf_counter() - start) * 1000
    problem = _problem(outputs, len(batch), shape)
    if problem:
        raise WrongResponse(problem)
    return elapsed


def _percentiles(latencies: list[float]) -> dict:
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"requests": len(latencies), "p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def check(config, model: str, examples: Path) -> dict:
    spec = config.infra_validation
    verdict = {"model": model, "valid": False, "reasons": []}
    try:
        loaded = tf.saved_model.load(model)
    except Exception as e:  # any load failure is the verdict, not a crash of the step
        verdict["reasons"].append(f"model failed to load: {type(e).__name__}: {str(e).splitlines()[0]}")
        return verdict
    if SERVING_SIGNATURE not in loaded.signatures:
        verdict["reasons"].append(f"no {SERVING_SIGNATURE!r} signature (has {sorted(loaded.signatures)})")
        return verdict
    serve = loaded.signatures[SERVING_SIGNATURE]
    pool = requests(config, examples, max(spec.requests, spec.batch_size))
    batch = [pool[i % len(pool)] for i in range(spec.batch_size)]
    try:
        serve(examples=tf.constant(pool[:1]))  # warm-up, as TF Serving's warm-up requests do
        single = [_timed(serve, [pool[i % len(pool)]], spec.output_shape) for i in range(spec.requests)]
        batched = [_timed(serve, batch, spec.output_shape) for _ in range(spec.batch_requests)]
    except WrongResponse as e:
        verdict["reasons"].append(str(e))
        return verdict
    except Exception as e:  # the model raised while answering
        verdict["reasons"].append(f"request failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        return verdict
    verdict["latency_ms"] = {"single": _percentiles(single), f"batch_{spec.batch_size}": _percentiles(batched)}
    p99 = verdict["latency_ms"]["single"]["p99"]
    if spec.max_p99_ms is not None and p99 > spec.max_p99_ms:
        verdict["reasons"].append(f"p99 latency {p99:.1f} ms exceeds {spec.max_p99_ms:g} ms")
        return verdict
    verdict["valid"] = True
    return verdict


def run(config, output_dir: Path, model: str, examples: str) -> dict:
    verdict = check(config, model, Path(examples))
    with artifacts.atomic_dir(output_dir) as tmp:
        artifacts.write_json(tmp / INFRA_BLESSING, verdict)
        result = {**verdict, "infra_blessing": str(output_dir / INFRA_BLESSING)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
