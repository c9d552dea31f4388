"""taxi_tips: the data scientist's part of the pipeline, a preprocessing_fn and a model builder.

Features are transformed by the platform's ready-made code for their kind (pipeline_lib.transforms,
from pipeline.yaml's lists); what is really taxi's is the label: `big_tipper`, a tip above 20% of
the fare, computed here from `tips` and `fare`, so serving requests need no tips column.
"""

import tensorflow as tf
import tf_keras as keras

from pipeline_lib.transforms import dense, transform_features, xf


def preprocessing_fn(inputs, config):
    outputs = transform_features(inputs, config)
    fare = dense(inputs["fare"], float("nan"))
    tips = dense(inputs["tips"], 0.0)
    outputs[config.label.key] = tf.where(
        tf.math.is_nan(fare), tf.zeros_like(fare, tf.int64),
        tf.cast(tips > fare * 0.2, tf.int64))
    return outputs


def build_model(config, tf_transform_output) -> keras.Model:
    """A small wide-and-deep DNN over the transformed features."""
    features = config.features
    inputs, deep, wide = {}, [], []
    for key in features.numeric:
        inputs[xf(key)] = keras.Input(shape=(1,), name=xf(key), dtype=tf.float32)
        deep.append(inputs[xf(key)])
    for key in features.bucketized + features.categorical + features.vocabulary:
        name = xf(key)
        inputs[name] = keras.Input(shape=(1,), name=name, dtype=tf.int64)
        buckets = tf_transform_output.num_buckets_for_transformed_feature(name)
        wide.append(keras.layers.CategoryEncoding(num_tokens=buckets, output_mode="one_hot")(inputs[name]))
        deep.append(keras.layers.Flatten()(keras.layers.Embedding(buckets, 4, name=f"embed_{key}")(inputs[name])))
    x = keras.layers.concatenate(deep)
    for i, units in enumerate(config.training.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    # named layers: warm start matches them by name; float32 output under mixed precision on GPU
    output = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="output")(
        keras.layers.concatenate([x, *wide]))
    model = keras.Model(inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate),
                  loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(), keras.metrics.AUC(name="auc")],
                  steps_per_execution=config.training.steps_per_execution)
    return model
