"""One worker process for the multi-worker test: waits for the start signal, then one worker pass.

Usage: python -m tests.rotation.worker_proc DATABASE_URL STORE_DIR GO_FILE OUT_FILE
"""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    db_url, store_dir, go_file, out_file = sys.argv[1:5]
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from govern.rotation.runner import RotationService
    from tests.rotation.dir_store import DirSecretStore

    settings = load_settings({}, home=os.path.dirname(out_file), database_url=db_url, log_level="WARNING")
    services = build_services(settings)
    services.secret_store = DirSecretStore(store_dir)
    svc = RotationService(services, worker_id=f"proc-{os.getpid()}")
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
