"""Issue #17: one spelling of the output flag, `-o/--output`; the older `--out` still works and is not shown."""
from __future__ import annotations

import json

import pytest

from tests.cli_instance import copy_instance, govern


@pytest.fixture(scope="module")
def instance(tmp_path_factory, cli_instance_template):
    return copy_instance(cli_instance_template, tmp_path_factory.mktemp("output-flag"))


@pytest.mark.parametrize("flag", ["-o", "--output", "--out"])
def test_audit_writes_its_report_with_each_spelling(instance, flag):
    target = instance / f"report{flag.strip('-')}.json"
    proc = govern(["audit", flag, str(target)], instance)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # the report went to the file
    assert json.loads(target.read_text())["summary"]["total"] >= 0


@pytest.mark.parametrize("flag", ["-o", "--output", "--out"])
def test_contract_export_writes_into_the_folder_with_each_spelling(instance, flag):
    folder = instance / f"contracts{flag.strip('-')}"
    proc = govern(["contract", "export", "erp-s4", "--format", "json", flag, str(folder)], instance)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((folder / "erp-s4.json").read_text())["system"]


def test_both_spellings_at_once_must_agree(instance):
    proc = govern(["audit", "-o", str(instance / "a.json"), "--out", str(instance / "b.json")], instance)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: give -o/--output once (--out is its old spelling) (see: govern audit --help)"]


@pytest.mark.parametrize("command", [["audit"], ["contract", "export"], ["export"], ["log", "export"],
                                     ["log", "checkpoint"]])
def test_help_shows_only_o_output(tmp_path, command):
    proc = govern([*command, "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "-o, --output" in proc.stdout
    assert "--out " not in proc.stdout and "--out," not in proc.stdout
