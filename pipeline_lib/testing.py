"""A test kit for feature code: a pipeline's preprocessing_fn on a handful of rows, with
tf.Transform's real analyzers, in process, in seconds (ML environment).

    from pipeline_lib.testing import transform_rows
    out = transform_rows(config, [{"fare": 10.0, "tips": 3.0, "payment_type": "Cash"}, ...])
    assert out[0]["big_tipper"] == 1

The rows become tf.Examples exactly as ingest writes them; tf.Transform analyzes them with the
pipeline's schema as the transform step does and saves the transform graph, which is applied to
them as training and serving apply it (pipeline_lib.transformed). So missing values, types and
full-pass analyzers (`tft.scale_to_z_score`, vocabularies, ...) behave as in a run: over these rows
alone. A column the rows leave out is missing in every row.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline_lib import user_module
from pipeline_lib.steps.ingest import to_examples

ARROW_TYPES = {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float32(), schema_pb2.BYTES: pa.string()}


def _schema(config, rows: list[dict]) -> schema_pb2.Schema:
    """The pipeline's curated schema (or, before its first run, one read off the rows' Python
    types)."""
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
    return schema


class _Inputs(dict):
    def __missing__(self, key):
        raise KeyError(f"preprocessing_fn reads {key!r}, which neither the rows nor the schema hold")


def transform_rows(config, rows: list[dict], preprocessing_fn: Callable | None = None) -> list[dict]:
    """The transformed features of each row, in the rows' order: one value per feature where the
    transformation gives one, a list otherwise. `preprocessing_fn(inputs, config)`: another one than
    the pipeline module's. Raises when the label (`label.key`) is not output."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio

    from pipeline_lib import transformed
    from pipeline_lib.beam import beam_pipeline

    schema = _schema(config, rows)
    examples = to_examples(pa.table({f.name: pa.array([row.get(f.name) for row in rows], ARROW_TYPES[f.type])
                                     for f in schema.feature}))
    fn = functools.partial(preprocessing_fn, config=config) if preprocessing_fn else user_module.preprocessing_fn(config)
    source = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["testing"], schema=schema)
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "transform_graph"
        with beam_pipeline(config, len(rows), tmp) as p, tft_beam.Context(temp_dir=tmp):
            raw = p | beam.Create(examples) | source.BeamSource()
            transform_fn = ((raw, source.TensorAdapterConfig())
                            | tft_beam.AnalyzeDataset(lambda inputs: dict(fn(_Inputs(inputs)))))
            _ = transform_fn | tft_beam.WriteTransformFn(str(graph))
        transformed.write_raw_metadata(schema, graph)
        batch = transformed.transform(tft.TFTransformOutput(str(graph)))(tf.constant(examples, tf.string))
        columns = {name: _rows(values) for name, values in batch.items()}
    if config.label.key not in columns:
        raise ValueError(f"preprocessing_fn did not output the label {config.label.key!r} (label.key); "
                         f"it output {sorted(columns)}")
    return [{name: _scalar(values[i]) for name, values in columns.items()} for i in range(len(rows))]


def _rows(tensor) -> list:
    """A transformed feature's values, one Python value or list per row (bytes decoded)."""
    import tensorflow as tf

    if isinstance(tensor, tf.sparse.SparseTensor):
        tensor = tf.RaggedTensor.from_sparse(tensor)
    values = tensor.to_list() if isinstance(tensor, tf.RaggedTensor) else tensor.numpy().tolist()
    return [_decoded(v) for v in values]


def _decoded(value):
    return [_decoded(v) for v in value] if isinstance(value, list) else value.decode() if isinstance(value, bytes) else value


def _scalar(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value
