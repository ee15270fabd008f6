"""A govern instance made the way a user makes one: `govern init`, then `govern apply` of a landscape, each a
real `govern` subprocess with only the GOVERN_* variables a user sets (GOVERN_HOME defaults to ./instance).

The two processes cost seconds, so tests that only need such an instance to start from take a copy of one made
once per session (the `cli_instance_template` fixture in tests/conftest.py, `copy_instance` here): the folder
is the whole instance (its SQLite database, keys and secret key), and nothing in it names the folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "governance.yaml"


def govern(args: list[str], cwd: Path, input: str | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERN_", "_GOVERN_", "COMP_"))}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "govern", *args], cwd=cwd, env=base, capture_output=True, text=True,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL, timeout=120)


def make_instance(folder: Path, landscape: Path = EXAMPLE) -> Path:
    """`govern init` and `govern apply -f landscape` in `folder`; returns the folder to run commands in."""
    for args in (["init"], ["apply", "-f", str(landscape)]):
        proc = govern(args, folder, GOVERN_ADMIN_PASSWORD="a-long-enough-password")
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return folder


def copy_instance(template: Path, folder: Path) -> Path:
    """A copy of the instance `make_instance(template)` made, in `folder`; returns `folder` to run commands in."""
    shutil.copytree(template / "instance", folder / "instance")
    return folder
