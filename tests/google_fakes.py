"""Google clients faked at their boundary, for the Airflow tests (no cloud here): the hooks' own
code runs unchanged and hands its requests to these."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace


class FakeStorageClient:
    """google.cloud.storage.Client, as far as GCSHook.upload and .download use it: objects are
    files under `root/<bucket>/<name>`."""

    def __init__(self, root: Path):
        self.root = root

    def bucket(self, name, user_project=None):
        client = self

        class Blob:
            def __init__(self, blob_name, chunk_size=None):
                self.name, self.path = blob_name, client.root / name / blob_name

            def upload_from_filename(self, filename, content_type=None, timeout=None):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(filename, self.path)

            def download_as_bytes(self, timeout=None):
                from google.api_core.exceptions import NotFound

                if not self.path.is_file():
                    raise NotFound(f"gs://{name}/{self.name}")
                return self.path.read_bytes()

        return SimpleNamespace(name=name, blob=Blob)
