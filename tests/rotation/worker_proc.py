"""One worker process for the multi-worker test: waits for the start signal, then one worker pass.

Usage: python -m tests.rotation.worker_proc DATABASE_URL GO_FILE OUT_FILE
The secret store is the product's LocalSecretStore on that database (its key file in the OUT_FILE's folder,
GOVERN_HOME), so all worker processes share one real store.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    db_url, go_file, out_file = sys.argv[1:4]
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from govern.rotation.wiring import rotation_service

    settings = load_settings({}, home=os.path.dirname(out_file), database_url=db_url, log_level="WARNING")
    services = build_services(settings)
    assert services.secret_store.kind == "local"
    svc = rotation_service(services, worker_id=f"proc-{os.getpid()}")
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file):  # all four start together
        if time.monotonic() > deadline:
            raise SystemExit("no start signal")
        time.sleep(0.01)
    outcomes = svc.tick()
    with open(out_file, "w") as fh:
        json.dump([o.as_dict() for o in outcomes], fh)
    services.close()


if __name__ == "__main__":
    main()
