"""The secret store's own encryption key. The store does the work (`rotate_key()`, e.g. the local
AES-GCM store re-wrapping data keys under a new master key; Vault transit `rotate`); cached data
encrypted by govern is then re-encrypted through the cache cipher's rotate() (RotationCollaborators.cache_cipher) if present.
A store without rotate_key() reports "not supported by this store" for its item."""
from __future__ import annotations

from govern.rotation.rotators.base import NotSupported, RotationContext, RotationTestFailed


class StoreKeyRotator:
    name = "store_key"
    manual = False

    def create_pending(self, ctx: RotationContext) -> int | None:
        if not hasattr(ctx.store, "rotate_key"):
            raise NotSupported(f"key rotation is not supported by this store ({getattr(ctx.store, 'kind', '?')})")
        return None

    def set(self, ctx: RotationContext) -> bool:
        rotate_key = getattr(ctx.store, "rotate_key", None)  # not in the SecretStore port: checked at create_pending
        if rotate_key is None:
            raise NotSupported(f"key rotation is not supported by this store ({getattr(ctx.store, 'kind', '?')})")
        rotate_key()
        cipher = ctx.collaborators.cache_cipher
        if cipher is not None and hasattr(cipher, "rotate"):
            cipher.rotate()
        return True

    def test(self, ctx: RotationContext) -> None:
        ctx.store.ping()
        # Every secret must still decrypt after the key change (the store keeps old keys for reading).
        for path in ctx.store.list_paths()[:50]:
            try:
                ctx.store.get(path)
            except Exception as exc:  # noqa: BLE001
                raise RotationTestFailed(f"{path} no longer reads back after the key rotation ({type(exc).__name__})") from None

    def finish(self, ctx: RotationContext) -> None:
        return None

    def revoke_previous(self, ctx: RotationContext, version: int | None) -> None:
        retire = getattr(ctx.store, "retire_old_keys", None)
        if retire is not None:
            retire()
