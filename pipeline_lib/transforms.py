"""Ready-made tf.Transform feature code, by feature kind (config `features`), for a
preprocessing_fn to call or to be used whole: the platform's default when a module defines none.

Each raw column `c` becomes `xf(c)`:
- numeric: missing values take the column's mean, then z-score scaling;
- bucketized: `bucket_count` buckets at the quantiles of the present values; a missing value takes
  the column's mean, then its bucket;
- categorical (small integer ids) and vocabulary (strings): a vocabulary of the `vocab_size` most
  frequent values plus `oov_buckets` hashed buckets for unseen ones; a missing value gets id 0, a
  token the vocabulary reserves (MISSING), whether the analyzed rows had missing values or not:
  the same id in training, serving and the test kit (without it, a missing string, "", would be
  hashed among the unseen values, as tf.Transform keeps no empty token).
The label (`label.key`, from its one raw column) by `label.task`: binary a 0/1 integer, multiclass
class ids through the label's vocabulary (pipeline_lib.task.label_ids), regression a float.

Every analyzer reads the raw values, none another analyzer's result (one analysis phase): a phase
that needs an earlier one's result (e.g. quantiles of mean-filled values) makes tf.Transform read
every span of the window again, where a single phase reads only the new span and merges the
others' cached results (steps/transform.py).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from pipeline_lib import task
from pipeline_lib.task import dense

MISSING = {tf.string: "__missing__", tf.int64: -1}  # a categorical column's missing value, by dtype


def xf(name: str) -> str:
    """The transformed feature's name: what the model's inputs are called."""
    return f"{name}_xf"


def _present(x):
    """(the present values, x dense with its mean where missing, the mean) of a raw column."""
    x = tf.cast(x, tf.float32)
    values = x.values if isinstance(x, tf.sparse.SparseTensor) else x
    mean = tft.mean(values)
    return values, dense(x, mean), mean


def scaled_to_z_score(x):
    """The z-score of x with missing values filled with the mean, in one phase: filling with the
    mean keeps it and adds nothing to the squared deviations, so the variance of the filled values
    is the present values' times (present / rows). (Every analyzer's input is raw: the rows are
    counted on x filled with 0, not with the mean, which would be a second phase.)"""
    values, filled, mean = _present(x)
    rows = tft.size(dense(tf.cast(x, tf.float32), 0.0))
    variance = tft.var(values) * tf.cast(tft.size(values), tf.float32) / tf.cast(rows, tf.float32)
    return tf.where(variance > 0, (filled - mean) / tf.sqrt(variance), filled - mean)


def bucketized(x, bucket_count: int):
    """Buckets at the present values' quantiles (tft.bucketize's epsilon), a missing value in the
    mean's bucket."""
    values, filled, _ = _present(x)
    return tft.apply_buckets(filled, tft.quantiles(values, bucket_count, epsilon=min(1.0 / bucket_count, 0.01)))


def transform_features(inputs, config) -> dict:
    """Every configured feature, transformed by its kind."""
    features = config.features
    outputs = {}
    for key in features.numeric:
        outputs[xf(key)] = scaled_to_z_score(inputs[key])
    for key in features.bucketized:
        outputs[xf(key)] = bucketized(inputs[key], features.bucket_count)
    for key in features.categorical + features.vocabulary:
        missing = MISSING[inputs[key].dtype]
        outputs[xf(key)] = tft.compute_and_apply_vocabulary(
            dense(inputs[key], missing), top_k=features.vocab_size, num_oov_buckets=features.oov_buckets,
            vocab_filename=key, reserved_tokens=[str(missing)])
    return outputs


def transform_label(inputs, config):
    """The label as the task needs it, from its one raw column as it is."""
    columns = config.label.raw_columns
    if len(columns) != 1:
        raise ValueError(f"field 'label.raw_columns': the platform's preprocessing_fn takes the label from one "
                         f"column as it is, not {columns}: compute it in the module's preprocessing_fn")
    raw = inputs[columns[0]]
    if config.label.task == "regression":
        return dense(tf.cast(raw, tf.float32), 0.0)
    if config.label.task == "binary":
        return dense(tf.cast(raw, tf.int64), 0)
    names = dense(raw, "") if raw.dtype == tf.string else tf.strings.as_string(dense(raw, -1))
    return task.label_ids(names, config)


def preprocessing_fn(inputs, config):
    """The platform's preprocessing_fn: every feature by its kind, and the label."""
    return {**transform_features(inputs, config), config.label.key: transform_label(inputs, config)}
