"""Train: the user's Keras model on the training spans' examples, the transform graph applied as
they are read (pipeline_lib.transformed), exported as a SavedModel that carries the transform
graph, so serving takes raw serialized tf.Examples.

Daily retraining is cheap: the model warm-starts from the serving model's weights (the layers the
config selects, by name; embedding and one-hot rows follow their tokens as vocabularies change),
stops early when the eval loss stops improving, and backs up each epoch so that a retried task
resumes where the killed one stopped. The distribution strategy follows the devices:
MirroredStrategy with mixed precision over the GPUs when there are any, the default one on CPU."""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.autograph.core import config as autograph_config

from pipeline_lib import artifacts, serving, spans, task, transformed, user_module
from pipeline_lib.serving import LABEL_INFO, SERVING_SIGNATURE, TRANSFORM_SIGNATURE
from pipeline_lib.transforms import xf

log = logging.getLogger(__name__)

# AutoGraph leaves `keras` unconverted but rewrites every function of `tf_keras` (the same code
# under its TF 2.16 name): measured here, the first training step took 19.4 s with it, 2.0 s without.
autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"),
                                     *autograph_config.CONVERSION_RULES)
MODEL = "model"
TENSORBOARD = "tensorboard"
# inside the exported model (TF Serving ignores assets.extra): what the next run warm-starts from.
# HDF5 by layer name: a name ending in `.weights.h5` would be Keras' newer format, which keys
# layers by class and position (`embedding_3`), so adding a feature would shift them.
WEIGHTS = Path("assets.extra") / "keras_weights.h5"


def dataset(config, tf_transform_output, files: list[str], model_inputs: list[str], training: bool) -> tf.data.Dataset:
    """Batches of (features, label) of the raw examples in `files`, transformed as they are read;
    for training in a shuffled order that repeats."""
    label = config.label.key
    ds = transformed.dataset(tf_transform_output, files, config.training.batch_size,
                             seed=config.training.seed if training else None)
    return ds.map(lambda features: ({k: features[k] for k in model_inputs}, features[label]))


def export(config, model, tf_transform_output, path: Path) -> None:
    """A SavedModel of what serving needs: the model's variables, the transform graph and its
    signatures (serving_default: raw serialized tf.Examples -> the model's output; classify or
    regress for TF Serving's Classify/Regress APIs; transform_features: for TFMA), and
    `assets.extra/label.json` (task and class names, which infra validation and evaluation read).
    A plain tf.Module, not the Keras model: saving a Keras model traces every layer's call
    for Keras metadata nobody here reads (measured: 13.0 s against 2.5 s, the same outputs)."""
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k not in config.label.raw_columns}
    inputs = list(model.input_names)
    examples = tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")

    def predict(serialized):
        transformed = module.tft_layer(tf.io.parse_example(serialized, serving_spec))
        return model({k: transformed[k] for k in inputs})

    @tf.function(input_signature=[examples])
    def serve(serialized):
        return {"outputs": predict(serialized)}

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        return module.tft_layer(tf.io.parse_example(serialized, raw_spec))

    classes = task.class_names(config, tf_transform_output)
    tf.saved_model.save(module, str(path), signatures={
        SERVING_SIGNATURE: serve, TRANSFORM_SIGNATURE: transform_features,
        **task.signatures(config, classes, predict)})
    task.set_method_names(path)
    (path / LABEL_INFO).parent.mkdir(exist_ok=True)
    artifacts.write_json(path / LABEL_INFO, {"task": config.label.task, "key": config.label.key, "classes": classes})


def distribution() -> tuple[tf.distribute.Strategy, dict]:
    """MirroredStrategy and mixed precision over all GPUs; the default strategy on CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    info = {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "devices": [d.name for d in gpus] or [d.name for d in tf.config.list_physical_devices("CPU")],
            "mixed_precision": bool(gpus)}
    log.info("distribution: %s", info)
    return strategy, info


def saved_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Each layer's weights by layer name, from a Keras HDF5 weights file (`model.save_weights`)."""
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        return {name: [f[name][w][()] for w in f[name].attrs["weight_names"]] for name in names}


def _tokens(vocabulary: Path) -> list[bytes]:
    """A vocabulary file's tokens in id order, read as tf.Transform reads it (vocabulary_by_name)."""
    with open(vocabulary, "rb") as f:
        return [line.rstrip(b"\n") for line in f]


def _row_blocks(layer, vocabularies: dict[str, str]) -> list[tuple[int, str | None]]:
    """How the rows of the layer's first weight split: (rows, the vocabulary whose ids index them or
    None). An Embedding's rows are its input's ids; a Dense kernel's are its (concatenated) inputs'
    columns, a one-hot block (CategoryEncoding) of a model input indexed by that input's ids.
    `vocabularies`: model input name -> vocabulary file name. No blocks outside a functional graph."""
    def inbound(part):  # the layer(s) feeding `part` (none in a subclassed model)
        return part.inbound_nodes[0].inbound_layers if part.inbound_nodes else None

    def vocabulary(part):
        source = inbound(part)
        return vocabularies.get(source.name) if isinstance(source, tf.keras.layers.InputLayer) else None

    if isinstance(layer, tf.keras.layers.Embedding):
        return [(layer.input_dim, vocabulary(layer))]
    source = inbound(layer)
    if not isinstance(layer, tf.keras.layers.Dense) or source is None:
        return []
    parts = inbound(source) if isinstance(source, tf.keras.layers.Concatenate) else [source]
    return [(part.output.shape[-1], vocabulary(part) if isinstance(part, tf.keras.layers.CategoryEncoding) else None)
            for part in parts]


def _remapped(fresh: list, old: list, blocks, old_assets: Path, new_assets: Path) -> tuple[list, dict]:
    """The old weights in the new layer's shapes, the first weight's rows block by block with
    tf.keras.utils.warmstart_embedding_matrix: a vocabulary's by token (a token in both keeps its old
    row, a new one its fresh row; the OOV buckets by index), any other block as it was. Raises
    ValueError where the old weights do not split so (e.g. the OOV bucket count changed)."""
    if [w.shape for w in fresh[1:]] != [w.shape for w in old[1:]] or fresh[0].shape[1:] != old[0].shape[1:]:
        raise ValueError(f"shape {[w.shape for w in old]} vs {[w.shape for w in fresh]}")
    ids, counts = [], {}  # per block: (old ids, new ids); per vocabulary: its tokens carried, new, dropped
    for size, vocabulary in blocks:
        if vocabulary is None:
            ids.append((list(range(size)), list(range(size))))
            continue
        if not (old_assets / vocabulary).exists():
            raise ValueError(f"no vocabulary {vocabulary!r} in the serving model's assets")
        new_tokens, old_tokens = _tokens(new_assets / vocabulary), _tokens(old_assets / vocabulary)
        oov = list(range(size - len(new_tokens)))  # the OOV buckets after the tokens (ints), as many as now
        ids.append((old_tokens + oov, new_tokens + oov))
        carried = len(set(old_tokens) & set(new_tokens))
        counts[vocabulary] = {"carried": carried, "new": len(new_tokens) - carried, "dropped": len(old_tokens) - carried}
    if sum(len(old_ids) for old_ids, _ in ids) != len(old[0]):
        raise ValueError(f"{len(old[0])} rows, not the {sum(len(o) for o, _ in ids)} of its inputs' vocabularies")
    rows, old_at, new_at = [], 0, 0
    for old_ids, new_ids in ids:
        rows.append(tf.keras.utils.warmstart_embedding_matrix(
            old_ids, new_ids, old[0][old_at:old_at + len(old_ids)],
            tf.keras.initializers.Constant(fresh[0][new_at:new_at + len(new_ids)])).numpy())
        old_at, new_at = old_at + len(old_ids), new_at + len(new_ids)
    return [np.concatenate(rows), *old[1:]], counts


def warm_start(config, model, tf_transform_output) -> dict:
    """Start the layers the config selects from the serving model's weights, by layer name. A layer
    whose rows are indexed by a vocabulary's ids (an embedding, a kernel over one-hot inputs) is
    remapped by token, as vocabularies grow and reorder day by day; any other layer loads when its
    shapes are unchanged. A selected layer that cannot be loaded keeps its fresh weights and is
    listed, with why, under `fresh`."""
    spec = config.training.warm_start
    model_dir = config.serving.model_dir()
    version = serving.latest_version(model_dir)
    source = model_dir / str(version) / WEIGHTS if version else None
    if not spec.enabled or source is None or not source.exists():
        why = "disabled" if not spec.enabled else "no serving model" if version is None else f"{source} missing"
        log.info("warm start: none (%s)", why)
        return {"from_version": None, "reason": why}
    old = saved_weights(source)
    old_assets = model_dir / str(version) / tf.saved_model.ASSETS_DIRECTORY
    new_assets = Path(tf_transform_output.transform_savedmodel_dir) / tf.saved_model.ASSETS_DIRECTORY
    vocabularies = {xf(path.name): path.name for path in new_assets.glob("*")}
    result = {"from_version": version, "layers": [], "remapped": {}, "fresh": {}, "not_selected": []}
    for layer in model.layers:
        if not layer.weights:
            continue
        if not any(re.fullmatch(p, layer.name) for p in spec.layers):
            result["not_selected"].append(layer.name)
            continue
        fresh, blocks = layer.get_weights(), _row_blocks(layer, vocabularies)
        try:
            if layer.name not in old:
                raise ValueError(f"no layer {layer.name!r} in version {version}")
            if any(vocabulary for _, vocabulary in blocks):
                weights, result["remapped"][layer.name] = _remapped(fresh, old[layer.name], blocks, old_assets, new_assets)
            elif [w.shape for w in fresh] == [w.shape for w in old[layer.name]]:
                weights = old[layer.name]
            else:
                raise ValueError(f"shape {[w.shape for w in old[layer.name]]} vs {[w.shape for w in fresh]}")
        except ValueError as e:
            result["fresh"][layer.name] = str(e)
            continue
        layer.set_weights(weights)
        result["layers"].append(layer.name)
    (log.warning if result["fresh"] else log.info)("warm start: %s", result)
    return result


def callbacks(config, backup_dir: Path, tensorboard_dir: Path) -> list:
    out = [tf.keras.callbacks.BackupAndRestore(str(backup_dir)),  # on retry, resume at the last epoch
           tf.keras.callbacks.TensorBoard(str(tensorboard_dir), write_graph=False, profile_batch=0)]
    stop = config.training.early_stopping
    if stop.patience is not None:
        out.append(tf.keras.callbacks.EarlyStopping(monitor=stop.monitor, patience=stop.patience,
                                                    min_delta=stop.min_delta, restore_best_weights=True))
    return out


def run(config, output_dir: Path, transform_graph: str, examples: str) -> dict:
    training = config.training
    tf.keras.backend.clear_session()  # layer names (warm start matches them) as in a fresh process
    tf.keras.utils.set_random_seed(training.seed)
    strategy, devices = distribution()
    tf_transform_output = tft.TFTransformOutput(transform_graph)
    with strategy.scope():
        model = user_module.model_fn(config)(config, tf_transform_output)
        warm = warm_start(config, model, tf_transform_output)
    training_spans = artifacts.read_result(Path(examples))["spans"]
    evaluated = spans.recent(training_spans, "eval", config.evaluation.recent_rows)
    train_ds = dataset(config, tf_transform_output, spans.files(training_spans, "train"), model.input_names, training=True)
    eval_ds = dataset(config, tf_transform_output, spans.files(evaluated, "eval"), model.input_names, training=False)
    backup_dir = output_dir.parent / f".{output_dir.name}.backup"
    steps_per_epoch = math.ceil(training.steps / training.epochs)
    # the eval rows of the spans evaluate judges on: with steps_per_execution > 1 Keras must be told
    eval_steps = max(1, math.ceil(sum(e["rows"]["eval"] for e in evaluated) / training.batch_size))
    timings, start = {}, time.perf_counter()
    with artifacts.atomic_dir(output_dir) as tmp:
        history = model.fit(train_ds, steps_per_epoch=steps_per_epoch, epochs=training.epochs,
                            validation_data=eval_ds, validation_steps=eval_steps, verbose=2,
                            callbacks=callbacks(config, backup_dir, tmp / TENSORBOARD))
        shutil.rmtree(backup_dir, ignore_errors=True)  # BackupAndRestore empties it but leaves it
        timings["fit"], start = time.perf_counter() - start, time.perf_counter()
        eval_metrics = model.evaluate(eval_ds, steps=eval_steps, return_dict=True, verbose=0)
        timings["evaluate"], start = time.perf_counter() - start, time.perf_counter()
        log.info("eval metrics: %s", eval_metrics)
        export(config, model, tf_transform_output, tmp / MODEL)
        model.save_weights(str(tmp / MODEL / WEIGHTS))
        timings["export"] = time.perf_counter() - start
        result = {"model": str(output_dir / MODEL), "tensorboard": str(output_dir / TENSORBOARD),
                  "steps": steps_per_epoch * len(history.epoch), "epochs_run": history.epoch,
                  "stopped_early": bool(history.epoch) and history.epoch[-1] + 1 < training.epochs,
                  "warm_start": warm, "distribution": devices,
                  "seconds": {k: round(v, 3) for k, v in timings.items()},
                  "train_metrics": {k: float(v[-1]) for k, v in history.history.items()},
                  "eval_metrics": {k: float(v) for k, v in eval_metrics.items()}}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
