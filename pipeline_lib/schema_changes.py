"""The schema change an accepted anomaly implies, applied to the pipeline's curated schema file.

`python -m pipeline_lib.schema_changes --schema F --statistics S --feature X --kind K` runs in the ML
environment (tensorflow_metadata protos only, no TensorFlow: ~0.1 s) and prints {"changed", "diff"}
as JSON; the tracker's `accept` calls it and records the diff. A kind with no schema change to make
(drift, skew) accepts without one; a kind that only fixing the data can answer is refused.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import math
import os
import sys
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

RANGE = ("FLOAT_TYPE_BIG_FLOAT", "FLOAT_TYPE_SMALL_FLOAT", "INT_TYPE_BIG_INT", "INT_TYPE_SMALL_INT")
PRESENCE = ("SCHEMA_MISSING_COLUMN", "FEATURE_TYPE_LOW_NUMBER_PRESENT", "FEATURE_TYPE_NOT_PRESENT")
CHANGEABLE = ("ENUM_TYPE_UNEXPECTED_STRING_VALUES", "FEATURE_TYPE_LOW_FRACTION_PRESENT", *PRESENCE, *RANGE)
NO_SCHEMA_CHANGE = ("COMPARATOR_L_INFTY_HIGH", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                    "COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH", "COMPARATOR_CONTROL_DATA_MISSING",
                    "COMPARATOR_TREATMENT_DATA_MISSING",
                    "DRIFT", "SKEW", "LABEL_SHIFT",  # pipeline_lib.drift, label_check: the change is fine
                    "VOLUME_DROP", "VOLUME_SPIKE", "DUPLICATE_ROWS")  # validate: the span is as it should be


class CannotAccept(ValueError):
    """The anomaly is not a schema question (e.g. an empty span): fix the data and resolve it."""


def _feature(schema, name: str):
    for f in schema.feature:
        if f.name == name:
            return f
    raise CannotAccept(f"feature {name!r} is not in the schema")


def _stats(paths: str | None, name: str) -> list[tuple]:
    """(dataset, feature statistics) of each comma-separated statistics file (one per split)."""
    if not paths:
        raise CannotAccept("the anomaly links no statistics to take the new values from")
    out = []
    for path in paths.split(","):
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(Path(path).read_bytes()).datasets[0]
        out += [(stats, f) for f in stats.features if list(f.path.step) == [name] or f.name == name]
    if not out:
        raise CannotAccept(f"feature {name!r} has no statistics in {paths}")
    return out


def _string_domain(schema, feature):
    if feature.HasField("string_domain"):
        return feature.string_domain
    for d in schema.string_domain:
        if d.name == feature.domain:
            return d
    raise CannotAccept(f"feature {feature.name!r} has no string domain")


def change(schema, kind: str, feature_name: str, stats_path: str | None) -> None:
    """Edit `schema` in place so that data like the anomaly's passes."""
    if kind in NO_SCHEMA_CHANGE:
        return
    if kind not in CHANGEABLE:
        raise CannotAccept(f"accepting {kind} has no schema change to make: fix the data and resolve "
                           f"the anomaly, or edit the schema file by hand")
    feature = _feature(schema, feature_name)
    if kind == "ENUM_TYPE_UNEXPECTED_STRING_VALUES":
        domain = _string_domain(schema, feature)
        for _, fs in _stats(stats_path, feature_name):
            seen = [b.label for b in fs.string_stats.rank_histogram.buckets] or [v.value for v in fs.string_stats.top_values]
            domain.value.extend(v for v in seen if v not in domain.value)
    elif kind == "FEATURE_TYPE_LOW_FRACTION_PRESENT":
        fractions = [(fs.num_stats.common_stats if fs.HasField("num_stats") else fs.string_stats.common_stats)
                     .num_non_missing / max(dataset.num_examples, 1) for dataset, fs in _stats(stats_path, feature_name)]
        feature.presence.min_fraction = math.floor(min(fractions) * 100) / 100
    elif kind in PRESENCE:
        feature.presence.min_fraction, feature.presence.min_count = 0, 0
    else:  # RANGE
        numbers = [fs.num_stats for _, fs in _stats(stats_path, feature_name)]
        domain = feature.float_domain if kind.startswith("FLOAT") else feature.int_domain
        cast = float if kind.startswith("FLOAT") else int
        if kind.endswith(("BIG_FLOAT", "BIG_INT")):
            domain.max = cast(math.ceil(max(n.max for n in numbers)))
        else:
            domain.min = cast(math.floor(min(n.min for n in numbers)))


def apply(schema_path: Path, kind: str, feature: str, stats_path: str | None) -> dict:
    """Change the schema file (keeping its leading comments) and return the unified diff."""
    before = schema_path.read_text()
    schema = text_format.Parse(before, schema_pb2.Schema())
    change(schema, kind, feature, stats_path)
    comments = "".join(itertools.takewhile(lambda line: line.startswith("#"), before.splitlines(keepends=True)))
    after = comments + text_format.MessageToString(schema)
    if text_format.Parse(after, schema_pb2.Schema()) == text_format.Parse(before, schema_pb2.Schema()):
        return {"changed": False, "diff": f"(no schema change for {kind}: the next span is compared with this one)"}
    tmp = schema_path.with_name(f".{schema_path.name}.tmp-{os.getpid()}")
    tmp.write_text(after)
    tmp.replace(schema_path)
    diff = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                str(schema_path), str(schema_path))
    return {"changed": True, "diff": "".join(diff)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline_lib.schema_changes", description=__doc__)
    parser.add_argument("--schema", required=True, type=Path)
    parser.add_argument("--statistics")
    parser.add_argument("--feature", required=True)
    parser.add_argument("--kind", required=True)
    args = parser.parse_args(argv)
    try:
        result = apply(args.schema, args.kind, args.feature, args.statistics)
    except (CannotAccept, OSError, text_format.ParseError) as e:
        result = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
