from __future__ import annotations


def test_init_creates_first_admin_once(runner, monkeypatch):
    monkeypatch.setenv("GOVERN_ADMIN_PASSWORD", "a-long-enough-password")
    first = runner.invoke(["init"])
    assert first.exit_code == 0, first.output
    assert "created 'admin'" in first.output
    assert "a-long-enough-password" not in first.output
    second = runner.invoke(["init"])
    assert "none created" in second.output
    # The decision chain's key is made once, in the secret store, and kept across inits.
    kids = [line.split()[4] for out in (first.output, second.output) for line in out.splitlines()
            if line.startswith("decision log: chain key")]
    assert len(kids) == 2 and kids[0] == kids[1] and kids[0].startswith("dl-")


def test_init_prints_one_time_password_when_none_given(runner, monkeypatch):
    monkeypatch.delenv("GOVERN_ADMIN_PASSWORD", raising=False)
    out = runner.invoke(["init"]).output
    assert "one-time password" in out


def test_short_admin_password_is_refused(runner):
    r = runner.invoke(["admin", "create-user", "eve", "--role", "auditor"], input="short\n")
    assert r.exit_code == 2
    assert r.output.strip() == "error: the password must have at least 12 characters"


def test_usage_and_file_errors_are_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "GOVERN_HOME": str(tmp_path), "GOVERN_ADMIN_PASSWORD": "a-long-enough-password"}
    subprocess.run([sys.executable, "-m", "govern", "init"], env=env, check=True, capture_output=True)
    for args in (["nosuchcmd"], ["audit", "--format", "xml"], ["export", "-o", str(tmp_path / "missing" / "x.yaml")]):
        proc = subprocess.run([sys.executable, "-m", "govern", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_commands_before_init_say_what_to_do(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "GOVERN_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "govern", "export"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: no govern instance in {tmp_path.resolve()}: its database "
                                   f"{tmp_path.resolve()}/govern.db does not exist; run `govern init` to create one "
                                   "there, or run from your instance's folder (or set GOVERN_HOME)")
    assert not (tmp_path / "govern.db").exists()
