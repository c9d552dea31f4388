"""The model repository in TF Serving layout: <root>/<model>/<version>/ (versions are integers).

A version folder appears by one rename, so TF Serving never sees a partial copy; a lock makes
concurrent pushes take distinct, increasing versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import uuid
from pathlib import Path

# the exported model's signatures: raw serialized tf.Examples in; the second feeds TFMA the
# transformed features (and the label computed from raw columns)
SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_dir: Path) -> int | None:
    found = versions(model_dir)
    return found[-1] if found else None


@contextlib.contextmanager
def _locked(model_dir: Path):
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".push.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def publish(model: Path, model_dir: Path) -> tuple[int, Path]:
    """Copy `model` in as the next version; return (version, path)."""
    with _locked(model_dir):
        version = (latest_version(model_dir) or 0) + 1
        tmp = model_dir / f".incoming-{uuid.uuid4().hex[:8]}"
        shutil.copytree(model, tmp)
        final = model_dir / str(version)
        tmp.rename(final)
    return version, final
