"""The factory's landscape is what `govern export` reads back, and its user authenticates with its secret."""
import base64
import datetime as dt

import yaml

from govern.config_as_code.validate import validate_document
from govern.landscape import export_document
from govern.secrets.service import secret_service
from tests.factories import apply_landscape, landscape_document, make_landscape


def _specs(text: str) -> dict:
    return validate_document(text)


def test_make_landscape_is_what_export_reads_back(services):
    until = dt.date.today() + dt.timedelta(days=3)
    settings = dict(system="crm", credential="crm-cc", named_credential="crm-api", user="crm-sync",
                    permission_set="crm-ps", principal_type="per_user", principal="crm-sync-upstream",
                    methods=("GET", "PATCH"), paths=("/accounts/**",), daily_api_budget=40,
                    maintenance_windows=[{"day": "sun", "start": "02:00", "end": "24:00"}],
                    assignment_expires=until, status="suspended", max_token_lifetime=300, timeout=2.5)
    names = make_landscape(services, **settings)
    assert names == {"system": "crm", "credential": "crm-cc", "named_credential": "crm-api", "user": "crm-sync",
                     "client_secret": "s3cret-client-secret-value", "permission_set": "crm-ps",
                     "principal": "crm-sync-upstream"}
    exported = export_document(services.sessions)
    # Equal meaning, compared as normalised specs (export omits defaults and sorts by id).
    assert _specs(exported) == _specs(yaml.safe_dump(landscape_document(**settings)))
    # Exporting and applying again changes nothing: the factory wrote only what the schema can say.
    assert not apply_landscape(services, exported).has_changes
    user = yaml.safe_load(exported)["integration_users"][0]
    assert user["status"] == "suspended"
    assert user["permission_sets"] == [{"permission_set": "crm-ps", "until": until.isoformat()}]


def test_client_secret_is_set_through_the_secret_service(services, client):
    make_landscape(services, client_secret="factory-canary-secret-1f2e")
    refs = {s.ref for s in secret_service(services).status()}
    assert refs == {"integration_user/order-sync/client_secret"}

    def issue(secret: str):
        auth = base64.b64encode(f"order-sync:{secret}".encode()).decode()
        return client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {auth}"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})

    assert issue("factory-canary-secret-1f2e").status_code == 200
    assert issue("not-the-secret").status_code == 401


def test_no_client_secret_means_none_is_stored(services):
    make_landscape(services, client_secret=None)
    assert secret_service(services).status() == []
