"""Issue #17: a newcomer reaches govern's main job from the README alone.

The committed HEAD is exported into a temporary folder (`git archive HEAD`, what a fresh clone holds).
README command 1 runs there in the background through bash, as printed except for its first two steps:
`python3 -m venv .venv && .venv/bin/pip install -e '.[test]'` would take minutes, so `.venv` is a symlink to
the virtualenv running this test and PYTHONPATH=<the export> makes its `govern` the exported one. Then the
"Try it" block is taken from README.md and run as printed with bash in the same folder. It must end with a
proxied answer from the sandbox and show the decisions in `govern log`. Ctrl-C (SIGINT to the process group)
stops govern and the sandbox.

It uses the README's fixed ports, 8000 and 8900; the test fails at once, saying so, when either is taken.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
PORTS = (8000, 8900)


def _bash_block_after(readme: str, heading: str) -> str:
    section = readme.split(f"\n{heading}\n", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no ```bash block under {heading!r} in README.md"
    return match.group(1)


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _export_head(target: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def _wait_until_up(proc: subprocess.Popen, log: Path, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"command 1 exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if (requests.get("http://127.0.0.1:8000/healthz", timeout=2).ok
                    and requests.get("http://127.0.0.1:8900/", timeout=2).ok):
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)  # polling interval, with a deadline
    pytest.fail(f"govern and the sandbox did not answer within {deadline_s:g} s:\n{log.read_text()}")


def test_readme_command_1_then_try_it_reaches_a_proxied_answer(tmp_path):
    for port in PORTS:
        if _port_taken(port):
            pytest.fail(f"port {port} is taken (another govern or sandbox?); the README's commands need it free")
    clone = tmp_path / "govern"
    clone.mkdir()
    _export_head(clone)
    (clone / ".venv").symlink_to(Path(sys.prefix))
    readme = (clone / "README.md").read_text()
    command_1 = _bash_block_after(readme, "## Set up (fresh machine)").strip()
    assert command_1.startswith(INSTALL), command_1
    command_1 = command_1[len(INSTALL):]
    try_it = _bash_block_after(readme, "## Try it")

    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    env["PYTHONPATH"] = str(clone)
    log = tmp_path / "command-1.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", command_1], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(proc, log)
        result = subprocess.run(["bash", "-c", try_it], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=180)
        out = result.stdout
        detail = f"stdout:\n{out}\nstderr:\n{result.stderr}\ngovern:\n{log.read_text()}"
        assert result.returncode == 0, detail
        assert "integration_user/sandbox-app/client_secret: set on" in out, detail
        # the upstream token, from the sandbox's client-credentials grant
        assert re.search(r'"access_token": "sbx_at_[^"]+", "token_type": "Bearer"', out), detail
        # the proxied answer: the sandbox saw the API key govern injected
        assert '"authenticated_by":"api_key"' in out and '"id":"ITEM-1"' in out, detail
        # the decisions, in `govern log show`, and the chain intact
        assert re.search(r"allow token +sandbox-app sandbox-orders - upstream=200 permit:sandbox-reader", out), detail
        assert re.search(r"allow proxy +sandbox-app sandbox-items GET /api/items upstream=200 permit:sandbox-reader",
                         out), detail
        assert re.search(r"chain intact: \d+ records", out), detail
        assert "Traceback" not in result.stderr, detail
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("Ctrl-C did not stop govern serve --with-sandbox within 60 s")
    served = log.read_text()
    # the sandbox logged what it received, and no secret it generated ever reached the output
    assert "sandbox: GET /api/items api_key=valid -> 200" in served, served
    assert "sandbox: POST /oauth/token grant_type=client_credentials client_id=govern-sandbox -> 200" in served, served
    for prefix in ("sbx_cs_", "sbx_rt_", "sbx_key_", "sbx_at_"):
        assert prefix not in served, prefix
    assert not any(_port_taken(port) for port in PORTS)
