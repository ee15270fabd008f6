"""Build landscape rows directly in the database, for tests that need a few entities without YAML."""
from __future__ import annotations

import datetime as dt

from govern.domain.passwords import hash_password
from govern.store.db import session_scope
from govern.store.tables import (Assignment, ExternalCredential, IntegrationUser, NamedCredential, PermissionGrant,
                                 PermissionSet, Principal, System)


def make_landscape(sessions, *, system="erp", credential="erp-cc", protocol="oauth2_client_credentials",
                   token_url="http://127.0.0.1:9/token", client_id="erp-client", named_credential="erp-api",
                   url="http://127.0.0.1:9/api", user="order-sync", client_secret="s3cret-client-secret-value",
                   cidrs=("127.0.0.0/8",), user_scopes=("orders.read", "orders.write"),
                   permission_set="order-sync-ps", ps_scopes=("orders.read",), methods=("GET",), paths=("/**",),
                   principal="default", principal_type="named", assignment_expires=None, status="active",
                   daily_api_budget=None, maintenance_windows=(), api_types=("REST",), max_token_lifetime=900):
    """One system with one credential, principal, named credential, integration user and permission set."""
    with session_scope(sessions) as s:
        sys_row = System(external_id=system, name=system, owner="team@example.com", escalation_contact="oncall@example.com",
                         daily_api_budget=daily_api_budget, maintenance_windows=list(maintenance_windows),
                         scopes=sorted(set(user_scopes) | set(ps_scopes)), runbook_url="https://runbooks.example.com/x")
        s.add(sys_row)
        s.flush()
        cred = ExternalCredential(external_id=credential, system_id=sys_row.id, protocol=protocol, token_url=token_url,
                                  client_id=client_id, client_auth_method="client_secret_basic",
                                  scopes=list(ps_scopes), principal_type=principal_type)
        s.add(cred)
        s.flush()
        iu = IntegrationUser(external_id=user, name=user, owner="team@example.com", justification="test",
                             status=status, client_secret_hash=hash_password(client_secret) if client_secret else None,
                             allowed_cidrs=list(cidrs), allowed_scopes=list(user_scopes),
                             review_date=dt.date.today() + dt.timedelta(days=90))
        s.add(iu)
        s.flush()
        s.add(Principal(credential_id=cred.id, name=principal, kind=principal_type,
                        integration_user_id=iu.id if principal_type == "per_user" else None))
        nc = NamedCredential(external_id=named_credential, credential_id=cred.id, url=url,
                             allowed_methods=list(methods), allowed_paths=list(paths))
        s.add(nc)
        s.flush()
        ps = PermissionSet(external_id=permission_set, scopes=list(ps_scopes), api_types=list(api_types),
                           max_token_lifetime_seconds=max_token_lifetime)
        s.add(ps)
        s.flush()
        s.add(PermissionGrant(permission_set_id=ps.id, named_credential_id=nc.id, principal=principal,
                              methods=list(methods), paths=list(paths)))
        s.add(Assignment(integration_user_id=iu.id, permission_set_id=ps.id, expires_at=assignment_expires))
    return {"system": system, "credential": credential, "named_credential": named_credential, "user": user,
            "client_secret": client_secret, "permission_set": permission_set, "principal": principal}
