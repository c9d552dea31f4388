"""The model repository in TF Serving layout: <root>/<model>/<version>/ (versions are integers;
TF Serving serves the highest).

Every change happens under one lock per model: a version folder is copied in under a hidden name
and appears by one rename, so a server never sees a partial copy and a push killed midway leaves
only a hidden folder that the next push removes. Versions strictly increase; each carries a record
of what it came from in `assets.extra/` (which TF Serving ignores).

    python -m pipeline_lib.serving list --config pipelines/taxi_tips/pipeline.yaml
    python -m pipeline_lib.serving rollback --config pipelines/taxi_tips/pipeline.yaml [--to N]
    python -m pipeline_lib.serving model-config [--out FILE]   # TF Serving's --model_config_file
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import getpass
import json
import logging
import shutil
import uuid
from pathlib import Path

from pipeline_lib import settings

log = logging.getLogger(__name__)

# the exported model's signatures: raw serialized tf.Examples in; the second feeds TFMA the
# transformed features (and the label computed from raw columns)
SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"
RECORD = Path("assets.extra") / "pipeline_record.json"
LABEL_INFO = Path("assets.extra") / "label.json"  # task and class names (output order), from train
_INCOMING = ".incoming-"
MODEL_CONFIG = "models.config"  # TF Serving's --model_config_file, at the serving root by default


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_dir: Path) -> int | None:
    found = versions(model_dir)
    return found[-1] if found else None


def still_serving(version: int | None) -> str:
    """What a refused push leaves serving, in words (a first model refused leaves nothing)."""
    return "no model serves yet" if version is None else f"serving stays at version {version}"


def record(model_dir: Path, version: int) -> dict:
    path = model_dir / str(version) / RECORD
    return json.loads(path.read_text()) if path.exists() else {}


@contextlib.contextmanager
def locked(model_dir: Path):
    """The model's push lock: pushes, rollbacks and retention change a model folder one at a time."""
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
    with locked(model_dir):
        for version in reversed(versions(model_dir)):
            if record(model_dir, version).get(key) == provenance[key]:
                return version, model_dir / str(version), False
        version, path = _add_version(model_dir, model, provenance)
    return version, path, True


def rollback(model_dir: Path, to: int | None = None, by: str | None = None) -> tuple[int, Path]:
    """Serve version `to` (default: the one before the latest) again, as a new, highest version:
    versions only ever increase, so every server and the next evaluation's baseline agree. The
    record says who asked (`by`)."""
    with locked(model_dir):
        found = versions(model_dir)
        if len(found) < 2 and to is None:
            raise ValueError(f"{model_dir}: nothing to roll back to (versions: {found})")
        target = found[-2] if to is None else to
        if target not in found or target == found[-1]:
            raise ValueError(f"{model_dir}: cannot roll back to {target} (versions: {found}, serving {found[-1]})")
        return _add_version(model_dir, model_dir / str(target), {
            **record(model_dir, target), "rollback": {"restores": target, "replaces": found[-1], "by": by}})


def model_config(pipelines_dir: Path | None = None) -> str:
    """TF Serving's model config (ModelServerConfig, protobuf text) for every pipeline whose model
    has a version. Only those: TF Serving serves nothing until every listed model has loaded. A
    config that does not load is left out with a warning; the others are listed all the same."""
    from pipeline_lib.config import ConfigError, discover, load_config

    models: dict[str, Path] = {}
    for path in discover(pipelines_dir):
        try:
            served = load_config(path, check_schema=False).serving
        except ConfigError as e:
            log.warning("not served: %s", e)
            continue
        model_dir = served.model_dir()
        if versions(model_dir) and models.setdefault(served.model_name, model_dir) != model_dir:
            log.warning("not served: %s: model %s is listed from %s", path, served.model_name, models[served.model_name])
    entries = "".join(f'  config {{\n    name: "{name}"\n    base_path: {json.dumps(str(base), ensure_ascii=False)}\n'
                      f'    model_platform: "tensorflow"\n  }}\n' for name, base in models.items())
    return f"model_config_list {{\n{entries}}}\n"


def write_model_config(out: Path | None = None, pipelines_dir: Path | None = None) -> Path:
    """Write `model_config()` to `out` (default: <serving root>/models.config) by one rename, as TF
    Serving polls it. Under the root's lock: the last writer has seen every push that wrote before."""
    out = out or settings.serving_root() / MODEL_CONFIG
    with locked(out.parent):
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(model_config(pipelines_dir))
        tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    from pipeline_lib.config import load_config

    parser = argparse.ArgumentParser(prog="pipeline_lib.serving", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "rollback", "model-config"])
    parser.add_argument("--config", type=Path, help="the pipeline's config (list, rollback)")
    parser.add_argument("--to", type=int, help="version to restore (rollback; default: the previous)")
    parser.add_argument("--by", default=getpass.getuser(), help="who rolls back (recorded; default: the OS user)")
    parser.add_argument("--out", type=Path, help=f"model-config: where to (default: <serving root>/{MODEL_CONFIG})")
    args = parser.parse_args(argv)
    if args.command == "model-config":
        out = write_model_config(args.out)
        print(f"{out}:\n{out.read_text()}", end="")
        return
    if args.config is None:
        parser.error(f"{args.command} needs --config")
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
