"""Code that runs in spawned worker processes (multiprocessing 'spawn': importable, no fixtures)."""
from __future__ import annotations

import threading


def build(home: str, database_url: str, redis_url: str | None, redis_prefix: str, store_data: dict):
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from tests.fakes.secret_store import MemorySecretStore

    settings = load_settings({}, home=home, database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix)
    services = build_services(settings)
    store = MemorySecretStore()
    store.data = {path: {int(v): val for v, val in versions.items()} for path, versions in store_data.items()}
    services.secret_store = store
    return services


def many_gets(config: dict, start, results) -> None:
    """`threads` concurrent get_token calls released together by `start` (an Event shared by all processes)."""
    services = build(**config["env"])
    src = services.upstream_tokens
    barrier = threading.Barrier(config["threads"])
    out, errors = [], []

    def call():
        barrier.wait()
        start.wait(60)
        try:
            out.append(src.get_token(config["named_credential"], "default", ("orders.read",)).access_token.reveal())
        except Exception as exc:  # noqa: BLE001
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=call) for _ in range(config["threads"])]
    [t.start() for t in threads]
    [t.join() for t in threads]
    results.put({"tokens": sorted(set(out)), "ok": len(out), "errors": errors})
    services.close()


def one_get(config: dict) -> None:
    """A worker that asks for a token once (the test kills it mid-call)."""
    services = build(**config["env"])
    services.upstream_tokens.get_token(config["named_credential"], "default", ("orders.read",))
