"""How long the command line takes to start (issue #17, "fast start").

Makes a temporary instance with `govern init`, then runs whole `govern` processes, one after the other,
several times each: `govern --help`, `govern apply --help` and `govern secrets status` (on that empty
instance). Each figure is the wall-clock time of the whole process (interpreter start, imports, the work,
exit); the user CPU time of the children is printed too, since on a shared machine wall time includes waiting
for a CPU. Prints every run, then the medians, and the load average before and after. The targets of the
issue: --help and COMMAND --help within 0.25 s, a trivial command within 0.6 s.

    python bench/cli.py [--runs 9] [--govern "python -m govern"]

Last line: help_s=... subcommand_help_s=... status_s=...
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = (("help_s", ["--help"]), ("subcommand_help_s", ["apply", "--help"]), ("status_s", ["secrets", "status"]))


def run(govern: list[str], args: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall seconds, user CPU seconds) of one whole `govern ARGS` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    started = time.perf_counter()
    proc = subprocess.run([*govern, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"govern {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (after one warm-up run)")
    parser.add_argument("--govern", default=f"{sys.executable} -m govern",
                        help="the command that starts govern (default: this interpreter, -m govern)")
    opts = parser.parse_args()
    govern = shlex.split(opts.govern)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    env.setdefault("PYTHONPATH", str(ROOT))
    with tempfile.TemporaryDirectory(prefix="govern-cli-bench-") as tmp:
        folder = Path(tmp)
        env.update(GOVERN_HOME=str(folder / "instance"), GOVERN_ADMIN_PASSWORD="bench-password-long-enough")
        run(govern, ["init"], env, folder)
        print(f"instance: {folder / 'instance'} (govern init); load average before: {os.getloadavg()}")
        medians = {}
        for key, args in CASES:
            run(govern, args, env, folder)  # warm-up: byte-code caches, the OS page cache
            walls, users = zip(*(run(govern, args, env, folder) for _ in range(opts.runs)), strict=True)
            medians[key] = statistics.median(walls)
            print(f"govern {' '.join(args):<16} wall s: {' '.join(f'{w:.3f}' for w in walls)}")
            print(f"{'':23} median {medians[key]:.3f} s wall, {statistics.median(users):.3f} s user CPU, "
                  f"min {min(walls):.3f} s")
        print(f"load average after: {os.getloadavg()}")
    print(" ".join(f"{key}={value:.3f}" for key, value in medians.items()))


if __name__ == "__main__":
    main()
