"""A memo that lives for one landscape version: secret values read from the store, kept until the stored
landscape version moves (govern.store.landscape_version moves it with every secret put, rotation or
delete, in the same transaction). So a new secret version is a miss within the snapshot's bound, and no
memo runs on a clock of its own."""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class VersionMemo(Generic[K, V]):
    def __init__(self) -> None:
        self._version: int | None = None
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, version: int, key: K, load: Callable[[], V]) -> V:
        with self._lock:
            if version == self._version and key in self._items:
                return self._items[key]
        value = load()
        with self._lock:
            if version != self._version:
                self._version = version
                self._items = {}
            self._items[key] = value
        return value

    def forget(self, key: K | None = None) -> None:
        """Drop one entry (all of them without `key`): the upstream refused it, read it again."""
        with self._lock:
            if key is None:
                self._items.clear()
            else:
                self._items.pop(key, None)
