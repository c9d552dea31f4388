"""The model repository in TF Serving layout: <root>/<model>/<version>/ (versions are integers;
TF Serving serves the highest).

Every change happens under one lock per model: a version folder is copied in under a hidden name
and appears by one rename, so a server never sees a partial copy and a push killed midway leaves
only a hidden folder that the next push removes. Versions strictly increase; each carries a record
of what it came from in `assets.extra/` (which TF Serving ignores).

    python -m pipeline_lib.serving list --config pipelines/taxi_tips/pipeline.yaml
    python -m pipeline_lib.serving rollback --config pipelines/taxi_tips/pipeline.yaml [--to N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import getpass
import json
import shutil
import uuid
from pathlib import Path

# the exported model's signatures: raw serialized tf.Examples in; the second feeds TFMA the
# transformed features (and the label computed from raw columns)
SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"
RECORD = Path("assets.extra") / "pipeline_record.json"
LABEL_INFO = Path("assets.extra") / "label.json"  # task and class names (output order), from train
_INCOMING = ".incoming-"


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_dir: Path) -> int | None:
    found = versions(model_dir)
    return found[-1] if found else None


def record(model_dir: Path, version: int) -> dict:
    path = model_dir / str(version) / RECORD
    return json.loads(path.read_text()) if path.exists() else {}


@contextlib.contextmanager
def _locked(model_dir: Path):
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".push.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in model_dir.glob(f"{_INCOMING}*"):  # only a killed push leaves one
            shutil.rmtree(leftover)
        yield


def _add_version(model_dir: Path, source: Path, provenance: dict) -> tuple[int, Path]:
    """Copy `source` in as the next version with its record; the caller holds the lock."""
    version = (latest_version(model_dir) or 0) + 1
    tmp = model_dir / f"{_INCOMING}{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, tmp)
    (tmp / RECORD).parent.mkdir(exist_ok=True)
    (tmp / RECORD).write_text(json.dumps({**provenance, "version": version,
                                          "published_at": dt.datetime.now(dt.UTC).isoformat()},
                                         indent=2, sort_keys=True))
    final = model_dir / str(version)
    tmp.rename(final)
    return version, final


def publish(model: Path, model_dir: Path, provenance: dict, key: str = "span") -> tuple[int, Path, bool]:
    """Publish `model` as the next version, unless a version with the same `provenance[key]` (the
    same span, re-run or retried) exists: then that version. Returns (version, path, new)."""
    with _locked(model_dir):
        for version in reversed(versions(model_dir)):
            if record(model_dir, version).get(key) == provenance[key]:
                return version, model_dir / str(version), False
        version, path = _add_version(model_dir, model, provenance)
    return version, path, True


def rollback(model_dir: Path, to: int | None = None, by: str | None = None) -> tuple[int, Path]:
    """Serve version `to` (default: the one before the latest) again, as a new, highest version:
    versions only ever increase, so every server and the next evaluation's baseline agree. The
    record says who asked (`by`)."""
    with _locked(model_dir):
        found = versions(model_dir)
        if len(found) < 2 and to is None:
            raise ValueError(f"{model_dir}: nothing to roll back to (versions: {found})")
        target = found[-2] if to is None else to
        if target not in found or target == found[-1]:
            raise ValueError(f"{model_dir}: cannot roll back to {target} (versions: {found}, serving {found[-1]})")
        return _add_version(model_dir, model_dir / str(target), {
            **record(model_dir, target), "rollback": {"restores": target, "replaces": found[-1], "by": by}})


def main(argv: list[str] | None = None) -> None:
    from pipeline_lib.config import load_config

    parser = argparse.ArgumentParser(prog="pipeline_lib.serving", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "rollback"])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--to", type=int, help="version to restore (rollback; default: the previous)")
    parser.add_argument("--by", default=getpass.getuser(), help="who rolls back (recorded; default: the OS user)")
    args = parser.parse_args(argv)
    model_dir = load_config(args.config).serving.model_dir()
    if args.command == "rollback":
        version, path = rollback(model_dir, args.to, args.by)
        print(f"version {version} now serves (a copy of version {record(model_dir, version)['rollback']['restores']}): {path}")
    found = versions(model_dir)
    for version in found:
        r = record(model_dir, version)
        what = (f"rollback to {r['rollback']['restores']}" if "rollback" in r
                else f"span {r.get('span')} run {r.get('run_id')}")
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.get("metrics", {}).items()) if k != "example_count")
        print(f"{'*' if version == found[-1] else ' '} {version:>4}  {r.get('published_at', '?')[:19]}  {what}  {metrics}")


if __name__ == "__main__":
    main()
