"""A refresh-token rotation whose answer is lost must not lock the principal out (issue #4, "A lost response")."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from govern.broker.upstream.errors import UpstreamInvalidGrant
from govern.errors import UpstreamUnavailable
from govern.store.upstream_tables import RefreshJournal
from govern.secrets.service import secret_ref_name
from tests.broker_upstream.conftest import put_secret, wire_credential


def _journal(services):
    with services.sessions() as s:
        return [(r.state, r.error) for r in s.execute(sa.select(RefreshJournal).order_by(RefreshJournal.id)).scalars()]


def test_dropped_answer_after_rotation_recovers_within_the_grace_period(broker_services, fake_upstream):
    fake_upstream.refresh_grace_seconds = 60
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    old = fake_upstream.issue_refresh_token("erp-client")
    put_secret(broker_services, names["credential"], "default", "refresh_token", old)
    fake_upstream.inject("drop_after_commit", grant="refresh_token")
    src = broker_services.upstream_tokens
    with pytest.raises(UpstreamUnavailable):
        src.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.committed["refresh_token"] == 1  # the upstream did rotate
    assert _journal(broker_services) == [("in_doubt", "no_answer")]

    token = src.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.access_token_valid(token.access_token.reveal())
    assert _journal(broker_services) == [("failed", "reconciled"), ("succeeded", None)]
    stored = broker_services.secret_store.get(secret_ref_name("credential", names["credential"], "default", "refresh_token")).reveal()
    assert stored != old and fake_upstream.refresh_token_valid(stored)


def test_without_a_grace_period_the_lock_out_is_reported_not_hidden(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    put_secret(broker_services, names["credential"], "default", "refresh_token", fake_upstream.issue_refresh_token("erp-client"))
    fake_upstream.inject("drop_after_commit", grant="refresh_token")
    src = broker_services.upstream_tokens
    with pytest.raises(UpstreamUnavailable):
        src.get_token(names["named_credential"], "default", ("orders.read",))
    with pytest.raises(UpstreamInvalidGrant):
        src.get_token(names["named_credential"], "default", ("orders.read",))
    # Both closed: the attempt in doubt is answered by the refusal too (its token is dead).
    assert _journal(broker_services) == [("failed", "invalid_grant"), ("failed", "invalid_grant")]


def test_a_rotated_token_in_the_vault_is_used_even_if_its_row_was_not_recorded(broker_services, fake_upstream):
    """The vault write is the commit point: a crash between it and the SecretVersion row loses nothing."""
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    put_secret(broker_services, names["credential"], "default", "refresh_token", fake_upstream.issue_refresh_token("erp-client"))
    path = secret_ref_name("credential", names["credential"], "default", "refresh_token")
    newer = fake_upstream.issue_refresh_token("erp-client")
    from govern.domain.secret import Secret

    broker_services.secret_store.put(path, Secret(newer), cas=1)  # stored, then the worker died
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.refresh_tokens[newer].revoked_at is not None  # the newer token was the one used
    assert token.access_token
