"""Ready-made Keras models over the transformed features, for every task kind: the platform's
model when a pipeline's module defines none (config `training.model`).

- `wide_and_deep`: numbers and embedded ids through the hidden layers (deep), every id also
  one-hot straight to the output (wide);
- `dnn`: the deep part alone.
The output layer, loss and metrics follow `label.task` (pipeline_lib.task.head). Layers are named
(`embed_<feature>`, `hidden_<i>`, `output`): warm start matches them by name.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from pipeline_lib import task
from pipeline_lib.transforms import xf


def _build(config, tf_transform_output, wide: bool) -> keras.Model:
    features = config.features
    inputs, deep, one_hot = {}, [], []
    for key in features.numeric:
        inputs[xf(key)] = keras.Input(shape=(1,), name=xf(key), dtype=tf.float32)
        deep.append(inputs[xf(key)])
    for key in features.bucketized + features.categorical + features.vocabulary:
        name = xf(key)
        inputs[name] = keras.Input(shape=(1,), name=name, dtype=tf.int64)
        buckets = tf_transform_output.num_buckets_for_transformed_feature(name)
        deep.append(keras.layers.Flatten()(keras.layers.Embedding(buckets, 4, name=f"embed_{key}")(inputs[name])))
        if wide:
            one_hot.append(keras.layers.CategoryEncoding(num_tokens=buckets, output_mode="one_hot")(inputs[name]))
    x = keras.layers.concatenate(deep) if len(deep) > 1 else deep[0]
    for i, units in enumerate(config.training.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    output, loss, metrics = task.head(config, tf_transform_output)
    model = keras.Model(inputs, output(keras.layers.concatenate([x, *one_hot]) if one_hot else x))
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=loss,
                  metrics=metrics, steps_per_execution=config.training.steps_per_execution)
    return model


def wide_and_deep(config, tf_transform_output) -> keras.Model:
    return _build(config, tf_transform_output, wide=True)


def dnn(config, tf_transform_output) -> keras.Model:
    return _build(config, tf_transform_output, wide=False)


MODELS = {"wide_and_deep": wide_and_deep, "dnn": dnn}
