"""Train: the user's Keras model on the transformed examples, exported as a SavedModel that
carries the transform graph, so serving takes raw serialized tf.Examples."""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.autograph.core import config as autograph_config

from pipeline_lib import artifacts, user_module
from pipeline_lib.serving import SERVING_SIGNATURE, TRANSFORM_SIGNATURE

log = logging.getLogger(__name__)

# AutoGraph leaves `keras` unconverted but rewrites every function of `tf_keras` (the same code
# under its TF 2.16 name): measured here, the first training step took 19.4 s with it, 2.0 s without.
autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"),
                                     *autograph_config.CONVERSION_RULES)
MODEL = "model"


def dataset(config, transformed: Path, split: str, feature_spec: dict, model_inputs: list[str],
            training: bool) -> tf.data.Dataset:
    """Batches of (features, label) from the transformed TFRecords: parallel reads and parsing."""
    files = sorted(str(p) for p in (transformed / split).glob("*.tfrecord"))
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
    if training:
        ds = ds.shuffle(10_000, seed=0).repeat()
    label = config.label.key

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, feature_spec)
        return {k: parsed[k] for k in model_inputs}, parsed[label]

    return (ds.batch(config.training.batch_size)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def signatures(model, tf_transform_output, label_inputs: list[str]) -> dict:
    """serving_default: raw serialized tf.Example -> probability; transform_features: for TFMA."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k not in label_inputs}
    inputs = list(model.input_names)
    examples = tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")

    @tf.function(input_signature=[examples])
    def serve(serialized):
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        return {"outputs": model({k: transformed[k] for k in inputs})}

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, raw_spec))

    return {SERVING_SIGNATURE: serve, TRANSFORM_SIGNATURE: transform_features}


def run(config, output_dir: Path, transform_graph: str, transformed_examples: str) -> dict:
    tf.keras.utils.set_random_seed(config.training.seed)
    tf_transform_output = tft.TFTransformOutput(transform_graph)
    spec = tf_transform_output.transformed_feature_spec()
    model = user_module.model_fn(config)(config, tf_transform_output)
    transformed = Path(transformed_examples)
    train_ds = dataset(config, transformed, "train", spec, model.input_names, training=True)
    eval_ds = dataset(config, transformed, "eval", spec, model.input_names, training=False)
    with artifacts.atomic_dir(output_dir) as tmp:
        history = model.fit(train_ds, steps_per_epoch=config.training.steps, epochs=1, verbose=2)
        eval_metrics = model.evaluate(eval_ds, return_dict=True, verbose=0)
        log.info("eval metrics: %s", eval_metrics)
        tf.saved_model.save(model, str(tmp / MODEL),
                            signatures=signatures(model, tf_transform_output, config.label.raw_columns))
        result = {"model": str(output_dir / MODEL), "steps": config.training.steps,
                  "train_metrics": {k: float(v[-1]) for k, v in history.history.items()},
                  "eval_metrics": {k: float(v) for k, v in eval_metrics.items()}}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
