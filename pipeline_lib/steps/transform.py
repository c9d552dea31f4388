"""Transform: tf.Transform analyzes the train split of the window's spans and saves the transform
graph, so that training and serving apply exactly the same transformation. The analysis reads only
the spans whose analyzer results are not cached (normally the new one) and merges the cached ones'
(pipeline_lib.analyzer_cache). Nothing is transformed here: training and evaluation apply the graph
as they read (pipeline_lib.transformed).

Spans with a blocking anomaly still open (`exclude_spans`, from the tracker) stay out of the
training window. The label of each span the run checks is computed with the new graph and checked
(pipeline_lib.label_check): its findings are filed before training."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import tensorflow_transform.beam as tft_beam
from apache_beam.internal.cloudpickle import cloudpickle
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.beam import analyzer_cache as tft_cache
from tensorflow_transform.beam.analysis_graph_builder import (
    get_analysis_cache_entry_keys,
)
from tfx_bsl.tfxio.tensor_adapter import TensorAdapter

from pipeline_lib import (
    analyzer_cache,
    artifacts,
    label_check,
    spans,
    transformed,
    user_module,
)
from pipeline_lib.beam import batch_size, beam_pipeline, examples_source, read_examples
from pipeline_lib.steps.ingest import SPLITS
from pipeline_lib.steps.validate import merge

TRANSFORM_GRAPH = "transform_graph"
CACHED = tft_cache.DatasetKey("cached")


def analyze(config, training: list[dict], raw_schema, output: Path, scratch: Path) -> dict:
    """The transform graph of the spans `training` (with train rows) into `output`, merging cached
    analyzer results and caching those it computes; what was read and what merged."""
    preprocessing_fn = user_module.preprocessing_fn(config)
    source = examples_source(schema=raw_schema)
    adapter = source.TensorAdapterConfig()
    needed = set(get_analysis_cache_entry_keys(preprocessing_fn, TensorAdapter(adapter).OriginalTypeSpecs(), [CACHED], False))
    cached, to_read = analyzer_cache.plan(training, needed)
    with tempfile.TemporaryDirectory() as beam_tmp:
        with beam_pipeline(config, sum(e["rows"]["train"] for u in to_read for e in u), beam_tmp) as p, \
                tft_beam.Context(temp_dir=beam_tmp):
            data, cache, new_units = {}, {}, {}
            if cached:
                data[CACHED], cache[CACHED] = None, analyzer_cache.cached_dataset(p, cached)
            for i, unit in enumerate(to_read):
                key = tft_cache.DatasetKey(f"unit{i}")
                data[key] = read_examples(p, spans.files(unit, "train"), key.key, batch_size(config), source)
                new_units[key] = unit
            transform_fn, output_cache = (data, cache, adapter) | "Analyze" >> tft_beam.AnalyzeDatasetWithCache(preprocessing_fn)
            written = analyzer_cache.write_units(output_cache or {}, new_units, scratch)
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(output))
        analyzer_cache.keep(written)
    transformed.write_raw_metadata(raw_schema, output)
    return {"cached_units": len(cached), "cached_spans": sum(len(u["spans"]) for u in cached),
            "read_units": len(to_read), "read_spans": sum(len(u) for u in to_read),
            "read_rows": sum(e["rows"]["train"] for u in to_read for e in u)}


def span_labels(config, graph: Path, entries: list[dict]) -> dict[str, dict]:
    """Each span's label summary: kept (label.json of its current ingest), or computed with the new
    transform graph and kept."""
    import tensorflow_transform as tft

    from pipeline_lib import task

    out, apply = {}, None
    for entry in entries:
        path = Path(entry["path"]) / spans.LABEL
        kept = json.loads(path.read_text()) if path.is_file() else None
        if kept and kept["ingest_id"] == entry["ingest_id"]:
            out[entry["span"]] = kept["summary"]
            continue
        if apply is None:
            output = tft.TFTransformOutput(str(graph))
            apply, classes = transformed.transform(output), task.class_names(config, output)
        files = spans.files([entry], *SPLITS)
        values = np.concatenate([apply(batch)[config.label.key].numpy().ravel()
                                 for batch in transformed.records(files, 8192)]) if files else np.array([])
        out[entry["span"]] = label_check.summary(values, config.label.task, classes)
        artifacts.write_json(path, {"ingest_id": entry["ingest_id"], "summary": out[entry["span"]]})
    return out


def label_findings(config, graph: Path, entries: list[dict], checked: set[str]) -> list[dict]:
    """The label of each checked span against the `validation.reference_spans` before it; the same
    finding in several spans is one, naming them (as validate's)."""
    reach = config.validation.reference_spans
    wanted = [i for i, e in enumerate(entries) if e["span"] in checked]
    near = sorted({j for i in wanted for j in range(max(0, i - reach), i + 1)})
    labels = span_labels(config, graph, [entries[j] for j in near])
    found = []
    for i in wanted:
        before = [labels[e["span"]] for e in entries[max(0, i - reach):i]]
        found += label_check.findings(config, entries[i]["span"], labels[entries[i]["span"]], before)
    return merge(found)


def run(config, output_dir: Path, examples: str, schema: str, exclude_spans: str = "") -> dict:
    ingested = artifacts.read_result(Path(examples))
    raw_schema = text_format.Parse(Path(schema).read_text(), schema_pb2.Schema())  # TFDV's import: seconds
    excluded = sorted(set(filter(None, exclude_spans.split(","))) & {e["span"] for e in ingested["spans"]})
    training = [e for e in ingested["spans"] if e["span"] not in excluded]
    if not any(e["rows"]["train"] for e in training):
        raise ValueError(f"no train rows in the window's spans{' outside the blocked ' + ', '.join(excluded) if excluded else ''}")
    # the module was loaded from its file, so Beam's workers (other processes, Dataflow) cannot
    # import it: its functions travel by value in the pickled pipeline
    module = user_module.load(config)
    if module is not None:  # a config-only pipeline runs the platform's code, which workers import
        cloudpickle.register_pickle_by_value(module)
    with artifacts.atomic_dir(output_dir) as tmp:
        analysis = analyze(config, [e for e in training if e["rows"]["train"]], raw_schema, tmp / TRANSFORM_GRAPH,
                           tmp / ".units")
        checked = {ingested["span"], *ingested.get("changed", [])} - set(excluded)
        found = label_findings(config, tmp / TRANSFORM_GRAPH, [e for e in training if sum(e["rows"].values())], checked)
        result = {"examples": str(output_dir), "transform_graph": str(output_dir / TRANSFORM_GRAPH),
                  "span": ingested["span"], "window": ingested["window"], "spans": training, "excluded": excluded,
                  "rows": {split: sum(e["rows"][split] for e in training) for split in SPLITS},
                  "analysis": analysis, "anomalies": found, "blocking": sum(f["severity"] == "blocking" for f in found)}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
