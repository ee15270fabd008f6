"""Issue #14: a private key is parsed, and its type checked against the algorithm govern signs with,
before it is stored: by `govern secrets put`, the API and the console (a multi-line field). A bad key gets
a clear error and stores nothing. Each channel has a positive control."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.admin.conftest import console_users  # noqa: F401 - the console's admin/operator/auditor users
from tests.security.auth_landscape import applied  # noqa: F401

REF = "credential/erp-jwt/principal/bob/private_key"
_PKCS8 = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8)


def _pem(key, encryption=None) -> str:
    return key.private_bytes(*_PKCS8, encryption or serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def keys():
    rsa_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "erp")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(cert_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(cert_key, hashes.SHA256()))
    rsa_pem = _pem(rsa_2048)
    body = "".join(rsa_pem.splitlines()[1:-1])
    return {
        "good_rsa": rsa_pem,
        "good_ec": _pem(ec.generate_private_key(ec.SECP256R1())),
        "good_rsa_traditional": rsa_2048.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption()).decode(),
        "good_single_line_paste": rsa_pem.replace("\n", " "),
        "bad_bare_begin_line": "-----BEGIN PRIVATE KEY-----",
        "bad_begin_and_end_only": "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "bad_truncated_body": f"-----BEGIN PRIVATE KEY-----\n{body[:200]}\n-----END PRIVATE KEY-----\n",
        "bad_not_pem": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "bad_public_key": rsa_2048.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "bad_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "bad_encrypted": _pem(rsa_2048, serialization.BestAvailableEncryption(b"passphrase")),
        "bad_rsa_1024": _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        "bad_ec_p384": _pem(ec.generate_private_key(ec.SECP384R1())),
        "bad_ed25519": _pem(ed25519.Ed25519PrivateKey.generate()),
        "bad_garbage_body": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n",
        "bad_mismatched_armour": rsa_pem.replace("END PRIVATE KEY", "END RSA PRIVATE KEY"),
    }


BAD = ["bad_bare_begin_line", "bad_begin_and_end_only", "bad_truncated_body", "bad_not_pem", "bad_public_key",
       "bad_certificate", "bad_encrypted", "bad_rsa_1024", "bad_ec_p384", "bad_ed25519", "bad_garbage_body",
       "bad_mismatched_armour"]
GOOD = ["good_rsa", "good_ec", "good_rsa_traditional", "good_single_line_paste"]


def _stored(services) -> str | None:
    import sqlalchemy as sa

    from govern.store.tables import SecretRef

    with services.sessions() as s:
        if s.execute(sa.select(SecretRef).where(SecretRef.external_id == REF)).scalars().first() is None:
            return None
    return services.secret_store.get(REF).reveal()


def _put_cli(runner, value):
    return runner.invoke(["secrets", "put", "erp-jwt", "--principal", "bob", "--field", "private_key"], input=value)


@pytest.mark.parametrize("name", BAD)
def test_cli_refuses_a_bad_key_and_stores_nothing(applied, runner, services, keys, name):
    result = _put_cli(runner, keys[name])
    assert result.exit_code != 0
    assert result.output.startswith("error: value: ") and " key" in result.output.lower()
    assert "PRIVATE KEY-----\n" not in result.output  # the value is never echoed
    assert _stored(services) is None


@pytest.mark.parametrize("name", GOOD)
def test_positive_control_cli_stores_a_good_key_in_canonical_pem(applied, runner, services, keys, name):
    result = _put_cli(runner, keys[name])
    assert result.exit_code == 0, result.output
    stored = _stored(services)
    assert stored.startswith("-----BEGIN PRIVATE KEY-----\n") and stored.endswith("-----END PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(stored.encode(), password=None)
    assert isinstance(loaded, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))


@pytest.mark.parametrize("name", ["bad_bare_begin_line", "bad_public_key", "bad_ec_p384", "bad_encrypted"])
def test_api_refuses_a_bad_key_with_422_and_stores_nothing(applied, client, services, admin_token, keys, name):
    resp = client.put("/api/v1/credentials/erp-jwt/secrets/private_key?principal=bob", json={"value": keys[name]},
                      headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == "validation_failed" and "key" in body["detail"]
    assert "-----BEGIN" not in resp.get_data(as_text=True) or name == "bad_bare_begin_line" and \
        keys[name] not in body["detail"]
    assert _stored(services) is None


def test_positive_control_api_stores_a_good_key(applied, client, services, admin_token, keys):
    resp = client.put("/api/v1/credentials/erp-jwt/secrets/private_key?principal=bob", json={"value": keys["good_ec"]},
                      headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert _stored(services) is not None


def _console_post(client, services, value_field: str, value: str):
    import sqlalchemy as sa

    from govern.store.tables import ExternalCredential
    from tests.admin.conftest import csrf_from, sign_in

    assert sign_in(client, "admin-user").status_code == 302
    with services.sessions() as s:
        cred_id = s.execute(sa.select(ExternalCredential.id).where(
            ExternalCredential.external_id == "erp-jwt")).scalar_one()
    page = client.get(f"/admin/credentials/details/?id={cred_id}").get_data(as_text=True)
    assert 'name="value_pem"' in page and "<textarea" in page  # the multi-line field
    data = {"csrf_token": csrf_from(page), "credential": "erp-jwt", "field": "private_key", "principal": "bob",
            value_field: value}
    return client.post("/admin/credentials/set-secret/", data=data, follow_redirects=True)


@pytest.mark.parametrize("name", ["bad_bare_begin_line", "bad_rsa_1024", "bad_certificate"])
def test_console_refuses_a_bad_key_and_stores_nothing(applied, client, services, console_users, keys, name):
    page = _console_post(client, services, "value_pem", keys[name])
    assert page.status_code == 200
    text = page.get_data(as_text=True).lower()
    assert "private key" in text and ("the rsa key has 1024 bits" in text or "not a private key" in text
                                      or "incomplete" in text)
    assert _stored(services) is None


@pytest.mark.parametrize("field", ["value_pem", "value"])
def test_positive_control_console_stores_a_pasted_key(applied, client, services, console_users, keys, field):
    # The textarea keeps the line breaks; a single-line paste into the password field lost them: both work.
    value = keys["good_rsa"] if field == "value_pem" else keys["good_single_line_paste"]
    page = _console_post(client, services, field, value)
    assert page.status_code == 200
    assert _stored(services) is not None
