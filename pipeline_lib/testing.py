"""A test kit for feature code: a pipeline's preprocessing_fn on a handful of rows, with
tf.Transform's real analyzers, in process, in seconds (ML environment).

    from pipeline_lib.testing import transform_rows
    out = transform_rows(config, [{"fare": 10.0, "tips": 3.0, "payment_type": "Cash"}, ...])
    assert out[0]["big_tipper"] == 1

The rows become tf.Examples exactly as ingest writes them and are decoded with the pipeline's
schema exactly as the transform step decodes them, so missing values, types and full-pass analyzers
(`tft.scale_to_z_score`, vocabularies, ...) behave as in a run: over these rows alone. A column the
rows leave out is missing in every row.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline_lib import user_module
from pipeline_lib.steps.ingest import to_examples

ROW = "__row__"  # each row's index, passed through the transformation to give the rows back in order
ARROW_TYPES = {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float32(), schema_pb2.BYTES: pa.string()}


def _schema(config, rows: list[dict]) -> schema_pb2.Schema:
    """The pipeline's curated schema (or, before its first run, one read off the rows' Python
    types), plus the row index as a dense feature."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_transform.tf_metadata import schema_utils

    path = config.schema_path()
    if path.exists():
        schema = text_format.Parse(path.read_text(), schema_pb2.Schema())
    else:
        kinds = {}
        for row in rows:
            for key, value in row.items():
                if value is not None:
                    kinds.setdefault(key, tf.string if isinstance(value, str) else
                                     tf.int64 if isinstance(value, int) else tf.float32)
        schema = schema_utils.schema_from_feature_spec({k: tf.io.VarLenFeature(t) for k, t in kinds.items()})
    unknown = sorted({key for row in rows for key in row} - {f.name for f in schema.feature})
    if unknown:
        raise ValueError(f"rows hold columns the schema ({path.name}) lacks: {unknown}")
    feature = schema.feature.add(name=ROW, type=schema_pb2.INT)
    feature.shape.dim.add(size=1)
    feature.presence.min_fraction = 1.0
    return schema


class _Inputs(dict):
    def __missing__(self, key):
        raise KeyError(f"preprocessing_fn reads {key!r}, which neither the rows nor the schema hold")


def transform_rows(config, rows: list[dict], preprocessing_fn: Callable | None = None) -> list[dict]:
    """The transformed features of each row, in the rows' order: one value per feature where the
    transformation gives one, a list otherwise. `preprocessing_fn(inputs, config)`: another one than
    the pipeline module's. Raises when the label (`label.key`) is not output."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio

    from pipeline_lib.beam import beam_pipeline

    schema = _schema(config, rows)
    columns = {ROW: pa.array(range(len(rows)), pa.int64())}
    for f in schema.feature:
        if f.name != ROW:
            columns[f.name] = pa.array([row.get(f.name) for row in rows], ARROW_TYPES[f.type])
    examples = to_examples(pa.table(columns))
    fn = functools.partial(preprocessing_fn, config=config) if preprocessing_fn else user_module.preprocessing_fn(config)

    def with_row(inputs: Mapping):
        outputs = dict(fn(_Inputs({k: v for k, v in inputs.items() if k != ROW})))
        outputs[ROW] = inputs[ROW]
        return outputs

    source = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["testing"], schema=schema)
    with tempfile.TemporaryDirectory() as tmp:
        with beam_pipeline(config, len(rows), tmp) as p, tft_beam.Context(temp_dir=tmp):
            raw = p | beam.Create(examples) | source.BeamSource()
            (transformed, _), _ = ((raw, source.TensorAdapterConfig())
                                   | tft_beam.AnalyzeAndTransformDataset(with_row, output_record_batches=True))
            _ = (transformed
                 | beam.Map(lambda batch: json.dumps(batch[0].to_pydict(), default=bytes.decode))
                 | beam.io.WriteToText(str(Path(tmp) / "out")))
        batches = [json.loads(line) for out in sorted(Path(tmp).glob("out*")) for line in out.read_text().splitlines()]
    out = [None] * len(rows)
    for batch in batches:
        for i, index in enumerate(batch.pop(ROW)):
            out[_scalar(index)] = {name: _scalar(values[i]) for name, values in batch.items()}
    if out and config.label.key not in out[0]:
        raise ValueError(f"preprocessing_fn did not output the label {config.label.key!r} (label.key); "
                         f"it output {sorted(out[0])}")
    return out


def _scalar(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value
