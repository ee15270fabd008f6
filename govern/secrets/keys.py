"""The local store's master keys: a key list, so keys can be rotated (first key encrypts, any key decrypts).

Keys come from `GOVERN_MASTER_KEY` (comma-separated base64 keys of 32 bytes, the first is current) or
from the key file `instance/master.keys` (one base64 key a line, the first is current). The key file is
created with mode 0600 and refused when its mode lets anyone but the owner read it, the way ssh
refuses a private key with loose permissions.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from govern.errors import ConfigurationError

KEY_BYTES = 32  # AES-256
KEY_FILE_NAME = "master.keys"


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    material: bytes

    def __repr__(self) -> str:  # the material never appears in a repr or a traceback
        return f"MasterKey(key_id={self.key_id!r})"


def key_id_for(material: bytes) -> str:
    """A stable, non-secret name for a key: a truncated SHA-256 under a domain-separation label."""
    return "k" + hashlib.sha256(b"govern-master-key-id\x00" + material).hexdigest()[:15]


def new_key() -> MasterKey:
    material = os.urandom(KEY_BYTES)
    return MasterKey(key_id_for(material), material)


def parse_keys(text: str, source: str) -> list[MasterKey]:
    keys: list[MasterKey] = []
    for n, item in enumerate(p.strip() for p in text.replace("\n", ",").split(",")):
        if not item:
            continue
        try:
            material = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{source}: key {n + 1} is not valid base64") from None
        if len(material) != KEY_BYTES:
            raise ConfigurationError(f"{source}: key {n + 1} must be {KEY_BYTES} bytes (AES-256)")
        keys.append(MasterKey(key_id_for(material), material))
    if not keys:
        raise ConfigurationError(f"{source} holds no key")
    return keys


def encode_keys(keys: list[MasterKey]) -> str:
    return "".join(base64.b64encode(k.material).decode("ascii") + "\n" for k in keys)


class KeyRing:
    """The ordered key list and where it came from. `current` encrypts; `by_id` decrypts."""

    def __init__(self, keys: list[MasterKey], *, path: Path | None = None):
        if not keys:
            raise ConfigurationError("the master key list is empty")
        self.keys = list(keys)
        self.path = path  # None when the keys came from GOVERN_MASTER_KEY

    @property
    def current(self) -> MasterKey:
        return self.keys[0]

    def by_id(self, key_id: str) -> MasterKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    @property
    def from_environment(self) -> bool:
        return self.path is None

    def add_first(self, key: MasterKey) -> None:
        """Put a new current key first and persist the list (key file only)."""
        if self.path is None:
            raise ConfigurationError("the master keys come from GOVERN_MASTER_KEY: put a new key first in it "
                                     "and run `govern secrets rotate-key --rewrap-only`")
        self.keys.insert(0, key)
        _write_key_file(self.path, self.keys)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={[k.key_id for k in self.keys]!r}, file={str(self.path) if self.path else None!r})"


def key_file_path(home: Path) -> Path:
    return Path(home) / KEY_FILE_NAME


def load_keyring(master_key: str | None, home: Path, *, create: bool = False) -> KeyRing:
    """The key list from GOVERN_MASTER_KEY, else from the key file (created when `create`)."""
    if master_key:
        return KeyRing(parse_keys(master_key, "GOVERN_MASTER_KEY"))
    path = key_file_path(home)
    if not path.exists():
        if not create:
            raise ConfigurationError(f"no master key: set GOVERN_MASTER_KEY or run `govern init` to create {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_key_file(path, [new_key()], exclusive=True)
    check_key_file_mode(path)
    return KeyRing(parse_keys(path.read_text(), str(path)), path=path)


def check_key_file_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(f"refusing to use {path}: its mode is {mode:04o}; it must be 0600 (chmod 600 {path})")


def _write_key_file(path: Path, keys: list[MasterKey], *, exclusive: bool = False) -> None:
    """Write atomically with mode 0600 from the start, so the keys are never readable by others."""
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(encode_keys(keys))
        return
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(encode_keys(keys))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
