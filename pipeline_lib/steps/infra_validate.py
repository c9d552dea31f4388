"""Infra validation: before a push, the candidate is loaded in a fresh process (this step's own,
not the one that trained it) the way a model server loads it, and answers serialized tf.Example
requests from the eval data through every signature it exports. What each must answer follows
from the label's task and classes, read from the model (`assets.extra/label.json`, written by
train from the label vocabulary). A load failure, a missing signature, an error, a wrong output
shape, wrong class names or a non-finite output fails the gate; p50/p99 latency is recorded."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline_lib import artifacts, spans
from pipeline_lib.serving import LABEL_INFO, SERVING_SIGNATURE, TRANSFORM_SIGNATURE

INFRA_BLESSING = "infra_blessing.json"


class WrongResponse(Exception):
    """The model answered, but not with what a client expects."""


def requests(config, examples: Path, count: int, with_label: bool = False) -> list[bytes]:
    """Serialized eval examples of the newest spans as a client sends them: without the label's
    raw columns."""
    files = spans.files(spans.recent(artifacts.read_result(examples)["spans"], "eval", count)[::-1], "eval")
    out = []
    for record in tf.data.TFRecordDataset(files).take(count):
        example = tf.train.Example.FromString(record.numpy())
        for column in [] if with_label else config.label.raw_columns:
            del example.features.feature[column]
        out.append(example.SerializeToString())
    if not out:
        raise ValueError(f"no eval examples under {examples}")
    return out


def expected_outputs(label: dict) -> dict[str, dict[str, int]]:
    """signature -> output -> columns per example, for the label's task and classes."""
    classes = len(label["classes"])
    out = {SERVING_SIGNATURE: {"outputs": classes if label["task"] == "multiclass" else 1}}
    if label["task"] == "regression":
        out["regress"] = {"outputs": 1}
    else:
        out["classify"] = {"classes": classes, "scores": classes}
    return out


def _problem(signature: str, outputs, batch: int, expected: dict[str, int], classes: list[str]) -> str | None:
    """Why one response is wrong, or None."""
    for name, columns in expected.items():
        if name not in outputs:
            return f"signature {signature!r} has no output {name!r} (has {sorted(outputs)})"
        tensor = outputs[name]
        if list(tensor.shape) != [batch, columns]:
            return (f"signature {signature!r} output {name!r} has shape {list(tensor.shape)} for {batch} "
                    f"examples, expected {[batch, columns]}")
        values = tensor.numpy()
        if name == "classes":
            if [v.decode() for v in values[0]] != classes:
                return f"signature {signature!r} answers classes {values[0].tolist()}, expected {classes}"
        elif not np.isfinite(values).all():
            return f"signature {signature!r} output {name!r} holds non-finite values"
    return None


def _timed(call, batch: list[bytes], check) -> float:
    """One request's latency in ms; raises WrongResponse when the response is wrong."""
    start = time.perf_counter()
    outputs = call(tf.constant(batch))
    elapsed = (time.perf_counter() - start) * 1000
    problem = check(outputs, len(batch))
    if problem:
        raise WrongResponse(problem)
    return elapsed


def _caller(function):
    """Call a signature by its one input, whatever it is named (`examples`, `inputs`)."""
    (name,) = function.structured_input_signature[1]
    return lambda batch: function(**{name: batch})


def _percentiles(latencies: list[float]) -> dict:
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"requests": len(latencies), "p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def check(config, model: str, examples: Path) -> dict:
    spec = config.infra_validation
    verdict = {"model": model, "valid": False, "reasons": []}
    try:
        loaded = tf.saved_model.load(model)
    except Exception as e:  # noqa: BLE001 - any load failure is the verdict, not a crash of the step
        verdict["reasons"].append(f"model failed to load: {type(e).__name__}: {str(e).splitlines()[0]}")
        return verdict
    label_file = Path(model) / LABEL_INFO
    if not label_file.is_file():
        verdict["reasons"].append(f"no {LABEL_INFO} (the label's task and classes) in the model")
        return verdict
    label = json.loads(label_file.read_text())
    expected = expected_outputs(label)
    missing = sorted(set(expected) - set(loaded.signatures))
    if missing:
        verdict["reasons"].append(f"no {missing} signature (has {sorted(loaded.signatures)})")
        return verdict
    pool = requests(config, examples, max(spec.requests, spec.batch_size))
    batch = [pool[i % len(pool)] for i in range(spec.batch_size)]
    latency = {}
    try:
        if TRANSFORM_SIGNATURE in loaded.signatures:  # TFMA's: raw examples with the label in
            transformed = _caller(loaded.signatures[TRANSFORM_SIGNATURE])(
                tf.constant(requests(config, examples, spec.batch_size, with_label=True)))
            if label["key"] not in transformed:
                raise WrongResponse(f"signature {TRANSFORM_SIGNATURE!r} does not answer the label {label['key']!r}")
        for signature, outputs in expected.items():
            call = _caller(loaded.signatures[signature])
            check = lambda answer, n, s=signature, o=outputs: _problem(s, answer, n, o, label["classes"])
            call(tf.constant(pool[:1]))  # warm-up, as TF Serving's warm-up requests do
            single = [_timed(call, [pool[i % len(pool)]], check) for i in range(spec.requests)]
            batched = [_timed(call, batch, check) for _ in range(spec.batch_requests)]
            latency[signature] = {"single": _percentiles(single), f"batch_{spec.batch_size}": _percentiles(batched)}
    except WrongResponse as e:
        verdict["reasons"].append(str(e))
        return verdict
    except Exception as e:  # noqa: BLE001 - the model raised while answering
        verdict["reasons"].append(f"request failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        return verdict
    verdict["signatures"] = sorted(loaded.signatures)
    verdict["latency_ms"] = latency.pop(SERVING_SIGNATURE)
    verdict["signature_latency_ms"] = latency
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
