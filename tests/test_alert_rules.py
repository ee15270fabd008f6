"""The shipped alert rules are valid and each one fires on its scenario (promtool test rules)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import need

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def test_promtool_unit_tests_pass():
    promtool = shutil.which("promtool")
    if not promtool:
        need("promtool", "install Debian's prometheus package")
    check = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([promtool, "test", "rules", str(DEPLOY / "alerts_test.yml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_scenario_and_a_runbook():
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    root = DEPLOY.parents[1]
    for rule in rules:
        assert rule["alert"] in tested, f"{rule['alert']} has no firing scenario"
        assert (root / rule["annotations"]["runbook"]).exists()


def test_alert_metrics_exist_in_govern(client):
    """Every metric an alert uses is one govern exports (a typo would make an alert silently never fire)."""
    body = client.get("/metrics").get_data(as_text=True)
    from govern.metrics import Metrics

    exported = set(re.findall(r"^# HELP (\w+)", body, re.M))
    exported |= {m.name + "_total" if m.type == "counter" else m.name for m in Metrics().registry.collect()}
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        for metric in set(re.findall(r"\bgovern_\w+", rule["expr"])):
            assert metric in exported, f"{rule['alert']} uses unknown metric {metric}"
