"""taxi_tips: the data scientist's part of the pipeline, a preprocessing_fn and a model builder.

Both read the feature lists from pipeline.yaml, so adding a feature of a known kind is a config
change. Transformed features are named `<raw>_xf`; the label `big_tipper` is computed here from
`tips` and `fare`, so serving requests need no tips column.
"""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from pipeline_lib import task


def xf(name: str) -> str:
    return f"{name}_xf"


def _dense(x, default):
    """A var-len (possibly missing) feature as a dense rank-1 tensor with `default` for missing."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
        return tf.squeeze(x, axis=1)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs, config):
    features = config.features
    outputs = {}
    for key in features.numeric:
        outputs[xf(key)] = tft.scale_to_z_score(_dense(tf.cast(inputs[key], tf.float32), 0.0))
    for key in features.bucketized:
        outputs[xf(key)] = tft.bucketize(_dense(inputs[key], 0.0), features.bucket_count)
    for key in features.categorical + features.vocabulary:
        default = "" if inputs[key].dtype == tf.string else -1
        outputs[xf(key)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[key], default), top_k=features.vocab_size,
            num_oov_buckets=features.oov_buckets, vocab_filename=key)
    fare = _dense(inputs["fare"], float("nan"))
    tips = _dense(inputs["tips"], 0.0)
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
    # named layers: warm start matches them by name; the output layer, loss and metrics follow label.task
    output, loss, metrics = task.head(config, tf_transform_output)
    model = keras.Model(inputs, output(keras.layers.concatenate([x, *wide])))
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=loss,
                  metrics=metrics, steps_per_execution=config.training.steps_per_execution)
    return model
