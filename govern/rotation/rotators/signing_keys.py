"""govern's own token-signing keys. The key set lives with the authorization server (RotationCollaborators.signing_keys,
an object with rotate() and retire_expired()); the JWKS keeps a retired key until the
tokens it signed have expired, which is what retire_expired() decides. Without the hook this rotator
reports "not configured" for its item instead of failing the batch."""
from __future__ import annotations

from govern.rotation.rotators.base import NotConfigured, RotationContext, RotationTestFailed


def _hook(ctx: RotationContext):
    hook = ctx.collaborators.signing_keys
    if hook is None or not hasattr(hook, "rotate"):
        raise NotConfigured("no signing-key set is configured (services.signing_key_hook)")
    return hook


class SigningKeyRotator:
    name = "signing_keys"
    manual = False

    def create_pending(self, ctx: RotationContext) -> int | None:
        _hook(ctx)  # fail early, before anything changes
        return None  # the key set makes and stores its own keys

    def set(self, ctx: RotationContext) -> bool:
        # A repeated rotate() after a crash adds one more key; the set still holds a valid active key.
        _hook(ctx).rotate()
        return True

    def test(self, ctx: RotationContext) -> None:
        hook = _hook(ctx)
        check = getattr(hook, "verify", None) or getattr(hook, "self_test", None)
        if check is not None and check() is False:
            raise RotationTestFailed("the new signing key does not sign and verify")

    def finish(self, ctx: RotationContext) -> None:
        return None

    def revoke_previous(self, ctx: RotationContext, version: int | None) -> None:
        retire = getattr(_hook(ctx), "retire_expired", None)
        if retire is not None:
            retire()
