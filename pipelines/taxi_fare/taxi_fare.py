"""taxi_fare: a trip's fare from its distance, duration, start hour and payment type.

`task.head` gives the linear output, loss and metrics of a regression label."""

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
    outputs = {key: tft.scale_to_z_score(tf.cast(_dense(inputs[key], 0), tf.float32)) for key in features.numeric}
    for key in features.categorical + features.vocabulary:
        default = "" if inputs[key].dtype == tf.string else -1
        outputs[key] = tft.compute_and_apply_vocabulary(_dense(inputs[key], default), num_oov_buckets=1,
                                                        vocab_filename=key)
    outputs[config.label.key] = tf.cast(_dense(inputs["fare"], 0.0), tf.float32)
    return outputs


def build_model(config, tf_transform_output) -> keras.Model:
    """The numbers as they are, the ids through embeddings, then the hidden layers."""
    features = config.features
    inputs = {key: keras.Input(shape=(1,), name=key, dtype=tf.float32) for key in features.numeric}
    ids = {key: keras.Input(shape=(1,), name=key, dtype=tf.int64) for key in features.categorical + features.vocabulary}
    x = keras.layers.concatenate([*inputs.values(), *(
        keras.layers.Flatten()(keras.layers.Embedding(
            tf_transform_output.num_buckets_for_transformed_feature(key), 4, name=f"embed_{key}")(value))
        for key, value in ids.items())])
    for i, units in enumerate(config.training.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    output, loss, metrics = task.head(config, tf_transform_output)
    model = keras.Model({**inputs, **ids}, output(x))
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=loss,
                  metrics=metrics, steps_per_execution=config.training.steps_per_execution)
    return model
