"""What a WSGI server under govern must keep (issue #20, `bench/server_checks.py`): the raw request path and a
graceful stop, checked on a real process.

    python bench/server_checks.py [--server gunicorn|granian|waitress] [--server-arg=...]

Starts, on free ports, and stops at the end: the fake OAuth server and a resource server (tests/fakes), in
threads of this process; govern under the server (bench/_common.py `start_server`: gunicorn with production's
settings, 2 workers) on a private PostgreSQL database, Redis and the local secret store; one OAuth
client-credentials named credential `sc-api` whose base URL is the resource server's `/api`.

(a) The raw path: every crafted path of the SSRF battery (tests/proxy/test_ssrf.py `CRAFTED`, sent as is over
    a socket) must be refused with 400 `path_not_allowed` before any upstream call, and paths with legitimate
    percent-encoding must reach the upstream exactly as sent. This needs the request target before
    percent-decoding (gunicorn's RAW_URI, REQUEST_URI elsewhere): PATH_INFO alone cannot tell `a%2Fb` from `a/b`.
(c) A graceful stop: 6 proxied calls are in flight (the upstream answers after 2 s) when the server's process
    group gets SIGTERM. Each must still be answered 200 and have its decision record committed (looked up by
    its X-Correlation-ID), and the server must exit by itself.
(b), slow upstreams not blocking other requests, is bench/bulkhead.py (`--server` too).
Last line: `server=... raw_path_ok=N/M crafted_refused=N/M sigterm_answered=N/6 sigterm_recorded=N/6 exited=yes|no`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._soakkit import USER_SECRET, Instance, progress  # noqa: E402

# Percent-encoded paths a client may legitimately send: they must reach the upstream byte for byte.
AS_SENT = ["accounts/42", "names/J%C3%BCrgen", "a%20b", "a/b/", "q/%E2%82%AC"]


def get(port: int, path: str, headers: dict[str, str], timeout: float = 30) -> tuple[int, dict]:
    """GET with the request target exactly as given (http.client sends it unchanged)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {"raw": body[:200].decode(errors="replace")}
        return resp.status, parsed
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="gunicorn")
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    import sqlalchemy as sa

    from tests.factories import make_landscape
    from tests.fakes.oauth_server import FakeUpstream
    from tests.fakes.resource_server import ResourceServer
    from tests.proxy.test_ssrf import CRAFTED

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-server-checks-"))
    oauth = FakeUpstream().start()
    rs = ResourceServer().start()
    instance = None
    try:
        instance = Instance(tmp)
        make_landscape(instance.services, system="sc-erp", credential="sc-cc", token_url=oauth.token_url,
                       client_id="sc-client", named_credential="sc-api", url=rs.url + "/api", user="sc-sync",
                       client_secret=USER_SECRET, permission_set="ps-sc", ps_scopes=("orders.read",),
                       max_token_lifetime=3600)
        oauth.register_client("sc-client", secret="sc-upstream-secret", scope="orders.read")
        instance.put_secret("sc-cc", None, "client_secret", "sc-upstream-secret")
        instance.start(workers=2, server=args.server, extra=args.server_arg)
        progress(f"govern up under {args.server} at {instance.base}")
        token, _ = instance.govern_token("sc-sync")
        auth = {"Authorization": f"Bearer {token}"}
        prefix = "/api/v1/named-credentials/sc-api/proxy/"

        # (a) the raw path
        refused, leaks = 0, []
        for raw in CRAFTED:
            before = rs.count
            status, body = get(instance.port, prefix + raw, auth)
            if status == 400 and body.get("code") == "path_not_allowed" and rs.count == before:
                refused += 1
            else:
                seen = rs.last().path if rs.count > before else None
                leaks.append((raw, status, body.get("code"), seen))
        as_sent, changed = 0, []
        for raw in AS_SENT:
            before = rs.count
            status, body = get(instance.port, prefix + raw, auth)
            seen = rs.last().path if rs.count > before else None
            if status == 200 and seen == "/api/" + raw:
                as_sent += 1
            else:
                changed.append((raw, status, body.get("code"), seen))
        print(f"(a) crafted paths refused before any upstream call: {refused}/{len(CRAFTED)}")
        for raw, status, code, seen in leaks:
            print(f"    NOT refused: {raw!r} -> {status} {code}, upstream saw {seen!r}")
        print(f"(a) paths reaching the upstream as sent: {as_sent}/{len(AS_SENT)}")
        for raw, status, code, seen in changed:
            print(f"    changed: {raw!r} -> {status} {code}, upstream saw {seen!r}")

        # (c) SIGTERM with calls in flight
        before = rs.count
        rs.slow_next(6, delay=2.0)
        ids = [f"sc-term-{uuid.uuid4().hex[:12]}" for _ in range(6)]
        answers: dict[str, object] = {}

        def call(cid: str) -> None:
            try:
                answers[cid] = get(instance.port, prefix + "orders/1", {**auth, "X-Correlation-ID": cid})[0]
            except OSError as exc:
                answers[cid] = type(exc).__name__

        threads = [threading.Thread(target=call, args=(cid,)) for cid in ids]
        for t in threads:
            t.start()
        time.sleep(0.8)  # every call has reached the slow upstream
        in_flight = rs.count - before
        os.killpg(instance.gunicorn.pid, signal.SIGTERM)
        sent = time.monotonic()
        for t in threads:
            t.join(30)
        try:
            instance.gunicorn.wait(40)
            exited = f"yes, {time.monotonic() - sent:.1f} s after SIGTERM, code {instance.gunicorn.returncode}"
        except Exception:  # noqa: BLE001 - still running: reported, then killed by Instance.close
            exited = "no"
        with instance.services.engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT count(*) FROM decision WHERE correlation_id IN :ids")
                                    .bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).scalar()
        answered = sum(1 for v in answers.values() if v == 200)
        print(f"(c) SIGTERM with 6 calls in flight (upstream requests seen {in_flight}): answers "
              f"{sorted(map(str, answers.values()))}, decision records {recorded}/6, exited: {exited}")
        print(f"server={args.server} raw_path_ok={as_sent}/{len(AS_SENT)} crafted_refused={refused}/{len(CRAFTED)} "
              f"sigterm_answered={answered}/6 sigterm_recorded={recorded}/6 exited={exited.split(',')[0]}")
    finally:
        rs.release_slow()
        if instance is not None:
            instance.close()
        rs.stop()
        oauth.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
