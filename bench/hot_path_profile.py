"""govern's own CPU on the cache-hit token path, one request at a time, with a cProfile breakdown
(`python bench/hot_path_profile.py [--requests 3000] [--top 30]`).

Under gunicorn with 64 threads per worker a sampling profiler sees mostly threads waiting (for the GIL, the
decision log's commit, the log handler's lock); this calls the WSGI app itself, in this process, on one
thread, so each sample is CPU. The app is the real one (`create_app()` on a prepared SQLite instance, the
fake authlib upstream), requests are the bench's: `POST /api/v1/named-credentials/erp-hit/token` with a
govern bearer token, served from the cache. Prints CPU per request (process_time) and the functions by
cumulative time. `--path proxy`: a proxied GET instead, to nginx (bench/proxy.py's upstream, checking the
injected key). The CPU is also split by thread (each thread's own CPU clock): the request thread, the decision
log's writer thread if there is one (trees before the leader/follower group commit of #20; since then the
commits run in the request threads), and the rest (the fake upstream, the snapshot's rebuild); with a writer
thread, `--writer-profile` adds a cProfile of its commits (it wraps the log's `_commit` for the profiled run). `--repeat N` measures N times
and prints the median. Last line: `cpu_ms_per_token=...` (or `cpu_ms_per_proxy=...`) and the split.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import USER_SECRET, free_port, start_nginx, stop, wait_http


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", choices=("cumulative", "tottime"), default="cumulative", help="the profile's order")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--repeat", type=int, default=1, help="measure this many times; the figures are medians")
    ap.add_argument("--writer-profile", action="store_true", help="also profile the decision log writer's commits")
    ap.add_argument("--no-profile", action="store_true", help="measure only (no cProfile run)")
    ap.add_argument("--path", choices=("token", "proxy"), default="token",
                    help="the cache-hit token request, or a proxied GET (api_key_header) to nginx")
    args = ap.parse_args()
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.store.credential_secret_refs import CredentialSecretRefRepo
    from govern.config import load_settings
    from govern.domain.secret import Secret
    from govern.store.db import make_engine, upgrade
    from tests.factories import make_landscape
    from tests.fakes.oauth_server import FakeUpstream

    tmp = Path(tempfile.mkdtemp(prefix="govern-hot-path-"))
    upstream = FakeUpstream().start()
    services = None
    devnull = open(os.devnull, "w")
    nginx = None
    try:
        home = tmp / "instance"
        home.mkdir()
        database_url = f"sqlite:///{tmp / 'govern.db'}"
        engine = make_engine(database_url)
        upgrade(engine)
        engine.dispose()
        settings = load_settings({"GOVERN_LOG_LEVEL": args.log_level}, home=home, database_url=database_url)
        services = build_services(settings)
        for step in services.init_steps:
            step(services)
        make_landscape(services, system="erp-hit", credential="erp-hit-cc", token_url=upstream.token_url,
                       client_id="hit-client", named_credential="erp-hit", url=upstream.url + "/api", user="sync-hit",
                       client_secret=USER_SECRET, permission_set="ps-hit", ps_scopes=("orders.read",))
        upstream.register_client("hit-client", secret="hit-upstream-secret", scope="orders.read")
        CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock).replace(
            "erp-hit-cc", None, "client_secret", Secret("hit-upstream-secret"), expected_version=None)
        if args.path == "proxy":
            import sqlalchemy as sa

            from govern.store.db import session_scope
            from govern.store.tables import ExternalCredential
            from proxy import API_KEY, BODY, NGINX_SERVERS

            up_port = free_port()
            nginx = start_nginx(tmp / "nginx", NGINX_SERVERS.format(up_port=up_port, anchor_port=free_port(), key=API_KEY,
                                                              body=BODY))
            wait_http(f"http://127.0.0.1:{up_port}/api/x", what="nginx", proc=nginx)
            make_landscape(services, system="bench-erp", credential="bench-key", protocol="api_key_header",
                           named_credential="bench-api", url=f"http://127.0.0.1:{up_port}/api", user="bench-sync",
                           client_secret=USER_SECRET, methods=("GET",), paths=("/accounts/**",))
            with session_scope(services.sessions) as db:
                db.execute(sa.update(ExternalCredential).where(ExternalCredential.external_id == "bench-key")
                           .values(header_name="X-Api-Key"))
            CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock).replace(
                "bench-key", None, "api_key", Secret(API_KEY), expected_version=None)
        app = create_app(services=services)
        client = app.test_client()
        resp = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                           auth=("sync-hit" if args.path == "token" else "bench-sync", USER_SECRET))
        token = resp.get_json()["access_token"]
        body = json.dumps({"scope": "orders.read"}).encode()
        wsgi = app.wsgi_app

        def environ():
            if args.path == "proxy":
                path = "/api/v1/named-credentials/bench-api/proxy/accounts/001"
                return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "RAW_URI": path, "QUERY_STRING": "",
                        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "REMOTE_ADDR": "127.0.0.1",
                        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
                        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
                        "wsgi.run_once": False, "HTTP_AUTHORIZATION": f"Bearer {token}",
                        "HTTP_HOST": "127.0.0.1:8000"}
            return {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/named-credentials/erp-hit/token",
                    "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "REMOTE_ADDR": "127.0.0.1",
                    "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
                    "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
                    "wsgi.run_once": False, "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                    "HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_HOST": "127.0.0.1:8000"}

        statuses: list[str] = []

        def start_response(status, headers, exc_info=None):
            statuses.append(status)

        def call():
            for chunk in wsgi(environ(), start_response):
                pass

        # The request log lines (INFO) cost what they cost, but go to /dev/null, not the terminal (fd 2 itself:
        # the log handler holds the stream it was configured with).
        saved_fd = os.dup(2)
        os.dup2(devnull.fileno(), 2)
        for _ in range(200):
            call()
        statuses.clear()
        # The decision log's writer thread (before #20's leader/follower group commit); without one the request
        # thread writes its own batches and writer_ms is 0.
        writer = next((t for t in threading.enumerate() if t.name == "govern-decision-log"), None)
        writer_clock = time.pthread_getcpuclockid(writer.ident) if writer is not None and writer.ident else None

        def writer_time() -> float:
            return time.clock_gettime(writer_clock) if writer_clock is not None else 0.0
        runs: list[tuple[float, float, float]] = []
        for _ in range(args.repeat):
            started, main0, writer0 = time.process_time(), time.thread_time(), writer_time()
            for _ in range(args.requests):
                call()
            total = (time.process_time() - started) * 1000 / args.requests
            runs.append((total, (time.thread_time() - main0) * 1000 / args.requests,
                         (writer_time() - writer0) * 1000 / args.requests))
        cpu_ms, main_ms, writer_ms = (statistics.median(r[i] for r in runs) for i in range(3))
        out = io.StringIO()
        if not args.no_profile:
            profiler, writer_profiler = cProfile.Profile(), cProfile.Profile()
            log_ = services.decision_log
            # Without a writer thread the commits run in the request thread: they are in its profile, and a
            # second profiler there would switch the first off.
            writer_profile = args.writer_profile and writer is not None
            if writer_profile:
                commit = log_._commit

                def profiled_commit(batch):
                    writer_profiler.enable()
                    try:
                        commit(batch)
                    finally:
                        writer_profiler.disable()
                log_._commit = profiled_commit
            profiler.enable()
            for _ in range(args.requests):
                call()
            profiler.disable()
            if writer_profile:
                del log_._commit
            pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
            if writer_profile:
                print("--- the decision log writer's commits ---", file=out)
                pstats.Stats(writer_profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        os.dup2(saved_fd, 2)
        if set(statuses) != {"200 OK"}:
            raise SystemExit(f"error: answers {sorted(set(statuses))}")
        print(out.getvalue())
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; log level {args.log_level}; "
              f"{args.requests} requests x {args.repeat}; per run (total/request thread/writer ms): "
              + ", ".join(f"{t:.3f}/{m:.3f}/{w:.3f}" for t, m, w in runs))
        print(f"cpu_ms_per_{args.path}={cpu_ms:.3f} request_thread_ms={main_ms:.3f} writer_ms={writer_ms:.3f} "
              f"other_ms={cpu_ms - main_ms - writer_ms:.3f}")
    finally:
        stop(nginx, group=True)
        upstream.stop()
        if services is not None:
            services.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
