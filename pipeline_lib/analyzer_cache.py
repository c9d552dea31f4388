"""tf.Transform's analyzer cache, kept per span, so that a new span costs one span's analysis.

tf.Transform caches, per dataset key, each analyzer's accumulator (its partial result: counts,
sums, quantile sketches) and merges the cached accumulators of every key with those of the keys it
reads (`tft_beam.AnalyzeDatasetWithCache`, what TFX's Transform does with a span per key). Each key
costs a branch of the Beam graph: measured here, 4-8 s per key on the local runner, so a window of
a key per span would cost minutes. So a run passes tf.Transform only two kinds of key:

- one key for everything cached: the encoded accumulators of every unit fully inside the window,
  one PCollection per cache entry holding all of them (tf.Transform decodes each element and merges
  them all, as it merges several keys');
- a key per *unit* of spans it must read: the run's new span is a unit of its own (the daily
  case); other uncached spans (a first run's window) are read as at most MAX_NEW_UNITS - 1 equal
  runs of spans.

A unit's accumulators are kept in the folder of its oldest span (`transform_cache/<unit>/`): the
unit is usable while all its spans are in the window, unchanged (their ingest ids) and its entries
are the ones the preprocessing_fn needs (a changed module has other cache keys). Once the window's
start passes a unit's oldest span, its other spans are read again, as new units: a first run's
window is read again in parts of at most window/3 spans on a few days of the following window
(each part split again as it is read), after which every span is its own unit and a daily run
reads one span. (A unit goes with its oldest span's folder.)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

MAX_NEW_UNITS = 4
FOLDER = "transform_cache"
UNIT_RECORD = "unit.json"


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def units_in(entries: list[dict]) -> list[dict]:
    """The units kept in the folders of these spans: {spans, ingest_ids, entries (hex key ->
    file), path}."""
    out = []
    for entry in entries:
        for record in sorted((Path(entry["path"]) / FOLDER).glob(f"*/{UNIT_RECORD}")):
            out.append({**json.loads(record.read_text()), "path": str(record.parent)})
    return out


def plan(entries: list[dict], needed: set[bytes]) -> tuple[list[dict], list[list[dict]]]:
    """(the cached units to merge, the runs of spans to read, each a new unit) covering the spans
    `entries` (the training spans that have train rows, oldest first). Larger units are taken
    first; a unit overlapping a chosen one is left out."""
    current = {e["span"]: e["ingest_id"] for e in entries}
    usable = [u for u in units_in(entries)
              if all(current.get(s) == i for s, i in zip(u["spans"], u["ingest_ids"]))
              and needed <= {bytes.fromhex(k) for k in u["entries"]}]
    chosen, covered = [], set()
    for unit in sorted(usable, key=lambda u: (-len(u["spans"]), u["spans"])):
        if not covered & set(unit["spans"]):
            chosen.append(unit)
            covered |= set(unit["spans"])
    rest = [e for e in entries if e["span"] not in covered]
    return chosen, units_to_read(rest, entries[-1]["span"])


def split(items: list, parts: int) -> list[list]:
    """`items` in order, in at most `parts` runs of (nearly) equal length."""
    parts = min(parts, len(items))
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)] if parts else []
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def units_to_read(rest: list[dict], newest: str) -> list[list[dict]]:
    """The spans to read as new units: the newest span a unit of its own (it stays in the window
    longest), the others (a first window; what remains of a unit whose first span left the
    window) in at most MAX_NEW_UNITS - 1 runs."""
    if rest and rest[-1]["span"] == newest and len(rest) > 1 and MAX_NEW_UNITS > 1:
        return [*split(rest[:-1], MAX_NEW_UNITS - 1), rest[-1:]]
    return split(rest, MAX_NEW_UNITS)


def cached_dataset(p, units: list[dict]):
    """tf.Transform's DatasetCache of the units together: per cache entry, one PCollection of every
    unit's encoded accumulators (one read of all their files)."""
    import apache_beam as beam
    from tensorflow_transform.beam import analyzer_cache

    files: dict[str, list[str]] = {}
    for unit in units:
        for key, name in unit["entries"].items():
            files.setdefault(key, []).append(str(Path(unit["path"]) / name))
    return analyzer_cache.DatasetCache(
        {bytes.fromhex(key): (p | f"CacheFiles[{key[-12:]}]" >> beam.Create(paths)
                              | f"ReadCache[{key[-12:]}]" >> beam.io.ReadAllFromTFRecord())
         for key, paths in sorted(files.items())},
        p | "CacheMetadata" >> beam.Create([analyzer_cache.DatasetCacheMetadata(dataset_size=0)]))


class _WriteEntries:
    """Writes a unit's cache entries, each its encoded accumulators as one TFRecord file: a DoFn's
    body, kept plain so Beam pickles it by value."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, entry: tuple[str, list[bytes]]) -> None:
        from pipeline_lib import tfrecord

        name, records = entry
        tfrecord.write(f"{self.folder}/{name}", records)


def write_units(output_cache: dict, new_units: dict, scratch: Path) -> list[tuple[Path, dict]]:
    """Beam transforms that write each new unit's cache entries under `scratch` (one grouping per
    unit); returns (scratch folder, oldest span) of each, which `keep` moves into place once the
    pipeline has run. `new_units`: dataset key -> the unit's span entries."""
    import apache_beam as beam

    folders = []
    for key, dataset_cache in output_cache.items():
        folder = scratch / key.key
        folder.mkdir(parents=True)
        names = {entry: f"{_digest(entry)}.tfrecord" for entry in dataset_cache.cache_dict}
        keyed = [pcoll | f"Name[{key.key}][{names[entry][:12]}]" >> beam.Map(lambda record, n=names[entry]: (n, record))
                 for entry, pcoll in dataset_cache.cache_dict.items()]
        _ = (keyed
             | f"Entries[{key.key}]" >> beam.Flatten()
             | f"Group[{key.key}]" >> beam.GroupByKey()
             | f"Write[{key.key}]" >> beam.Map(_WriteEntries(str(folder))))
        spans = new_units[key]
        (folder / UNIT_RECORD).write_text(json.dumps({"spans": [e["span"] for e in spans],
                                                      "ingest_ids": [e["ingest_id"] for e in spans],
                                                      "entries": {entry.hex(): name for entry, name in names.items()}}))
        folders.append((folder, spans[0]))
    return folders


def keep(folders: list) -> None:
    """Each written unit into its oldest span's folder, in one rename (an entry without
    accumulators, e.g. a vocabulary of no values, is an empty file)."""
    for folder, oldest in folders:
        unit = json.loads((folder / UNIT_RECORD).read_text())
        for name in unit["entries"].values():
            (folder / name).touch()
        # named by what it holds: the same spans analyzed again replace it
        target = Path(oldest["path"]) / FOLDER / f"{len(unit['spans'])}-{_digest(json.dumps(unit).encode())[:12]}"
        target.parent.mkdir(exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(folder), str(target))
