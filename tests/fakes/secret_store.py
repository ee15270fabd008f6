"""An in-memory SecretStore for fast unit tests. Behaviours that matter also have tests on the real stores."""
from __future__ import annotations

from govern.domain.secret import Secret
from govern.errors import SecretConflict, SecretNotFound, SecretStoreUnavailable
from govern.ports import SecretMetadata


class MemorySecretStore:
    kind = "memory"

    def __init__(self):
        self.data: dict[str, dict[int, str]] = {}
        self.down = False

    def _up(self):
        if self.down:
            raise SecretStoreUnavailable("the (fake) secret store is down")

    def put(self, path, value: Secret, *, cas=None):
        self._up()
        versions = self.data.setdefault(path, {})
        current = max(versions) if versions else 0
        if cas is not None and cas != current:
            raise SecretConflict(f"{path}: expected version {cas}, found {current}")
        versions[current + 1] = value.reveal()
        return SecretMetadata(path=path, version=current + 1, created_at=None, versions=tuple(sorted(versions)))

    def get(self, path, *, version=None):
        self._up()
        versions = self.data.get(path)
        if not versions:
            raise SecretNotFound(f"no secret at {path}")
        v = version or max(versions)
        if v not in versions:
            raise SecretNotFound(f"no version {v} at {path}")
        return Secret(versions[v])

    def metadata(self, path):
        self._up()
        versions = self.data.get(path)
        if not versions:
            raise SecretNotFound(f"no secret at {path}")
        return SecretMetadata(path=path, version=max(versions), created_at=None, versions=tuple(sorted(versions)))

    def delete(self, path):
        self._up()
        self.data.pop(path, None)

    def list_paths(self):
        self._up()
        return sorted(self.data)

    def ping(self):
        self._up()
