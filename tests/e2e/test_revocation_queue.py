"""The upstream revocation queue end to end (issue #21, docs/offboarding.md): the landscape from `govern apply`, a
per-user principal connected through the real connect flow, then an event that calls for revocation (an apply that
retires or removes the user, a disconnect over the CLI or HTTP, a new connect replacing the refresh token). The
event only queues (the provider is not called); `govern worker` revokes at the authlib fake's RFC 7009 endpoint, so
the provider refuses the tokens afterwards. A provider that keeps failing is retried on later passes, then alerted
and shown as failed. The queue is in the database: services built afresh (another process) carry it out."""
from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import requests
import sqlalchemy as sa

from tests.e2e.test_offboard_cli import (LANDSCAPE, USER_SECRET, _connect, _refresh_at_provider,  # noqa: F401
                                         _stored_refresh_token, offboard_live)

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.slow]


def _apply(live, tmp_path, *changes, prune: bool = False):
    text = LANDSCAPE
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    if prune:  # the user goes: its block, and its principal
        start, end = text.index("integration_users:\n"), text.index("permission_sets:\n")
        text = text[:start] + text[end:]
    path = tmp_path / "governance.yaml"
    path.write_text(text.format(token_url=live.upstream.token_url, authorize_url=live.upstream.authorize_url,
                                revocation_url=live.upstream.revocation_url, upstream_url=live.upstream.url))
    return live.runner.invoke(["apply", "-f", str(path), *(["--prune"] if prune else [])])


RETIRE = ("    justification: Reads orders as its own shop user.\n",
          "    justification: Reads orders as its own shop user.\n    status: retired\n")


def _revocation_job(services):
    from govern.worker import jobs

    [job] = [j for j in jobs(services, None) if j.name == "revocations"]
    return job


def _queue_rows(services) -> list[dict]:
    with services.sessions() as s:
        return [dict(r) for r in s.execute(sa.text("SELECT * FROM upstream_revocation ORDER BY id")).mappings()]


def _principal(services) -> dict:
    with services.sessions() as s:
        return dict(s.execute(sa.text("SELECT connected_at, needs_reconnect_at FROM principal WHERE name = 'dana'"))
                    .mappings().one())


def _revocations(live) -> dict:
    result = live.runner.invoke(["revocations", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _used(live) -> tuple[str, list[str]]:
    """Connect dana and make one proxied call, so govern holds a refresh token and a cached access token."""
    _connect(live)
    orders = live.proxy(live.govern_token(secret=USER_SECRET), "shop-user-orders", "api/orders")
    assert orders.status_code == 200, orders.text
    refresh_token = _stored_refresh_token(live)
    access = [v for v, t in live.upstream.access_tokens.items() if t.user == "dana"]
    assert refresh_token and live.upstream.refresh_token_valid(refresh_token)
    return refresh_token, access


def _no_token_anywhere(live, secrets: list[str], *texts: str) -> None:
    rows = json.dumps(_queue_rows(live.services), default=str)
    records = json.dumps([d.model_dump(mode="json") for d in live.decisions()])
    for secret in secrets:
        assert secret not in rows and secret not in records
        for text in texts:
            assert secret not in text


def test_retiring_a_user_by_apply_queues_and_the_worker_revokes_at_the_provider(offboard_live, tmp_path, caplog):
    live = offboard_live
    refresh_token, access = _used(live)

    plan = _apply_dry(live, tmp_path)
    assert "would queue: revoke refresh_token (credential shop-users principal dana): user_retired" in plan.output
    assert _queue_rows(live.services) == []

    with caplog.at_level(logging.INFO):
        applied = _apply(live, tmp_path, RETIRE)
        assert applied.exit_code == 0, applied.output
        assert "queued: revoke access_token (credential shop-users principal dana): user_retired" in applied.output
        assert "queued: revoke refresh_token (credential shop-users principal dana): user_retired" in applied.output
        # apply did not call the provider; the principal is disconnected at once (no upstream call until reconnected)
        assert live.upstream.count("revoke") == 0 and live.upstream.refresh_token_valid(refresh_token)
        state = _principal(live.services)
        assert state["connected_at"] is None and state["needs_reconnect_at"] is not None
        queued = _revocations(live)
        assert queued["counts"]["pending"] == 2
        assert {(i["token_type"], i["status"], i["reason"], i["integration_user"]) for i in queued["items"]} == {
            ("access_token", "pending", "user_retired", "order-sync"),
            ("refresh_token", "pending", "user_retired", "order-sync")}

        worked = live.runner.invoke(["worker", "--once"])
        assert worked.exit_code == 0, worked.output + worked.stderr

    # The provider refuses both tokens now, and govern forgot them.
    refused = _refresh_at_provider(live, refresh_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert not any(live.upstream.access_token_valid(t) for t in access)
    assert [(r["kind"], r["hint"]) for r in live.upstream.revocations] == [
        ("access_token", "access_token"), ("refresh_token", "refresh_token")]
    assert _stored_refresh_token(live) is None
    done = _revocations(live)
    assert done["counts"]["pending"] == 0 and done["counts"]["done"] == 2
    records = [d for d in live.decisions() if d.action == "offboard"]
    assert [(d.rules, d.outcome, d.integration_user, d.resource_object) for d in records] == [
        (["permit:revoke_access_token"], "allow", "order-sync", "shop-users"),
        (["permit:revoke_refresh_token"], "allow", "order-sync", "shop-users")]
    _no_token_anywhere(live, [refresh_token, *access], applied.output, worked.output, caplog.text, json.dumps(done))

    # Nothing is due any more: a second pass calls no provider.
    again = live.runner.invoke(["worker", "--once"])
    assert again.exit_code == 0 and live.upstream.count("revoke") == 2


def _apply_dry(live, tmp_path):
    text = LANDSCAPE
    text = text.replace(*RETIRE)
    path = tmp_path / "dry.yaml"
    path.write_text(text.format(token_url=live.upstream.token_url, authorize_url=live.upstream.authorize_url,
                                revocation_url=live.upstream.revocation_url, upstream_url=live.upstream.url))
    result = live.runner.invoke(["apply", "--dry-run", "-f", str(path)])
    assert result.exit_code == 0, result.output
    return result


def test_a_failing_revocation_endpoint_is_retried_on_later_passes_then_alerted_and_shown_failed(
        offboard_live, tmp_path, caplog):
    live = offboard_live
    refresh_token, _ = _used(live)
    live.upstream.inject("5xx", grant="revoke", times=None, status=503)
    assert _apply(live, tmp_path, RETIRE).exit_code == 0
    job = _revocation_job(live.services)
    now = live.services.clock.now()

    with caplog.at_level(logging.INFO):
        first = job.run(now)
        assert {o.status for o in first} == {"retrying"}
        calls = live.upstream.count("revoke")
        assert calls == 2  # one attempt per item per pass: the cached access token, the refresh token
        # Not due again at once: the backoff is between passes.
        assert job.run(now) == [] and live.upstream.count("revoke") == calls
        passes = 1
        while True:
            now += dt.timedelta(hours=2)
            outcomes = job.run(now)
            passes += 1
            if all(o.status == "failed" for o in outcomes):
                break
            assert {o.status for o in outcomes} == {"retrying"} and passes < 10
    assert passes == 6  # QUEUE_ATTEMPTS
    assert job.run(now + dt.timedelta(days=1)) == []  # failed items are not retried on their own
    alerts = [r for r in caplog.records if r.name == "govern.notify"
              and getattr(r, "event", None) == "alert.upstream_revocation_failed"]
    assert {a.payload["token_type"] for a in alerts} == {"access_token", "refresh_token"}
    assert all(a.payload["attempts"] == 6 and "HTTP 503" in a.payload["detail"] for a in alerts)
    # The token is still valid at the provider, so govern keeps it; the item is shown failed.
    assert live.upstream.refresh_token_valid(refresh_token) and _stored_refresh_token(live) == refresh_token
    listed = live.runner.invoke(["revocations"])
    assert listed.exit_code == 0 and "0 pending, 2 failed" in listed.output
    assert "failed   revoke refresh_token (credential shop-users principal dana) user order-sync" in listed.output
    metrics = requests.get(live.base + "/metrics", timeout=30).text
    assert 'govern_upstream_revocations{state="failed"} 2.0' in metrics
    assert 'govern_upstream_revocation_failures_total{credential="shop-users"} 2.0' in metrics
    failed = [d for d in live.decisions() if d.action == "offboard"]
    assert {(d.outcome, d.error_code, d.upstream_status) for d in failed} == {
        ("error", "upstream_revocation_failed", 503)}
    assert refresh_token not in caplog.text + listed.output

    # The provider is back: `--retry-failed` makes them due, the next pass revokes.
    live.upstream.clear_faults()
    retried = live.runner.invoke(["revocations", "--retry-failed"])
    assert retried.exit_code == 0 and "2 failed item(s) due again" in retried.output
    assert {o.status for o in job.run(live.services.clock.now())} == {"done"}
    assert not live.upstream.refresh_token_valid(refresh_token) and _stored_refresh_token(live) is None
    assert 'govern_upstream_revocations{state="failed"} 0.0' in requests.get(live.base + "/metrics", timeout=30).text


def test_disconnect_on_the_command_line_dry_run_changes_nothing_then_commit(offboard_live):
    live = offboard_live
    refresh_token, access = _used(live)

    dry = live.runner.invoke(["credentials", "disconnect", "shop-users", "dana"])
    assert dry.exit_code == 0, dry.output
    assert "Dry run, nothing changed" in dry.output
    assert "planned  revoke refresh_token (credential shop-users principal dana): queue for the worker" in dry.output
    assert "planned  disable principal (credential shop-users principal dana): disconnect" in dry.output
    assert _queue_rows(live.services) == [] and _principal(live.services)["connected_at"] is not None
    token = live.govern_token(secret=USER_SECRET)
    assert live.proxy(token, "shop-user-orders", "api/orders").status_code == 200

    done = live.runner.invoke(["credentials", "disconnect", "shop-users", "dana", "--commit", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert [(i["action"], i["what"], i["outcome"]) for i in report["items"]] == [
        ("revoke", "access_token", "done"), ("revoke", "refresh_token", "done"), ("disable", "principal", "done")]
    assert _principal(live.services)["connected_at"] is None and live.upstream.count("revoke") == 0

    worked = live.runner.invoke(["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    assert not live.upstream.refresh_token_valid(refresh_token)
    assert not any(live.upstream.access_token_valid(t) for t in access)
    assert _stored_refresh_token(live) is None
    # Disconnected: the proxy makes no upstream call for dana until she connects again.
    assert live.proxy(token, "shop-user-orders", "api/orders").status_code != 200
    _no_token_anywhere(live, [refresh_token, *access], dry.output, done.output, worked.output)

    unknown = live.runner.invoke(["credentials", "disconnect", "shop-users", "nobody", "--commit"])
    assert unknown.exit_code == 2
    assert unknown.output.strip() == "error: credential 'shop-users' has no principal 'nobody'"


def test_disconnect_over_http(offboard_live, admin_token):
    live = offboard_live
    refresh_token, _ = _used(live)
    url = live.base + "/api/v1/credentials/shop-users/principals/dana/connection"
    admin = {"Authorization": f"Bearer {admin_token}"}

    assert requests.delete(url, timeout=30).status_code == 401
    missing = requests.delete(live.base + "/api/v1/credentials/shop-users/principals/nobody/connection",
                              headers=admin, timeout=30)
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    dry = requests.delete(url + "?dry_run=true", headers=admin, timeout=30)
    assert dry.status_code == 200 and dry.json()["committed"] is False
    assert _queue_rows(live.services) == []

    done = requests.delete(url, headers=admin, timeout=30)
    assert done.status_code == 200, done.text
    assert {(i["what"], i["outcome"]) for i in done.json()["items"]} == {
        ("access_token", "done"), ("refresh_token", "done"), ("principal", "done")}
    assert refresh_token not in done.text
    assert _revocations(live)["counts"]["pending"] == 2
    with live.services.sessions() as s:  # who disconnected, on the admin action log
        [(actor, subject)] = s.execute(sa.text(
            "SELECT actor, subject FROM admin_action WHERE action = 'disconnect'")).tuples().all()
    assert (actor, subject) == ("root-admin", "shop-users/dana")
    assert live.runner.invoke(["worker", "--once"]).exit_code == 0
    assert not live.upstream.refresh_token_valid(refresh_token)


def test_a_disconnected_principal_gets_no_token_not_even_a_cached_one(offboard_live, admin_token):
    """Disconnect stops use at once, before the worker has revoked anything: govern still holds a cached access
    token that the provider would accept, and hands it to no one, on the proxy or the token endpoint; a reconnect
    lifts the block."""
    live = offboard_live
    refresh_token, access = _used(live)
    govern_token = live.govern_token(secret=USER_SECRET)
    assert live.proxy(govern_token, "shop-user-orders", "api/orders").status_code == 200  # served from the cache
    done = requests.delete(live.base + "/api/v1/credentials/shop-users/principals/dana/connection",
                           headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    assert done.status_code == 200, done.text
    assert all(live.upstream.access_tokens[a].user == "dana" for a in access)  # still valid at the provider
    refreshes = live.upstream.count("refresh_token")
    for answer in (live.proxy(govern_token, "shop-user-orders", "api/orders"),
                   live.upstream_token(govern_token, "shop-user-orders")):
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "principal_needs_reconnect"
        assert not any(a in answer.text for a in access) and refresh_token not in answer.text
    assert live.upstream.count("refresh_token") == refreshes

    _connect(live)
    assert live.proxy(govern_token, "shop-user-orders", "api/orders").status_code == 200


def test_a_new_connect_revokes_the_refresh_token_it_replaced(offboard_live):
    live = offboard_live
    _connect(live)
    old = _stored_refresh_token(live)
    _connect(live)
    new = _stored_refresh_token(live)
    assert old and new and old != new
    [item] = _revocations(live)["items"]
    assert (item["token_type"], item["reason"], item["status"]) == ("refresh_token", "replaced", "pending")
    assert live.upstream.refresh_token_valid(old)

    assert live.runner.invoke(["worker", "--once"]).exit_code == 0
    assert not live.upstream.refresh_token_valid(old)
    # The new token is kept and works.
    assert live.upstream.refresh_token_valid(new) and _stored_refresh_token(live) == new
    orders = live.proxy(live.govern_token(secret=USER_SECRET), "shop-user-orders", "api/orders")
    assert orders.status_code == 200, orders.text


def test_a_process_that_dies_after_queueing_loses_nothing(offboard_live, tmp_path, settings):
    """The apply runs in one process and nothing revokes; services built afresh (another process) work the queue."""
    from govern.bootstrap import build_services

    live = offboard_live
    refresh_token, _ = _used(live)
    assert _apply(live, tmp_path, RETIRE).exit_code == 0
    assert live.upstream.count("revoke") == 0
    fresh = build_services(settings.with_overrides(public_url=live.base, redis_url=live.services.settings.redis_url,
                                                   redis_prefix=live.services.settings.redis_prefix))
    try:
        outcomes = _revocation_job(fresh).run(fresh.clock.now())
    finally:
        fresh.close()
    assert sorted(o.status for o in outcomes) == ["done", "done"]
    assert not live.upstream.refresh_token_valid(refresh_token)


def test_removing_the_user_with_prune_revokes_its_principal(offboard_live, tmp_path):
    live = offboard_live
    refresh_token, _ = _used(live)
    # The user's own govern client secret is deleted first, as apply asks; the refresh token is the queue's job.
    assert live.runner.invoke(["secrets", "delete", "--yes", "integration_user/order-sync/client_secret"]).exit_code == 0
    removed = _apply(live, tmp_path,
                     ("    principals: [{{name: dana, user: order-sync}}]\n", "    principals: []\n"), prune=True)
    assert removed.exit_code == 0, removed.output
    assert "queued: revoke refresh_token (credential shop-users principal dana): user_removed" in removed.output
    assert live.runner.invoke(["worker", "--once"]).exit_code == 0
    assert not live.upstream.refresh_token_valid(refresh_token)
    assert _stored_refresh_token(live) is None


def test_pruning_the_credential_revokes_its_principals_then_deletes_its_secrets(offboard_live, tmp_path):
    live = offboard_live
    refresh_token, access = _used(live)
    text = LANDSCAPE
    start, end = text.index("credentials:\n"), text.index("integration_users:\n")
    text = (text[:start] + text[end:]).replace(
        '      - {{named_credential: shop-user-orders, methods: [GET], paths: ["/api/orders"]}}\n', "").replace(
        "    grants:\n", "    grants: []\n")
    path = tmp_path / "governance.yaml"
    path.write_text(text.format())
    removed = live.runner.invoke(["apply", "-f", str(path), "--prune"])
    assert removed.exit_code == 0, removed.output
    assert "queued: revoke refresh_token (credential shop-users principal dana): credential_removed" in removed.output
    assert live.upstream.count("revoke") == 0

    worked = live.runner.invoke(["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    # Revoked with the removed credential's own client authentication, then its secrets are gone too.
    assert not live.upstream.refresh_token_valid(refresh_token)
    assert not any(live.upstream.access_token_valid(t) for t in access)
    status = live.runner.invoke(["secrets", "status", "--json"])
    assert status.exit_code == 0, status.output
    assert [s["ref"] for s in json.loads(status.stdout) if s["owner"] == "shop-users"] == []
    _no_token_anywhere(live, [refresh_token, *access], removed.output, worked.output)
