from __future__ import annotations


def test_init_creates_first_admin_once(runner, monkeypatch):
    monkeypatch.setenv("GOVERN_ADMIN_PASSWORD", "a-long-enough-password")
    first = runner.invoke(["init"])
    assert first.exit_code == 0, first.output
    assert "created 'admin'" in first.output
    assert "a-long-enough-password" not in first.output
    second = runner.invoke(["init"])
    assert "none created" in second.output


def test_init_prints_one_time_password_when_none_given(runner, monkeypatch):
    monkeypatch.delenv("GOVERN_ADMIN_PASSWORD", raising=False)
    out = runner.invoke(["init"]).output
    assert "one-time password" in out


def test_short_admin_password_is_refused(runner):
    r = runner.invoke(["admin", "create-user", "eve", "--role", "auditor"], input="short\n")
    assert r.exit_code == 2
    assert r.output.strip() == "error: the password must have at least 12 characters"
