"""Materialize or not (TFX's Transform `materialize`): the per-day cost of writing the window's
transformed examples and training from them, against training from the raw examples with the
transform graph applied as they are read (what train does), on a run's own graph and spans.

    .venv-ml/bin/python bench/materialize_bench.py CONFIG RUN_TRANSFORM_DIR [--steps 1000]

CONFIG: the pipeline's config; RUN_TRANSFORM_DIR: a run's transform folder (its graph and the
training spans its result lists). The graph changes every run (its vocabularies and statistics cover
the window), so materialized examples serve one run: a day's cost is the whole window's transform
and write, plus training. Prints the seconds of each part, back to back.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def materialize(config, graph: str, entries: list[dict], out: Path) -> float:
    """TransformDataset of the spans' train and eval rows, written as TFRecords (the window path's
    transform pass), in one Beam pipeline; its seconds."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import metadata_io
    from tfx_bsl.coders import example_coder

    from pipeline_lib import spans
    from pipeline_lib.beam import (
        batch_size,
        beam_pipeline,
        examples_source,
        read_examples,
    )

    raw_schema = metadata_io.read_metadata(str(Path(graph) / "metadata")).schema
    source = examples_source(schema=raw_schema)
    start = time.perf_counter()
    rows = sum(sum(e["rows"].values()) for e in entries)
    with tempfile.TemporaryDirectory() as tmp, beam_pipeline(config, rows, tmp) as p, tft_beam.Context(temp_dir=tmp):
        transform_fn = p | tft_beam.ReadTransformFn(graph)
        for split in ("train", "eval"):
            data = read_examples(p, spans.files(entries, split), split, batch_size(config), source)
            transformed, _ = ((data, source.TensorAdapterConfig()), transform_fn) | f"Transform[{split}]" >> \
                tft_beam.TransformDataset(output_record_batches=True)
            _ = (transformed
                 | f"Encode[{split}]" >> beam.FlatMap(lambda b: example_coder.RecordBatchToExamplesEncoder().encode(b[0]))
                 | f"Write[{split}]" >> beam.io.WriteToTFRecord(str(out / split / "data"), file_name_suffix=".tfrecord"))
    return time.perf_counter() - start


def fit_seconds(config, tf_transform_output, train_ds, steps: int) -> float:
    import tensorflow as tf

    from pipeline_lib import user_module

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.training.seed)
    model = user_module.model_fn(config)(config, tf_transform_output)
    names = model.input_names
    ds = train_ds.map(lambda f: ({k: f[k] for k in names}, f[config.label.key]))
    model.fit(ds.take(10), verbose=0)  # tracing, paid by both
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def main() -> None:
    import tensorflow as tf
    import tensorflow_transform as tft

    from pipeline_lib import artifacts, spans, transformed
    from pipeline_lib.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("transform", type=Path)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    config = load_config(args.config)
    result = artifacts.read_result(args.transform)
    entries, graph = result["spans"], result["transform_graph"]
    output = tft.TFTransformOutput(graph)
    with tempfile.TemporaryDirectory() as tmp:
        written = materialize(config, graph, entries, Path(tmp))
        spec = output.transformed_feature_spec()
        files = sorted(str(f) for f in (Path(tmp) / "train").glob("*.tfrecord"))
        from_disk = (tf.data.Dataset.from_tensor_slices(files).interleave(tf.data.TFRecordDataset)
                     .shuffle(10_000, seed=0).repeat().batch(config.training.batch_size)
                     .map(lambda s: tf.io.parse_example(s, spec)).prefetch(tf.data.AUTOTUNE))
        materialized = fit_seconds(config, output, from_disk, args.steps)
    raw = transformed.dataset(output, spans.files(entries, "train"), config.training.batch_size, seed=0)
    applied = fit_seconds(config, output, raw, args.steps)
    rows = sum(sum(e["rows"].values()) for e in entries)
    print(f"window: {len(entries)} spans, {rows:,} rows; {args.steps} training steps of {config.training.batch_size}")
    print(f"  materialized: transform and write the window {written:.1f} s + fit {materialized:.1f} s "
          f"= {written + materialized:.1f} s a day")
    print(f"  graph in the input pipeline: fit {applied:.1f} s a day")


if __name__ == "__main__":
    main()
