"""taxi_trip_length: the length class of a trip from where and when it starts and ends.

The label is a class name computed from `trip_miles`; `task.label_ids` turns it into class ids
through the label's vocabulary, and `task.head` gives the softmax output, loss and metrics."""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from pipeline_lib import task


def _dense(x, default):
    """A possibly missing feature as a dense rank-1 tensor with `default` where it is missing."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs, config):
    features = config.features
    outputs = {key: tft.bucketize(_dense(inputs[key], 0.0), features.bucket_count) for key in features.bucketized}
    for key in features.categorical:
        outputs[key] = tft.compute_and_apply_vocabulary(_dense(inputs[key], -1), num_oov_buckets=1, vocab_filename=key)
    miles = _dense(inputs["trip_miles"], 0.0)
    length = tf.where(miles < 2, "short", tf.where(miles < 8, "medium", "long"))
    outputs[config.label.key] = task.label_ids(length, config)
    return outputs


def build_model(config, tf_transform_output) -> keras.Model:
    """Embeddings of every feature, then the hidden layers."""
    inputs = {key: keras.Input(shape=(1,), name=key, dtype=tf.int64)
              for key in config.features.bucketized + config.features.categorical}
    x = keras.layers.concatenate([
        keras.layers.Flatten()(keras.layers.Embedding(
            tf_transform_output.num_buckets_for_transformed_feature(key), 8, name=f"embed_{key}")(value))
        for key, value in inputs.items()])
    for i, units in enumerate(config.training.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    output, loss, metrics = task.head(config, tf_transform_output)
    model = keras.Model(inputs, output(x))
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=loss,
                  metrics=metrics, steps_per_execution=config.training.steps_per_execution)
    return model
