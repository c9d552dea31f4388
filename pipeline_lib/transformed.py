"""Raw tf.Examples as the model sees them: the transform graph applied in the input pipeline (TFX's
`materialize=False`). The transform graph changes with every run (its vocabularies and statistics
cover the window), so transformed examples written to disk would be good for one run only: a
window's worth of writing every day, where training reads `training.steps` batches of it
(docs/benchmarks.md has the measurement)."""

from __future__ import annotations

import tensorflow as tf


def write_raw_metadata(raw_schema, graph) -> None:
    """Into a transform graph that WriteTransformFn wrote: the raw metadata it leaves out, which
    raw_feature_spec() reads here (the transform step and the test kit save their graphs so)."""
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(raw_schema), f"{graph}/metadata")


def dataset(tf_transform_output, files: list[str], batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Batches of transformed feature dicts from the raw TFRecord `files` (many spans' shards).
    With a `seed`, the files are read in a shuffled order, interleaved and shuffled again, and the
    data repeats (training: the model sees the whole window, not its oldest spans first); without,
    once in order."""
    raw_spec = tf_transform_output.raw_feature_spec()
    layer = tf_transform_output.transform_features_layer()
    ds = tf.data.Dataset.from_tensor_slices(files)
    if seed is not None:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16) or 1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if seed is not None:
        ds = ds.shuffle(10_000, seed=seed).repeat()
    return (ds.batch(batch_size)
            .map(lambda serialized: layer(tf.io.parse_example(serialized, raw_spec)), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def transform(tf_transform_output):
    """The transform graph as one function of a batch of serialized raw tf.Examples, traced once
    (a tf.data map traces it again for every dataset: ~2 s each)."""
    raw_spec = tf_transform_output.raw_feature_spec()
    layer = tf_transform_output.transform_features_layer()
    return tf.function(lambda serialized: layer(tf.io.parse_example(serialized, raw_spec)),
                       input_signature=[tf.TensorSpec([None], tf.string)])


def records(files: list[str], batch_size: int) -> tf.data.Dataset:
    """The serialized records of `files`, in order, in batches."""
    return tf.data.TFRecordDataset(files).batch(batch_size).prefetch(tf.data.AUTOTUNE)
