"""taxi_trip_length: the length class of a trip from where and when it starts and ends.

The label is a class name computed from `trip_miles`; `task.label_ids` turns it into class ids
through the label's vocabulary, and `task.head` gives the softmax output, loss and metrics."""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from pipeline_lib import task


def preprocessing_fn(inputs, config):
    features = config.features
    outputs = {f"{key}_xf": tft.bucketize(task.dense(inputs[key], 0.0), features.bucket_count)
               for key in features.bucketized}
    for key in features.categorical:
        outputs[f"{key}_xf"] = tft.compute_and_apply_vocabulary(
            task.dense(inputs[key], -1), num_oov_buckets=1, vocab_filename=key)
    miles = task.dense(inputs["trip_miles"], 0.0)
    length = tf.where(miles < 2, "short", tf.where(miles < 8, "medium", "long"))
    outputs[config.label.key] = task.label_ids(length, config)
    return outputs  # transformed features end in _xf: TFMA slices on the raw ones


def build_model(config, tf_transform_output) -> keras.Model:
    """Embeddings of every feature, then the hidden layers."""
    inputs = {f"{key}_xf": keras.Input(shape=(1,), name=f"{key}_xf", dtype=tf.int64)
              for key in config.features.bucketized + config.features.categorical}
    x = keras.layers.concatenate([
        keras.layers.Flatten()(keras.layers.Embedding(
            tf_transform_output.num_buckets_for_transformed_feature(name), 8, name=f"embed_{name}")(value))
        for name, value in inputs.items()])
    for i, units in enumerate(config.training.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    output, loss, metrics = task.head(config, tf_transform_output)
    model = keras.Model(inputs, output(x))
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=loss,
                  metrics=metrics, steps_per_execution=config.training.steps_per_execution)
    return model
