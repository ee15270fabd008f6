"""A rotation against a real OpenBao (KV v2 through the product's VaultSecretStore): a worker dies after
the target was changed, the next worker resumes, and check-and-set keeps exactly one new version."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from govern.domain.client_auth import verify_client_secret
from govern.errors import SecretNotFound
from govern.rotation import machine
from govern.rotation.wiring import rotation_service
from govern.secrets.service import secret_service
from govern.store.db import session_scope
from govern.store.tables import IntegrationUser, RotationRun, SecretRef
from tests.rotation.conftest import build

pytestmark = pytest.mark.vault


class Crash(BaseException):
    pass


def test_client_secret_rotation_on_openbao_survives_a_crash(openbao, settings, clock, notifier):
    import hvac

    from govern.secrets.vault import VaultSecretStore
    from govern.secrets.vault_auth import TokenAuth

    store = VaultSecretStore(hvac.Client(url=openbao.addr, timeout=5), TokenAuth(openbao.token), mount="secret")
    services = build(settings, clock, notifier, store=store)
    try:
        user = f"bao-sync-{uuid.uuid4().hex[:8]}"  # the dev server is shared by the session
        with session_scope(services.sessions) as s:
            s.add(IntegrationUser(external_id=user, name=user))
        status = secret_service(services).put_for_user(user, "client_secret", "old-client-secret-value")
        with session_scope(services.sessions) as s:
            ref_id = s.execute(sa.select(SecretRef.id).where(SecretRef.external_id == status.ref)).scalar_one()

        def crash_before_recording_set(point, run_id, step):
            if point == "before_persist" and step == "set":
                raise Crash()

        first = rotation_service(services, worker_id="w1", hook=crash_before_recording_set)
        with pytest.raises(Crash):
            first.rotate(ref_id, force=True)
        # The pending version is in OpenBao, staged apart: the latest version at the secret's path is still
        # the one that works.
        assert store.metadata(status.ref).versions == (1,)
        assert store.metadata("_pending/" + status.ref).versions == (1,)
        assert store.get(status.ref).reveal() == "old-client-secret-value"
        clock.advance(seconds=121)  # the dead worker's lease runs out
        (outcome,) = rotation_service(services, worker_id="w2").drain()
        assert outcome.status == "finished", outcome

        assert store.metadata(status.ref).versions == (1, 2)  # resumed, not written twice
        with pytest.raises(SecretNotFound):
            store.metadata("_pending/" + status.ref)  # the staged copy is gone once promoted
        new = store.get(status.ref).reveal()
        assert new != "old-client-secret-value"
        with session_scope(services.sessions) as s:
            row = s.execute(sa.select(IntegrationUser).where(IntegrationUser.external_id == user)).scalar_one()
            run = s.execute(sa.select(RotationRun).where(RotationRun.secret_ref_id == ref_id)).scalar_one()
            ref = s.get(SecretRef, ref_id)
        assert run.state == machine.FINISHED and ref.current_version == 2
        assert verify_client_secret(row, new, clock.now())
        assert verify_client_secret(row, "old-client-secret-value", clock.now())  # the overlap
    finally:
        services.close()
