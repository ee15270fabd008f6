"""LocalSecretStore: the embedded default SecretStore (govern.ports.SecretStore) on the `local_secret` table.

Envelope encryption with AES-256-GCM (NIST SP 800-38D), using the `cryptography` package:
- every version gets a fresh random 256-bit data key; the value is encrypted with it;
- the data key is wrapped (AES-256-GCM) by the current master key, whose id is stored with the row;
- both encryptions take associated data naming the path AND the version, so a row copied onto another
  path or version fails to authenticate instead of decrypting to the wrong secret.

Versions and check-and-set follow the KV v2 model (cas=0: the secret must not exist). Deleting erases the
ciphertexts and wrapped keys and marks the rows deleted; version numbers keep counting so an old
ciphertext can never be mistaken for a new one.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from govern.domain.secret import Secret
from govern.errors import SecretConflict, SecretNotFound, SecretStoreUnavailable, ValidationFailed
from govern.ports import SecretMetadata
from govern.secrets.errors import SecretIntegrityError
from govern.secrets.keys import KeyRing, new_key
from govern.store.db import session_scope
from govern.store.tables import LocalSecret, utcnow

NONCE_BYTES = 12
_AAD_LABEL = b"govern/local_secret/v1"


def associated_data(path: str, version: int) -> bytes:
    """Binds a ciphertext to its row's address; NUL cannot occur in a path, so the encoding is unambiguous."""
    return b"\x00".join((_AAD_LABEL, path.encode("utf-8"), str(version).encode("ascii")))


SHREDDED = "-"  # key_id of a deleted row: no key material left


class LocalSecretStore:
    kind = "local"

    def __init__(self, sessions: sessionmaker[Session], keyring: KeyRing | Callable[[], KeyRing]):
        self._sessions = sessions
        # A callable is loaded on first use, so building services never creates or reads the key file
        # (`govern init` creates it; a key file problem surfaces where a secret is needed).
        if isinstance(keyring, KeyRing):
            self._keyring: KeyRing | None = keyring
            self._keyring_source: Callable[[], KeyRing] = lambda: keyring
        else:
            self._keyring, self._keyring_source = None, keyring

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = self._keyring_source()
        return self._keyring

    # --- the port --------------------------------------------------------------------------------

    def put(self, path: str, value: Secret, *, cas: int | None = None) -> SecretMetadata:
        _check_path(path)
        try:
            with session_scope(self._sessions) as s:
                rows = s.execute(select(LocalSecret.version, LocalSecret.deleted).where(LocalSecret.path == path)).all()
                top = max((v for v, _ in rows), default=0)
                current = max((v for v, deleted in rows if not deleted), default=0)
                if cas is not None and cas != current:
                    raise SecretConflict(f"{path}: check-and-set expected version {cas}, the store has {current}")
                version = top + 1
                row = self._seal(path, version, value.reveal().encode("utf-8"))
                s.add(row)
                s.flush()
                live = tuple(sorted([v for v, deleted in rows if not deleted] + [version]))
                return SecretMetadata(path=path, version=version, created_at=row.created_at, versions=live)
        except IntegrityError:
            # Another writer took this version number between our read and our insert.
            raise SecretConflict(f"{path}: written concurrently; read it again and retry") from None
        except OperationalError:
            raise SecretStoreUnavailable("the local secret store's database cannot be reached") from None

    def get(self, path: str, *, version: int | None = None) -> Secret:
        with self._session() as s:
            row = self._row(s, path, version)
            return Secret(self._open(row).decode("utf-8"))

    def metadata(self, path: str) -> SecretMetadata:
        with self._session() as s:
            rows = s.exec(select(LocalSecret).where(LocalSecret.path == path, LocalSecret.deleted == False)  # noqa: E712
                          .order_by(col(LocalSecret.version))).all()
            if not rows:
                raise SecretNotFound(f"no secret at {path}")
            return SecretMetadata(path=path, version=rows[-1].version, created_at=_aware(rows[-1].created_at),
                                  versions=tuple(r.version for r in rows))

    def delete(self, path: str) -> None:
        """Every version is shredded: ciphertext, nonce and wrapped data key are erased, so nothing is left
        to decrypt even with the master key. The emptied rows stay so version numbers keep counting."""
        with session_scope(self._sessions) as s:
            s.execute(sa.update(LocalSecret).where(col(LocalSecret.path) == path)
                      .values(deleted=True, key_id=SHREDDED, wrapped_key=b"", nonce=b"", ciphertext=b""))

    def list_paths(self) -> list[str]:
        with self._session() as s:
            return list(s.exec(select(LocalSecret.path).where(LocalSecret.deleted == False)  # noqa: E712
                               .distinct().order_by(LocalSecret.path)).all())

    def ping(self) -> None:
        """The database answers and the master keys load (a key file with loose permissions fails here)."""
        with self._session() as s:
            s.execute(sa.text("SELECT 1"))
        _ = self.keyring  # loads (and so checks) the master keys

    # --- key rotation ----------------------------------------------------------------------------

    def rotate_key(self, *, rewrap_only: bool = False) -> tuple[str, str, int]:
        """Put a new master key first in the key list (unless `rewrap_only`) and re-wrap every data key
        with the current key. Returns (previous key id, current key id, data keys re-wrapped).

        `govern secrets rotate-key` and the store_key rotator both call this. The previous key stays in
        the list for decryption (other processes may still read with it until they reload the list)."""
        previous = self.keyring.current
        if not rewrap_only:
            self.keyring.add_first(new_key())
        count = self.rewrap_all()
        return previous.key_id, self.keyring.current.key_id, count

    def rewrap_all(self) -> int:
        """Re-wrap every data key not wrapped by the current master key; returns how many were re-wrapped.

        Only the wrapped data keys change: values are not re-encrypted, so this is cheap and atomic
        (one transaction). Old master keys are still needed until this has run.
        """
        current = self.keyring.current
        count = 0
        with session_scope(self._sessions) as s:
            for row in s.scalars(select(LocalSecret).where(LocalSecret.key_id != current.key_id,
                                                          LocalSecret.deleted == False)).all():  # noqa: E712
                data_key = self._unwrap(row)
                row.wrapped_key, row.key_id = self._wrap(row.path, row.version, data_key), current.key_id
                s.add(row)
                count += 1
        return count

    def key_usage(self) -> dict[str, int]:
        with self._session() as s:
            rows = s.execute(sa.select(col(LocalSecret.key_id), sa.func.count()).where(col(LocalSecret.deleted) == False)  # noqa: E712
                             .group_by(LocalSecret.key_id)).all()
            return {k: n for k, n in rows}

    # --- envelope encryption ---------------------------------------------------------------------

    def _seal(self, path: str, version: int, plaintext: bytes) -> LocalSecret:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, associated_data(path, version))
        return LocalSecret(path=path, version=version, key_id=self.keyring.current.key_id,
                           wrapped_key=self._wrap(path, version, data_key), nonce=nonce, ciphertext=ciphertext,
                           created_at=utcnow())

    def _open(self, row: LocalSecret) -> bytes:
        data_key = self._unwrap(row)
        try:
            return AESGCM(data_key).decrypt(row.nonce, row.ciphertext, associated_data(row.path, row.version))
        except InvalidTag:
            raise SecretIntegrityError(
                f"the ciphertext of {row.path} version {row.version} does not authenticate: it was altered "
                "or copied from another path or version") from None

    def _wrap(self, path: str, version: int, data_key: bytes) -> bytes:
        key = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(key.material).encrypt(nonce, data_key, _wrap_aad(path, version, key.key_id))

    def _unwrap(self, row: LocalSecret) -> bytes:
        key = self.keyring.by_id(row.key_id)
        if key is None and self._reload_keyring():
            key = self.keyring.by_id(row.key_id)  # another process rotated the key file meanwhile
        if key is None:
            raise SecretIntegrityError(f"{row.path} version {row.version} is wrapped by master key {row.key_id}, "
                                       "which is not in the key list")
        blob = bytes(row.wrapped_key)
        try:
            return AESGCM(key.material).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                                _wrap_aad(row.path, row.version, key.key_id))
        except InvalidTag:
            raise SecretIntegrityError(
                f"the data key of {row.path} version {row.version} does not authenticate: the row was altered "
                "or copied from another path or version") from None

    # --- helpers ---------------------------------------------------------------------------------

    def _reload_keyring(self) -> bool:
        """Re-read the key list from its source, in place (the cache cipher holds the same KeyRing)."""
        if self._keyring is None or isinstance(self._keyring_source, KeyRing):
            return False
        fresh = self._keyring_source()
        self._keyring.keys = list(fresh.keys)
        return True

    def _session(self):
        return _ReadSession(self._sessions)

    @staticmethod
    def _row(s: Session, path: str, version: int | None) -> LocalSecret:
        query = select(LocalSecret).where(LocalSecret.path == path, LocalSecret.deleted == False)  # noqa: E712
        if version is not None:
            query = query.where(LocalSecret.version == version)
        row = s.scalars(query.order_by(col(LocalSecret.version).desc()).limit(1)).first()
        if row is None:
            raise SecretNotFound(f"no secret at {path}" + (f" version {version}" if version is not None else ""))
        return row

    def iter_latest(self) -> Iterator[tuple[str, int]]:
        """(path, latest live version) for every live secret; for migrations."""
        with self._session() as s:
            rows = s.execute(sa.select(col(LocalSecret.path), sa.func.max(col(LocalSecret.version)))
                             .where(col(LocalSecret.deleted) == False).group_by(LocalSecret.path)  # noqa: E712
                             .order_by(LocalSecret.path)).all()
        yield from ((p, v) for p, v in rows)


def _wrap_aad(path: str, version: int, key_id: str) -> bytes:
    return associated_data(path, version) + b"\x00" + key_id.encode("ascii")


def _check_path(path: str) -> None:
    if not path or "\x00" in path or len(path) > 500:
        raise ValidationFailed("a secret path must be 1-500 characters without NUL")


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class _ReadSession:
    """A read-only session that turns a lost database into SecretStoreUnavailable."""

    def __init__(self, sessions):
        self._session = sessions()

    def __enter__(self) -> Session:
        return self._session

    def __exit__(self, exc_type, exc, tb):
        self._session.close()
        if exc_type is not None and issubclass(exc_type, OperationalError):
            raise SecretStoreUnavailable("the local secret store's database cannot be reached") from None
        return False
