"""Degraded mode and the keyed decision chain. A process that starts while the secret store is down reads the
chain key from its sealed copy in the shared cache (govern.broker.decision_keys). When that copy cannot be had
either (flushed, or its seal cannot be opened), the process still answers and records every decision, unkeyed
(`store-down`); the next signed checkpoint protects them, and `govern log verify` names them."""
from __future__ import annotations

import sqlalchemy as sa

from govern.errors import SecretStoreUnavailable
from govern.store.tables import Decision


class DownStore:
    kind = "vault"

    def get(self, path):
        raise SecretStoreUnavailable("the secret store cannot be reached")

    def __getattr__(self, name):
        def down(*args, **kw):
            raise SecretStoreUnavailable("the secret store cannot be reached")
        return down


def _forget_the_key(services):
    """A process that never read the key, with no sealed copy of it in the shared cache."""
    from govern.broker.decision_keys import CACHE_PREFIX

    keys = services.decision_log.keys
    for kid in list(keys._values):
        services.cache.delete(CACHE_PREFIX + kid)
    keys._values.clear()
    keys._active = None


def _append(services, n, start=0):
    for i in range(n):
        services.decision_log.append(None, None, integration_user=f"u{start + i}", action="token",
                                     named_credential="nc", allowed=True, outcome="allow", rules=["permit:ps"],
                                     source_ip="127.0.0.1", latency_ms=1.0)


def test_records_written_while_the_store_is_down_verify_and_are_named(services, runner):
    _append(services, 3)  # keyed, with the first checkpoint
    assert services.decision_log.flush()
    real = services.secret_store
    _forget_the_key(services)
    services.secret_store = DownStore()
    _append(services, 4, start=3)
    assert services.decision_log.flush()
    with services.sessions() as s:
        kids = [k for (k,) in s.execute(sa.select(Decision.key_id).order_by(Decision.id))]
    assert kids[3:] == ["store-down"] * 4 and all(k and k != "store-down" for k in kids[:3])

    services.secret_store = real
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 0, result.output
    assert "4 record(s) were written while the secret store was down" in result.output
    assert "not yet covered by a signed checkpoint (4..7)" in result.output
    assert "chain intact: 7 records" in result.output

    assert runner.invoke(["log", "checkpoint"]).exit_code == 0
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 0 and "every one is covered by a signed checkpoint" in result.output


def test_an_edited_store_down_record_before_a_checkpoint_is_a_break(services, runner):
    _append(services, 2)
    assert services.decision_log.flush()
    real = services.secret_store
    _forget_the_key(services)
    services.secret_store = DownStore()
    _append(services, 2, start=2)
    assert services.decision_log.flush()
    services.secret_store = real
    assert runner.invoke(["log", "checkpoint"]).exit_code == 0
    from govern.domain.decision_chain import record_digest

    # An attacker who can write the table edits record 3 and recomputes the unkeyed digests after it.
    with services.engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(Decision.__table__).order_by(Decision.id))]
        rows[2]["integration_user"] = "someone-else"
        prev = rows[1]["hash"]
        for row in rows[2:]:
            row["prev_hash"] = prev
            row["hash"] = prev = record_digest(row, prev)
            conn.execute(sa.update(Decision.__table__).where(Decision.id == row["id"]).values(
                integration_user=row["integration_user"], prev_hash=row["prev_hash"], hash=row["hash"]))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1, result.output
    assert "checkpoint" in result.output and "record 4" in result.output
