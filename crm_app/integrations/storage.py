"""Where uploaded and generated files live.

Callers only use `save`, `open` and `delete` with an opaque key, so an
S3-compatible bucket can replace the local folder without touching them.
"""

import os
import shutil
from pathlib import Path


class LocalFolderStorage:
    def __init__(self, root):
        self.root = Path(root)

    def _path(self, key):
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("storage key escapes the storage root")
        return path

    def save(self, key, stream):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        with open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out)
        os.replace(tmp, path)

    def open(self, key):
        return open(self._path(key), "rb")

    def exists(self, key):
        return self._path(key).exists()

    def delete(self, key):
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass


def storage_from_config(cfg):
    return LocalFolderStorage(cfg["UPLOAD_FOLDER"])
