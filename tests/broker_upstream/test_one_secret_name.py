"""One secret, one reference: what the broker stores itself (a refresh token from the connect flow, a rotated
client secret) and what `govern secrets put` stores for the same credential, principal and field are the same
SecretRef, so neither shadows the other (issue #15: found by building the fixtures through apply)."""
import sqlalchemy as sa

from govern.domain.secret import Secret, secret_ref_name
from govern.store.tables import SecretRef
from tests.factories import make_landscape, put_credential_secret


def _refs(services, credential: str, field: str) -> list[str]:
    with services.sessions() as s:
        return list(s.execute(sa.select(SecretRef.external_id).where(
            SecretRef.owner == credential, SecretRef.field == field)).scalars())


def test_the_broker_and_secrets_put_write_the_same_reference(broker_services):
    names = make_landscape(broker_services)
    credential, principal = names["credential"], names["principal"]
    secrets = broker_services.upstream_tokens.secrets
    first = secrets.replace(credential, principal, "client_secret", Secret("broker-written-value-1"),
                            expected_version=None)
    assert _refs(broker_services, credential, "client_secret") == [
        secret_ref_name("credential", credential, principal, "client_secret")]

    put_credential_secret(broker_services, credential, "client_secret", "operator-written-value-2", principal=principal)
    assert _refs(broker_services, credential, "client_secret") == [
        secret_ref_name("credential", credential, principal, "client_secret")]
    current = secrets.current(credential, principal, "client_secret")
    assert current is not None and current.version > first
    assert current.value.reveal() == "operator-written-value-2"

    secrets.replace(credential, principal, "client_secret", Secret("broker-written-value-3"),
                    expected_version=current.version)
    assert len(_refs(broker_services, credential, "client_secret")) == 1
    assert secrets.current(credential, principal, "client_secret").value.reveal() == "broker-written-value-3"
