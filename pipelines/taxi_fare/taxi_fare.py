"""taxi_fare: a trip's fare from its distance, duration, start hour and payment type.

`task.head` gives the linear output, loss and metrics of a regression label."""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from pipeline_lib import task


def preprocessing_fn(inputs, config):
    features = config.features
    outputs = {f"{key}_xf": tft.scale_to_z_score(tf.cast(task.dense(inputs[key], 0), tf.float32))
               for key in features.numeric}
    for key in features.categorical + features.vocabulary:
        default = "" if inputs[key].dtype == tf.string else -1
        outputs[f"{key}_xf"] = tft.compute_and_apply_vocabulary(
            task.dense(inputs[key], default), num_oov_buckets=1, vocab_filename=key)
    outputs[config.label.key] = tf.cast(task.dense(inputs["fare"], 0.0), tf.float32)
    return outputs  # transformed features end in _xf: TFMA slices on the raw ones


def build_model(config, tf_transform_output) -> keras.Model:
    """The numbers as they are, the ids through embeddings, then the hidden layers."""
    features = config.features
    numbers = {f"{key}_xf": keras.Input(shape=(1,), name=f"{key}_xf") for key in features.numeric}
    ids = {f"{key}_xf": keras.Input(shape=(1,), name=f"{key}_xf", dtype=tf.int64)
           for key in features.categorical + features.vocabulary}
    x = keras.layers.concatenate([*numbers.values(), *(
        keras.layers.Flatten()(keras.layers.Embedding(
            tf_transform_output.num_buckets_for_transformed_feature(name), 4, name=f"embed_{name}")(value))
        for name, value in ids.items())])
    for i, units in enumerate(config.training.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    output, loss, metrics = task.head(config, tf_transform_output)
    model = keras.Model({**numbers, **ids}, output(x))
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=loss,
                  metrics=metrics, steps_per_execution=config.training.steps_per_execution)
    return model
