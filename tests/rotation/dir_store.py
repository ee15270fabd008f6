"""A SecretStore shared by several test processes: one file per version in a temporary folder.

Check-and-set is `open(O_CREAT | O_EXCL)` of the next version's file, which the kernel makes atomic,
so concurrent workers see the same conflicts a KV v2 store would report. Test-only: values are plain files.
"""
from __future__ import annotations

import os
from pathlib import Path

from govern.domain.secret import Secret
from govern.errors import SecretConflict, SecretNotFound
from govern.ports import SecretMetadata


class DirSecretStore:
    kind = "dir"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, path: str) -> Path:
        return self.root / path.replace("/", "__")

    def _versions(self, path: str) -> list[int]:
        d = self._dir(path)
        if not d.exists():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())

    def put(self, path, value: Secret, *, cas=None):
        d = self._dir(path)
        d.mkdir(parents=True, exist_ok=True)
        versions = self._versions(path)
        current = versions[-1] if versions else 0
        if cas is not None and cas != current:
            raise SecretConflict(f"{path}: expected version {cas}, found {current}")
        try:
            fd = os.open(d / str(current + 1), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise SecretConflict(f"{path}: version {current + 1} was written concurrently") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(value.reveal())
        return SecretMetadata(path=path, version=current + 1, created_at=None, versions=tuple(versions + [current + 1]))

    def get(self, path, *, version=None):
        versions = self._versions(path)
        if not versions:
            raise SecretNotFound(f"no secret at {path}")
        v = version or versions[-1]
        f = self._dir(path) / str(v)
        if not f.exists():
            raise SecretNotFound(f"no version {v} at {path}")
        return Secret(f.read_text())

    def metadata(self, path):
        versions = self._versions(path)
        if not versions:
            raise SecretNotFound(f"no secret at {path}")
        return SecretMetadata(path=path, version=versions[-1], created_at=None, versions=tuple(versions))

    def delete(self, path):
        import shutil

        shutil.rmtree(self._dir(path), ignore_errors=True)

    def list_paths(self):
        return sorted(p.name.replace("__", "/") for p in self.root.iterdir())

    def ping(self):
        return None
