"""The step of each state of the rotation machine (govern.rotation.machine): what runs at the target and in
the secret store when a run is in that state. The runner (govern.rotation.runner) claims the run, calls the
step for its state and persists the transition; a step never touches the run's stored state.

    created -> create_pending    pending -> set    set -> test    tested -> finish

Every step is idempotent: after a crash the next worker runs the same step again with the same context.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from govern.domain.rotation import Promotion
from govern.errors import SecretNotFound
from govern.ports import RotationRepository
from govern.rotation import machine
from govern.rotation.rotators import RotationContext
from govern.rotation.rotators.base import staging_path
from govern.rotation.support import describe_error

log = logging.getLogger("govern.rotation")


@dataclass(frozen=True)
class StepResult:
    """What a step did: a version staged (create_pending), an operator to wait for (set), a promotion (finish)."""

    pending_version: int | None = None
    awaiting: bool = False
    promotion: Promotion | None = None


def create_pending(rotator: Any, ctx: RotationContext, repo: RotationRepository) -> StepResult:
    """`created`: stage a new version apart from the secret's own path (or let the target make its own)."""
    return StepResult(pending_version=rotator.create_pending(ctx))


def set_at_target(rotator: Any, ctx: RotationContext, repo: RotationRepository) -> StepResult:
    """`pending`: put the new secret in place at the target, or wait for an operator to (False)."""
    result = rotator.set(ctx)
    if result is not False and getattr(rotator, "single_secret", False):
        # The target now accepts only the new secret: the secret's own path follows at once.
        copy_staged(ctx)
    return StepResult(awaiting=result is False)


def test_at_target(rotator: Any, ctx: RotationContext, repo: RotationRepository) -> StepResult:
    """`set`: prove the new secret works at the target (raises when it does not)."""
    rotator.test(ctx)
    return StepResult()


def finish(rotator: Any, ctx: RotationContext, repo: RotationRepository) -> StepResult:
    """`tested`: the target's own finishing work, then the store half of it (promote_in_store)."""
    rotator.finish(ctx)
    return StepResult(promotion=promote_in_store(rotator, ctx, repo))


STEP_OF_STATE: dict[str, Callable[[Any, RotationContext, RotationRepository], StepResult]] = {
    machine.CREATED: create_pending, machine.PENDING: set_at_target, machine.SET: test_at_target,
    machine.TESTED: finish,
}
assert set(STEP_OF_STATE) == set(machine.STEP_FOR_STATE)  # one step per runnable state


def roll_back(rotator: Any, ctx: RotationContext) -> None:
    """After a failed test: set the target back to the current secret (and the secret's own path with it,
    for a single-secret target)."""
    if rotator is None or not hasattr(rotator, "rollback"):
        return
    rotator.rollback(ctx)
    if getattr(rotator, "single_secret", False):
        restore_current(ctx)


def promote_in_store(rotator: Any, ctx: RotationContext, repo: RotationRepository) -> Promotion:
    """The store half of `finish`: copy the staged secret to the secret's own path (it has been set and
    tested, so from now on the latest version there works), and revoke at the target the previous
    versions it supersedes. Idempotent: a copy a crashed attempt already made is found and reused."""
    if ctx.pending_version is None:
        return Promotion(None, ())
    version = copy_staged(ctx)
    retired = []
    for old in repo.previous_versions(ctx.ref.id, version):
        try:
            rotator.revoke_previous(ctx, old)
            retired.append(old)
        except Exception as exc:  # noqa: BLE001 - retried by revoke_expired; the rotation still finishes
            log.warning("revoking a superseded version failed", extra={
                "secret_name": ctx.ref.external_id, "version": old, "error_text": describe_error(exc)})
    return Promotion(version, tuple(retired))


def copy_staged(ctx: RotationContext) -> int:
    """Write the staged secret as the newest version at the secret's own path (check-and-set), unless
    it already is (a crashed attempt copied it). Returns that version."""
    store, path = ctx.store, ctx.ref.path
    value = ctx.pending()
    try:
        latest = store.metadata(path).version
    except SecretNotFound:
        latest = 0
    if latest and latest != ctx.ref.current_version and store.get(path, version=latest).reveal() == value.reveal():
        return latest
    return store.put(path, value, cas=latest).version


def restore_current(ctx: RotationContext) -> None:
    """After a rollback: if the secret's own path was already following a single-secret target, write
    the current secret (the one the target is back on) as its newest version again."""
    current = ctx.current()
    if current is None:
        return
    try:
        latest = ctx.store.metadata(ctx.ref.path).version
    except SecretNotFound:
        return
    if latest != ctx.ref.current_version and ctx.store.get(ctx.ref.path, version=latest).reveal() != current.reveal():
        ctx.store.put(ctx.ref.path, current, cas=latest)


def drop_staged(ctx: RotationContext) -> None:
    """The staged copy is not needed once promoted (a copy left by a crash is recognised as the current
    secret by the next create_pending, and replaced)."""
    try:
        ctx.store.delete(staging_path(ctx.ref.path))
    except Exception as exc:  # noqa: BLE001
        log.warning("the staged secret was not deleted", extra={"secret_name": ctx.ref.external_id,
                                                                "exc_type": type(exc).__name__})
