"""A rotation process that SIGKILLs itself at one step boundary, for the crash-and-resume test.

Usage (environment: GOVERN_HOME, GOVERN_DATABASE_URL): python -m tests.rotation.crash_proc NAME POINT STEP
POINT is "before_persist" (the step touched the target and the store, its state is not written yet) or
"after_step" (the state is written). The lease is one second, so that `govern rotate NAME --commit` may
take the run over soon after: the test waits for the lease to run out, never for a fixed time.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys


def main() -> None:
    name, point, step = sys.argv[1:4]
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from govern.rotation.wiring import rotation_service

    services = build_services(load_settings())

    def hook(at, run_id, done):
        if (at, done) == (point, step):
            os.kill(os.getpid(), signal.SIGKILL)

    svc = rotation_service(services, worker_id=f"crash-{os.getpid()}", lease=dt.timedelta(seconds=1), hook=hook)
    svc.rotate(svc.find_ref(name).id, force=True)
    raise SystemExit(f"the process was meant to die at {point} {step}")


if __name__ == "__main__":
    main()
