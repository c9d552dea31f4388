"""Transform: tf.Transform analyzes the training split and transforms both splits; the transform
graph is saved so that training and serving apply exactly the same transformation. The label it
computes is then checked (pipeline_lib.label_check): its findings are filed before training."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import apache_beam as beam
from apache_beam.internal.cloudpickle import cloudpickle
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.coders import example_coder
from tfx_bsl.public import tfxio

from pipeline_lib import artifacts, label_check, user_module
from pipeline_lib.beam import batch_size, beam_pipeline
from pipeline_lib.steps.ingest import SPLITS

TRANSFORM_GRAPH = "transform_graph"
TRANSFORMED = "transformed"


def _encode(batch_and_passthrough):
    record_batch, _ = batch_and_passthrough
    return example_coder.RecordBatchToExamplesEncoder().encode(record_batch)


def label_of(config, folder: Path) -> dict[str, dict]:
    """The transformed label's summary per split."""
    schema = metadata_io.read_metadata(str(folder / TRANSFORM_GRAPH / "transformed_metadata")).schema
    return {split: label_check.summary(label_check.label_values(sorted((folder / TRANSFORMED / split).glob("*")),
                                                                 config.label.key, schema), config.label.task)
            for split in SPLITS}


def run(config, output_dir: Path, examples: str, schema: str) -> dict:
    examples = Path(examples)
    raw_schema = text_format.Parse(Path(schema).read_text(), schema_pb2.Schema())  # TFDV's import: seconds
    rows = artifacts.read_result(examples)["rows"]
    num_rows = sum(rows.values())
    preprocessing_fn = user_module.preprocessing_fn(config)
    # the module was loaded from its file, so Beam's workers (other processes, Dataflow) cannot
    # import it: its functions travel by value in the pickled pipeline
    module = user_module.load(config)
    if module is not None:  # a config-only pipeline runs the platform's code, which workers import
        cloudpickle.register_pickle_by_value(module)
    with artifacts.atomic_dir(output_dir) as tmp, tempfile.TemporaryDirectory() as beam_tmp:
        with beam_pipeline(config, num_rows, beam_tmp) as p, \
                tft_beam.Context(temp_dir=beam_tmp):
            def read(split: str, label: str):
                source = tfxio.TFExampleRecord(file_pattern=str(examples / split / "*"), schema=raw_schema)
                return p | label >> source.BeamSource(batch_size(config)), source.TensorAdapterConfig()

            # the train split is read twice, once to analyze and once to transform, so the transform
            # pass needs nothing kept from the analysis. A multi-phase analysis still holds the split
            # in the runner between its phases (taxi at 1.5M: ~2 GB, 850 MiB with one phase;
            # docs/benchmarks.md)
            transform_fn = read("train", "ReadToAnalyze") | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
            for split in SPLITS:
                transformed, _ = ((read(split, f"Read[{split}]"), transform_fn)
                                  | f"Transform[{split}]" >> tft_beam.TransformDataset(output_record_batches=True))
                _ = (transformed
                     | f"Encode[{split}]" >> beam.FlatMap(_encode)
                     | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                         str(tmp / TRANSFORMED / split / "data"), file_name_suffix=".tfrecord"))
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(tmp / TRANSFORM_GRAPH))
        # WriteTransformFn leaves out the raw metadata that TFTransformOutput.raw_feature_spec() reads
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata(raw_schema), str(tmp / TRANSFORM_GRAPH / "metadata"))
        label = label_of(config, tmp)
        span = dt.date.fromisoformat(artifacts.read_result(examples)["window"]["end"][:10])
        previous = artifacts.previous_run_file(config.name, span, "transform", artifacts.RESULT_FILENAME)
        previous_label = artifacts.read_result(previous.parent).get("label") if previous else None
        found = label_check.findings(config, label, previous_label)
        result = {"transform_graph": str(output_dir / TRANSFORM_GRAPH),
                  "transformed_examples": str(output_dir / TRANSFORMED), "rows": rows, "label": label,
                  "anomalies": found, "blocking": sum(f["severity"] == "blocking" for f in found)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
