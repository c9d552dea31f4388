"""Retention: what a pipeline keeps as its season goes on, so that a year of daily runs does not
fill a disk. The maintenance DAG applies it to every pipeline each day; it is idempotent, and
it reckons from the pipeline's newest run, not the clock (a backfill of last year keeps its
window).

- Spans: those of the newest run's window, plus `retention.margin_days`, stay (drift and the
  label check compare a new span only with spans of its window); older span folders go, with
  the statistics and analyzer caches kept in them. A date run again later ingests its spans again.
- Runs: the newest `retention.full_runs` keep everything; older runs keep only their records (the
  JSON, Markdown and error files at the top of the run and of each step folder, which the report
  and the Models and Data pages read) and lose the model, the transform graph, TFMA's output, statistics
  files and extracts.
- Serving versions: the live one, the `retention.versions` before it (rollback targets) and the
  pinned ones stay; a removed version's record (its lineage) stays in `<model>/retired/<n>.json`.
- Runs in flight (`in_flight`: their logical dates, which the caller asks Airflow for) keep what
  they read: their window's spans, the spans their ingest listed, and their own run folder.
The anomaly tracker and every record are kept.

    python -m pipeline_lib.retention --config pipelines/taxi_tips/pipeline.yaml [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path

from pipeline_lib import artifacts, serving, spans

log = logging.getLogger(__name__)

RECORD_SUFFIXES = (".json", ".md", ".error")  # results, reports, and the first lines of failed steps
PRUNED = ".pruned"  # in a run folder: pruned when nothing in it is newer
RETIRED = "retired"


@dataclasses.dataclass
class Plan:
    """What retention would remove now (paths), and why nothing more."""

    newest_run: dt.date | None
    spans: list[Path] = dataclasses.field(default_factory=list)
    run_parts: list[Path] = dataclasses.field(default_factory=list)
    runs: list[Path] = dataclasses.field(default_factory=list)  # the run folders pruned to records
    versions: list[int] = dataclasses.field(default_factory=list)
    kept_from: str | None = None  # the oldest span kept


def run_dates(pipeline: str) -> list[dt.date]:
    runs = artifacts.pipeline_root(pipeline) / "runs"
    found = []
    for entry in os.scandir(runs) if runs.is_dir() else ():
        try:
            found.append(dt.date.fromisoformat(entry.name))
        except ValueError:
            continue
    return sorted(found)


def _protected_spans(config, in_flight: set[dt.date]) -> set[str]:
    """The spans runs in flight read: their window (as the config sets it) and what their ingest
    listed (a run param may have widened it)."""
    names = set()
    for day in in_flight:
        names |= {s.name for s in spans.window(config, day)}
        ingested = artifacts.step_dir(config.name, day, "ingest") / artifacts.RESULT_FILENAME
        if ingested.is_file():
            names |= {e["span"] for e in json.loads(ingested.read_text())["spans"]}
    return names


def _heavy_parts(run: Path) -> list[Path]:
    """What a run folder holds beyond its records: every sub-folder of a step folder and every file
    that is not a record, at both levels (a killed step's scratch folder too)."""
    parts = []
    for entry in os.scandir(run):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and entry.name in artifacts.STEPS:
            parts += [Path(e.path) for e in os.scandir(path)
                      if e.is_dir(follow_symlinks=False) or not e.name.endswith(RECORD_SUFFIXES)]
        elif entry.name != PRUNED and (entry.is_dir(follow_symlinks=False) or not entry.name.endswith(RECORD_SUFFIXES)):
            parts.append(path)
    return parts


def _pruned_since(run: Path) -> bool:
    """Nothing in the run folder changed since it was last pruned (a date run again has newer folders)."""
    marker = run / PRUNED
    if not marker.exists():
        return False
    since = marker.stat().st_mtime
    return all(e.stat(follow_symlinks=False).st_mtime <= since for e in os.scandir(run))


def plan(config, in_flight: set[dt.date] = frozenset()) -> Plan:
    """What to remove now, for the pipeline's newest run and the runs in flight."""
    keep = config.retention
    dates = run_dates(config.name)
    if not dates:
        return Plan(None)
    newest = dates[-1]
    reach = spans.window(config, newest, config.source.window_days + keep.margin_days)
    protected = _protected_spans(config, set(in_flight))
    span_root = spans.root(config.name)
    old_spans = sorted(p for p in span_root.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and p.name < reach[0].name and p.name not in protected) if span_root.is_dir() else []
    full = set(dates[-keep.full_runs:]) | set(in_flight)
    runs = [run for day in dates if day not in full
            and not _pruned_since(run := artifacts.run_dir(config.name, day))]
    found = serving.versions(config.serving.model_dir())
    kept_versions = set(found[-(keep.versions + 1):]) | set(keep.pinned_versions)
    return Plan(newest, old_spans, [p for run in runs for p in _heavy_parts(run)], runs,
                [v for v in found if v not in kept_versions], reach[0].name)


def size_of(path: Path) -> int:
    """Bytes of the file, or of the files under the folder (0 where there is nothing)."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())


def _remove(path: Path) -> int:
    size = size_of(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return size


def retire_versions(model_dir: Path, doomed: list[int]) -> tuple[list[int], int]:
    """Remove these versions (never the live one), keeping each record in `retired/`; under the
    model's push lock, so no push or rollback runs meanwhile. Returns (removed, bytes freed)."""
    removed, freed = [], 0
    with serving.locked(model_dir):
        live = serving.latest_version(model_dir)
        for version in doomed:
            folder = model_dir / str(version)
            if version == live or not folder.is_dir():
                continue
            kept = model_dir / RETIRED / f"{version}.json"
            kept.parent.mkdir(exist_ok=True)
            kept.write_text(json.dumps({**serving.record(model_dir, version), "version": version,
                                        "retired_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
                                       indent=2, sort_keys=True))
            freed += _remove(folder)
            removed.append(version)
    return removed, freed


def retired_records(model_dir: Path) -> list[dict]:
    """The records of the versions retention removed, newest first."""
    folder = model_dir / RETIRED
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(found, key=lambda r: r["version"], reverse=True)


def apply(config, in_flight: set[dt.date] = frozenset(), dry_run: bool = False) -> dict:
    """Remove what `plan` finds; returns what was removed and the bytes freed, per kind."""
    todo = plan(config, in_flight)
    result = {"newest_run": todo.newest_run and todo.newest_run.isoformat(), "kept_from_span": todo.kept_from,
              "in_flight": sorted(d.isoformat() for d in in_flight), "dry_run": dry_run,
              "spans": [p.name for p in todo.spans], "runs_pruned": [p.name for p in todo.runs],
              "versions": todo.versions}
    if dry_run:
        result["bytes_freed"] = {"spans": sum(map(size_of, todo.spans)), "runs": sum(map(size_of, todo.run_parts)),
                                 "versions": sum(size_of(config.serving.model_dir() / str(v)) for v in todo.versions)}
    else:
        freed = {"spans": sum(map(_remove, todo.spans)), "runs": sum(map(_remove, todo.run_parts))}
        for run in todo.runs:
            (run / PRUNED).touch()
        result["versions"], freed["versions"] = retire_versions(config.serving.model_dir(), todo.versions)
        result["bytes_freed"] = freed
    result["bytes_freed"]["total"] = sum(result["bytes_freed"].values())
    log.info("%s retention%s: %d spans before %s, %d runs pruned to their records, versions %s: %.1f MB freed",
             config.name, " (dry run)" if dry_run else "", len(todo.spans), todo.kept_from, len(todo.runs),
             result["versions"] or "none", result["bytes_freed"]["total"] / 1e6)
    return result


def main(argv: list[str] | None = None) -> None:
    from pipeline_lib.config import load_config

    parser = argparse.ArgumentParser(prog="pipeline_lib.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="print what would go, remove nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(apply(load_config(args.config, check_schema=False), dry_run=args.dry_run), indent=2))


if __name__ == "__main__":
    main()
