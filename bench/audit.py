"""Benchmark: the audit on 1,000 integration users and 1,000,000 decisions on PostgreSQL, plus the import
of 500 Salesforce metadata files.

Creates a private database govern_bench_<random> on postgresql://postgres@127.0.0.1:5432/test, migrates it,
bulk-loads with COPY (psycopg), runs the audit (rules + right-sizing; the decision log is aggregated in SQL)
and drops the database. Peak memory: tracemalloc's peak of Python allocations during the audit, plus the
process's ru_maxrss (which includes the interpreter and libraries) for reference.
Of the decisions, --pollers users each poll one GET every minute for a day and --bursts users each make 300
single-record writes in five minutes, so that the behaviour rules (GOV-BEHAV-002, -003) have work to do: the
last line counts what they found.
Usage: python bench/audit.py [--users 1000] [--decisions 1000000] [--files 500] [--pollers 20] [--bursts 20]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

# bench/ itself must not be on the path: bench/secrets.py would shadow the standard library's `secrets`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from govern.audit.engine import run_rules  # noqa: E402
from govern.audit.rightsizing import recommendations  # noqa: E402
from govern.audit.salesforce.importer import import_directory  # noqa: E402
from govern.store.audit_loader import load_model  # noqa: E402
from bench._pg import create_private_database  # noqa: E402
from govern.store.db import make_engine, make_session_factory, upgrade  # noqa: E402

BASE = os.environ.get("GOVERN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def behaviour_rows(users: int, pollers: int, bursts: int, now: dt.datetime) -> list[tuple]:
    """(at, user, method, path, object) of the polls and bursts, inside the users' grants (GET and POST under
    /orders/* and /items/**), so the right-sizing replay still allows every request."""
    rows = []
    for k in range(pollers):
        start = now - dt.timedelta(days=2 + k % 20)
        rows += [(start + dt.timedelta(minutes=i), f"user-{k % users}", "GET", "/orders/status", None)
                 for i in range(24 * 60)]
    for k in range(bursts):
        start = now - dt.timedelta(days=3 + k % 20)
        rows += [(start + dt.timedelta(seconds=i), f"user-{(users - 1 - k) % users}", "POST", "/items/contact",
                  "Contact") for i in range(300)]
    return rows


def seed(url: str, users: int, decisions: int, now: dt.datetime, pollers: int = 0, bursts: int = 0) -> None:
    rnd = random.Random(7)
    with psycopg.connect(url, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO system (external_id, name, kind, description, sla, maintenance_windows, scopes, "
                    "contract, created_at, updated_at, owner, escalation_contact, runbook_url, daily_api_budget) "
                    "VALUES ('erp','erp','erp','', '{}','[]','[]','{}', now(), now(), 'o', 'e', 'r', 1000) RETURNING id")
        sys_id = cur.fetchone()[0]
        cur.execute("INSERT INTO external_credential (external_id, system_id, protocol, scopes, principal_type, rotation,"
                    " resource, token_params, created_at, updated_at) VALUES ('erp-cc', %s, "
                    "'oauth2_client_credentials', '[]', 'named', '{\"every\": \"90d\"}', '[]', '{}', now(), now()) "
                    "RETURNING id", (sys_id,))
        cred = cur.fetchone()[0]
        ncs = []
        for i in range(20):
            cur.execute("INSERT INTO named_credential (external_id, credential_id, url, api_version, api_type, "
                        "timeout_seconds, retry, circuit_breaker, allowed_methods, allowed_paths, during_maintenance, "
                        "max_body_bytes, created_at, updated_at) VALUES (%s, %s, 'https://erp/api', 'v1', 'REST', 10, "
                        "'{}', '{}', '[]', '[]', 'refuse', 1000, now(), now()) RETURNING id", (f"nc-{i}", cred))
            ncs.append(cur.fetchone()[0])
        with cur.copy("COPY integration_user (external_id, name, owner, justification, status, client_auth_method, "
                      "jwks, allowed_cidrs, allowed_scopes, rotation, created_at, updated_at, last_used_at) "
                      "FROM STDIN") as cp:
            for u in range(users):
                cp.write_row((f"user-{u}", f"user {u}", "o", "j", "active", "client_secret_basic", "{}",
                              '["10.0.0.0/24"]', '["read","write"]', "{}", now - dt.timedelta(days=100), now, now))
        with cur.copy("COPY permission_set (external_id, description, scopes, api_types, max_token_lifetime_seconds, "
                      "allow_budget_overdraft, system_permissions, source, created_at, updated_at) FROM STDIN") as cp:
            for u in range(users):
                cp.write_row((f"ps-{u}", "", '["read","write"]', '["REST","SOAP"]', 900, False, "[]", "govern", now, now))
        cur.execute("SELECT external_id, id FROM integration_user")
        uid = dict(cur.fetchall())
        cur.execute("SELECT external_id, id FROM permission_set")
        pid = dict(cur.fetchall())
        with cur.copy("COPY permission_grant (permission_set_id, position, named_credential_id, principal, methods, "
                      "paths, objects) FROM STDIN") as cp:
            for u in range(users):
                for k in range(3):
                    cp.write_row((pid[f"ps-{u}"], k, ncs[(u + k) % 20], "default", '["GET","POST"]',
                                  '["/orders/*","/items/**"]', "{}"))
        with cur.copy("COPY assignment (integration_user_id, permission_set_id, created_at) FROM STDIN") as cp:
            for u in range(users):
                cp.write_row((uid[f"user-{u}"], pid[f"ps-{u}"], now))
        with cur.copy("COPY decision (at, correlation_id, integration_user, action, named_credential, principal, "
                      "method, path, resource_object, api_type, scopes_requested, scopes_granted, allowed, outcome, "
                      "rules, prev_hash, hash) FROM STDIN") as cp:
            special = behaviour_rows(users, pollers, bursts, now)
            for i, (at, user, method, path, obj) in enumerate(special):
                cp.write_row((at, f"b{i}", user, "proxy", f"nc-{int(user.split('-')[1]) % 20}", "default", method,
                              path, obj, "REST", '["read"]', '["read"]', True, "allow", "[]",
                              f"b{i:063x}", f"b{i + 1:063x}"))
            for i in range(decisions - len(special)):
                u = rnd.randrange(users)
                allowed = rnd.random() > 0.02
                cp.write_row((now - dt.timedelta(minutes=rnd.randrange(60 * 24 * 29)), f"c{i}", f"user-{u}", "proxy",
                              f"nc-{u % 20}", "default", "GET", f"/orders/{rnd.randrange(5)}", None, "REST", '["read"]',
                              '["read"]', allowed, "allow" if allowed else "deny", "[]", f"{i:064x}", f"{i + 1:064x}"))
            # the log began before the usage window (else the audit judges nobody on unused grants)
            cp.write_row((now - dt.timedelta(days=40), "log-began", None, "proxy", None, None, None, None, None, None, "[]",
                          "[]", False, "deny", "[]", f"{decisions:064x}", f"{decisions + 1:064x}"))
        conn.commit()
        cur.execute("ANALYZE")


def make_files(root: Path, n: int) -> None:
    ns = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
    (root / "permissionsets").mkdir(parents=True)
    for i in range(n):
        perms = "".join(f"<userPermissions><enabled>true</enabled><name>Perm{j}</name></userPermissions>"
                        for j in range(30))
        objs = "".join(f"<objectPermissions><allowRead>true</allowRead><object>Obj{j}__c</object>"
                       f"<viewAllRecords>{'true' if j == 0 else 'false'}</viewAllRecords></objectPermissions>"
                       for j in range(30))
        (root / "permissionsets" / f"PS{i}.permissionset").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<PermissionSet {ns}><label>PS{i}</label>{perms}{objs}'
            f"<userPermissions><enabled>true</enabled><name>ModifyAllData</name></userPermissions></PermissionSet>")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--pollers", type=int, default=20, help="users polling one GET every minute for a day")
    ap.add_argument("--bursts", type=int, default=20, help="users making 300 single-record writes in 5 minutes")
    args = ap.parse_args()
    url, drop_database = create_private_database(BASE)
    try:
        engine = make_engine(url)
        upgrade(engine)
        now = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        seed(url, args.users, args.decisions, now, args.pollers, args.bursts)
        print(f"seeded users={args.users} decisions={args.decisions} in {time.perf_counter() - t0:.1f}s", flush=True)
        sessions = make_session_factory(engine)
        tracemalloc.start()
        t0 = time.perf_counter()
        with sessions() as s:
            model = load_model(s, now)
        findings = run_rules(model)
        recs = recommendations(model)
        audit_s = time.perf_counter() - t0
        audit_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        denied = sum(r.proof.get("would_deny", 0) for r in recs)
        polls = sum(1 for f in findings if f.rule_id == "GOV-BEHAV-002")
        bursts = sum(1 for f in findings if f.rule_id == "GOV-BEHAV-003")
        print(f"findings={len(findings)} polling={polls} synchronous_bulk={bursts} recommendations={len(recs)} "
              f"replay_would_deny={denied} "
              f"maxrss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
        engine.dispose()
        with tempfile.TemporaryDirectory() as tmp:
            make_files(Path(tmp), args.files)
            t0 = time.perf_counter()
            result = import_directory(tmp)
            run_rules(result.model)
            import_s = time.perf_counter() - t0
            print(f"imported={result.imported} errors={result.errors}")
    finally:
        drop_database()
    print(f"audit_s={audit_s:.2f} audit_mb={audit_mb:.0f} import_s={import_s:.2f}")


if __name__ == "__main__":
    main()
