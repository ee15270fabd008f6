"""Issue #19, rule recall and precision, on small metadata files written here: each permission fires its rule (on
the line of its <name>), not when disabled, and not on a group that mutes it; View All / Modify All severity grows
with the objects; certificates in PEM and bare base64 DER; version pinning only on Salesforce's platform API; the
import reports every file it skipped and why."""
from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from govern.audit.engine import catalogue, run_rules
from govern.audit.salesforce.importer import import_directory

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NS = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
SEED = Path("/work/shared/seed/000_4e8407c689f234ad.txt")

PERMISSIONS = {
    "GOV-DATA-001": ["DataExport"],
    "GOV-LOG-001": ["ViewEventLogFiles", "ViewAllData"],
    "GOV-IDSEC-001": ["ManagePasswordPolicies", "ManageTwoFactor", "FreezeUsers", "ManageEncryptionKeys",
                      "ManageLoginAccessPolicies"],
    "GOV-ORG-001": ["ConnectOrgToEnvironmentHub"],
    "GOV-EMAIL-001": ["EmailMass"],
}
CASES = [(rule_id, perm) for rule_id, perms in PERMISSIONS.items() for perm in perms]


def _ps(name: str, perms: dict[str, bool], objects: dict[str, tuple[bool, bool]] | None = None) -> str:
    body = "".join(f"    <userPermissions>\n        <enabled>{'true' if on else 'false'}</enabled>\n"
                   f"        <name>{p}</name>\n    </userPermissions>\n" for p, on in perms.items())
    for obj, (view_all, modify_all) in (objects or {}).items():
        body += (f"    <objectPermissions>\n        <allowRead>true</allowRead>\n        <object>{obj}</object>\n"
                 f"        <viewAllRecords>{str(view_all).lower()}</viewAllRecords>\n"
                 f"        <modifyAllRecords>{str(modify_all).lower()}</modifyAllRecords>\n    </objectPermissions>\n")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<PermissionSet {NS}>\n    <label>{name}</label>\n{body}</PermissionSet>\n'


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _found(root: Path):
    return {(f.rule_id, f.subject): f for f in run_rules(import_directory(root, NOW).model)}


@pytest.mark.parametrize(("rule_id", "perm"), CASES)
def test_each_permission_fires_its_rule_on_its_line_and_not_when_off_or_muted(tmp_path, rule_id, perm):
    ps = "force-app/main/default/permissionsets"
    path = _write(tmp_path, f"{ps}/Holder.permissionset-meta.xml", _ps("Holder", {perm: True}))
    _write(tmp_path, f"{ps}/Off.permissionset-meta.xml", _ps("Off", {perm: False}))
    _write(tmp_path, f"{ps}/Unrelated.permissionset-meta.xml", _ps("Unrelated", {"ApiEnabled": True}))
    # a group with the holder whose muting set mutes the permission, and one without muting
    _write(tmp_path, "force-app/main/default/mutingpermissionsets/Mute.mutingpermissionset-meta.xml",
           _ps("Mute", {perm: True}).replace("PermissionSet", "MutingPermissionSet"))
    group = ('<?xml version="1.0" encoding="UTF-8"?>\n<PermissionSetGroup ' + NS + '>\n    <label>{0}</label>\n'
             '{1}    <permissionSets>Holder</permissionSets>\n</PermissionSetGroup>\n')
    _write(tmp_path, "force-app/main/default/permissionsetgroups/Muted.permissionsetgroup-meta.xml",
           group.format("Muted", "    <mutingPermissionSets>Mute</mutingPermissionSets>\n"))
    _write(tmp_path, "force-app/main/default/permissionsetgroups/Bundle.permissionsetgroup-meta.xml",
           group.format("Bundle", ""))
    found = _found(tmp_path)
    hit = found.get((rule_id, "Holder"))
    assert hit is not None, sorted(found)
    assert perm in hit.evidence["permissions"]
    assert f"<name>{perm}</name>" in path.read_text().splitlines()[hit.location.line - 1]
    assert (rule_id, "Bundle") in found  # the group grants its member's permission ...
    assert (rule_id, "Muted") not in found  # ... unless it mutes it
    assert (rule_id, "Off") not in found and (rule_id, "Unrelated") not in found and (rule_id, "Mute") not in found


def test_new_rules_cite_the_seed_and_say_how_to_fix():
    seed = SEED.read_text() if SEED.is_file() else None
    for rule_id in [*PERMISSIONS, "GOV-SECRET-006"]:
        r = catalogue()[rule_id]
        assert r.rationale.startswith("§") and len(r.remediation) > 60
        if seed is not None:  # the quoted words are the seed's own
            quoted = r.rationale.split('"')[1]
            assert quoted in seed, (rule_id, quoted)


@pytest.mark.parametrize(("objects", "severity"), [
    ({"Invoice__c": (True, False)}, "low"),  # one custom object read in full is not high
    ({"Invoice__c": (False, True)}, "medium"),
    ({"Invoice__c": (True, False), "Shipment__c": (True, False)}, "medium"),
    ({"Account": (True, False)}, "high"),
    ({f"Obj{i}__c": (True, False) for i in range(5)}, "high"),
    ({"Account": (False, True), "Contact": (False, True), "Case": (False, True)}, "critical"),
    ({f"Obj{i}__c": (True, False) for i in range(10)}, "critical"),
])
def test_view_all_modify_all_severity_grows_with_the_objects(tmp_path, objects, severity):
    _write(tmp_path, "permissionsets/Broad.permissionset-meta.xml", _ps("Broad", {}, objects))
    assert _found(tmp_path)[("GOV-ACCESS-004", "Broad")].severity == severity


def _cert(days_left: int, *, key=None, days_old: int = 300) -> x509.Certificate:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=days_old))
            .not_valid_after(NOW + dt.timedelta(days=days_left)).sign(key, hashes.SHA256()))


def _app(name: str, certificate: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ConnectedApp {NS}>\n    <label>{name}</label>\n'
            f"    <oauthConfig>\n        <callbackUrl>https://example.com/cb</callbackUrl>\n"
            f"        <certificate>{certificate}</certificate>\n        <scopes>Api</scopes>\n"
            f"    </oauthConfig>\n</ConnectedApp>\n")


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _der_base64(cert, wrap: bool):
    text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return "\n".join(text[i:i + 64] for i in range(0, len(text), 64)) if wrap else text


def _sha1_cert(tmp_path) -> x509.Certificate:
    """cryptography refuses to sign with SHA-1; the openssl command still does (a real, old-style certificate)."""
    out = tmp_path / "sha1.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha1", "-nodes", "-subj", "/CN=old",
                    "-days", "365", "-keyout", str(tmp_path / "sha1.key"), "-out", str(out)],
                   check=True, capture_output=True)
    return x509.load_pem_x509_certificate(out.read_bytes())


def test_certificates_in_pem_and_bare_base64_der(tmp_path):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    certs = {
        "Good": _cert(365), "Expired": _cert(-3), "Soon": _cert(10), "Sha1": _sha1_cert(tmp_path),
        "Rsa1024": _cert(365, key=small), "Ec192": _cert(365, key=ec.generate_private_key(ec.SECP192R1())),
    }
    for encoding, encode in (("pem", _pem), ("der", lambda c: _der_base64(c, False)),
                             ("der-wrapped", lambda c: _der_base64(c, True))):
        root = tmp_path / encoding
        for name, cert in certs.items():
            _write(root, f"connectedApps/{name}.connectedApp-meta.xml", _app(name, encode(cert)))
        _write(root, "connectedApps/Garbage.connectedApp-meta.xml", _app("Garbage", "bm90IGEgY2VydGlmaWNhdGU="))
        found = _found(root)
        bad = {s.split("#")[0]: f for (r, s), f in found.items() if r == "GOV-SECRET-005"}
        soon = {s.split("#")[0] for (r, s) in found if r == "GOV-SECRET-006"}
        assert set(bad) == {"Expired", "Sha1", "Rsa1024", "Ec192", "Garbage"}, (encoding, sorted(bad))
        assert "expired" in bad["Expired"].message and "sha1" in bad["Sha1"].message.lower()
        assert "RSA key of 1024 bits" in bad["Rsa1024"].message and "EC key of 192 bits" in bad["Ec192"].message
        assert "cannot be parsed" in bad["Garbage"].message
        assert soon == {"Soon"}, encoding


NC = ('<?xml version="1.0" encoding="UTF-8"?>\n<NamedCredential ' + NS + '>\n    <label>{0}</label>\n'
      '    <endpoint>{1}</endpoint>\n    <principalType>Anonymous</principalType>\n'
      '    <protocol>NoAuthentication</protocol>\n</NamedCredential>\n')


def test_version_rules_apply_only_to_salesforce_platform_endpoints(tmp_path):
    endpoints = {"Status": "https://api.status.salesforce.com/v1/", "Books": "https://www.googleapis.com/books/v1",
                 "Slack": "https://hooks.example.com/services/T000/B000",
                 "Old": "https://login.salesforce.com/services/data/v29.0", "Bare": "https://acme.my.salesforce.com/services/data",
                 "Current": "https://acme.my.salesforce.com/services/data/v61.0"}
    for name, url in endpoints.items():
        _write(tmp_path, f"namedCredentials/{name}.namedCredential-meta.xml", NC.format(name, url))
    found = {(r, s.split("#")[0]) for r, s in _found(tmp_path) if r.startswith("GOV-VER")}
    assert found == {("GOV-VER-002", "Old"), ("GOV-VER-001", "Bare")}


def test_the_import_reports_every_skipped_file_and_why(services, runner, tmp_path):
    root = tmp_path / "org"
    _write(root, "force-app/main/default/permissionsets/A.permissionset-meta.xml", _ps("A", {"ApiEnabled": True}))
    skipped = {
        "package.xml": "package manifest",
        "force-app/main/default/objects/Invoice__c/Invoice__c.object-meta.xml": "metadata type 'object' is not access-related",
        "force-app/main/default/classes/Sync.cls": "not access metadata (.cls",
        "force-app/main/default/classes/Sync.cls-meta.xml": "metadata type 'cls' is not access-related",
        "README": "not access metadata (no extension",
        ".forceignore": "hidden file",
    }
    for rel in skipped:
        _write(root, rel, "x")
    result = runner.invoke(["import", "salesforce", str(root), "--name", "org"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for rel, why in skipped.items():
        assert any(line.startswith("skipped\t-\t" + rel + "\t") and why in line for line in lines), (rel, result.output)
    assert lines[-1].startswith("source=org imported=1 skipped=6 failed=0")
