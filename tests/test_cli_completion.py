"""Issue #17: shell completion of entity ids, through click's own machinery in a real `govern` process
(`_GOVERN_COMPLETE=bash_complete` with COMP_WORDS / COMP_CWORD, as the script from `bash_source` calls it)."""
from __future__ import annotations

import pytest

from tests.cli_instance import copy_instance, govern


@pytest.fixture(scope="module")
def instance(tmp_path_factory, cli_instance_template):
    folder = copy_instance(cli_instance_template, tmp_path_factory.mktemp("completion"))
    put = govern(["secrets", "put", "sandbox-client-credentials", "--field", "client_secret"], folder,
                 input="a-sandbox-client-secret")
    assert put.returncode == 0, put.stderr
    return folder


def _complete(cwd, line: str, dialect: str = "bash", **env) -> tuple[list[str], str]:
    """What Tab offers at the end of `line` (a trailing space starts a new word)."""
    words = line.split(" ")
    # bash and zsh pass the index of the word being completed; fish passes that word itself
    cword = words[-1] if dialect == "fish" else str(len(words) - 1)
    proc = govern([], cwd, _GOVERN_COMPLETE=f"{dialect}_complete", COMP_WORDS=line, COMP_CWORD=cword, **env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rows = [row for row in proc.stdout.splitlines() if row]  # nothing to offer is one empty line
    if dialect == "bash":  # one `type,value` per line
        return [row.split(",", 1)[1] for row in rows], proc.stdout
    return rows, proc.stdout


@pytest.mark.parametrize(("line", "expected"), [
    ("govern contract export ", ["erp-s4", "hubspot", "salesforce-prod", "sandbox", "snowflake", "stripe"]),
    ("govern contract export s", ["salesforce-prod", "sandbox", "snowflake", "stripe"]),
    ("govern secrets put sandbox-", ["sandbox-api-key", "sandbox-client-credentials", "sandbox-refresh-token"]),
    ("govern secrets put --user sa", ["salesforce-invoice-reader", "sandbox-app"]),
    ("govern log show --credential sandbox-", ["sandbox-items", "sandbox-orders", "sandbox-orders-as-user"]),
    ("govern log show --user erp", ["erp-order-sync"]),
    ("govern credentials connect salesforce-per-user ", ["case-escalation", "lead-sync"]),
    ("govern rotate history ", ["credential/sandbox-client-credentials/client_secret"]),
    ("govern rotate ", ["confirm", "history", "retry", "run", "credential/sandbox-client-credentials/client_secret"]),
    ("govern rotate h", ["history"]),
    ("govern secrets delete cred", ["credential/sandbox-client-credentials/client_secret"]),
    ("govern contract export nothing-starts-so", []),
])
def test_tab_offers_the_ids_of_the_instance(instance, line, expected):
    assert _complete(instance, line)[0] == expected


def test_zsh_and_fish_get_the_same_ids(instance):
    _, zsh = _complete(instance, "govern contract export sn", dialect="zsh")
    assert zsh.splitlines() == ["plain", "snowflake", "_"]  # type, value, help ("_": none)
    _, fish = _complete(instance, "govern contract export sn", dialect="fish")
    assert fish.splitlines() == ["plain,snowflake"]


def test_the_like_wildcards_in_what_is_typed_are_literal(instance):
    assert _complete(instance, "govern contract export %")[0] == []
    assert _complete(instance, "govern contract export _")[0] == []


def test_no_instance_offers_nothing_prints_nothing_and_creates_nothing(tmp_path):
    ids, raw = _complete(tmp_path, "govern contract export ")
    assert ids == [] and raw.strip() == ""
    assert not (tmp_path / "instance").exists()


@pytest.mark.parametrize("env", [
    {"GOVERN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},  # nothing listens there
    {"GOVERN_RATELIMIT_TOKEN_REQUESTS_PER_ADDRESS": "not a rate"},  # settings that do not load
])
def test_a_broken_instance_offers_nothing_and_prints_nothing(instance, env):
    ids, raw = _complete(instance, "govern contract export ", **env)
    assert ids == [] and raw.strip() == ""


def test_bash_zsh_and_fish_scripts_are_printed(tmp_path):
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        proc = govern([], tmp_path, _GOVERN_COMPLETE=f"{shell}_source")
        assert proc.returncode == 0 and marker in proc.stdout and "_GOVERN_COMPLETE" in proc.stdout, shell
