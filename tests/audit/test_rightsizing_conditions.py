"""Right-sizing keeps a permission set's access conditions (#21): the recommendation narrows what was granted, it
never drops the time windows, rate or source ranges under which the window's requests were allowed."""
from __future__ import annotations

import yaml

from tests.audit.test_apply_roundtrip import EXAMPLE, apply_example_and_log

CONDITIONS = {"time_windows": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                                "end": "24:00", "time_zone": "UTC"}],
              "max_requests_per_minute": 600, "source_cidrs": ["10.20.1.0/24"]}


def test_a_right_sized_set_keeps_its_conditions_and_apply_accepts_it(services, runner, tmp_path):
    doc = yaml.safe_load(EXAMPLE.read_text())
    next(ps for ps in doc["permission_sets"] if ps["id"] == "order-writer")["conditions"] = CONDITIONS
    conditioned = tmp_path / "governance.yaml"
    conditioned.write_text(yaml.safe_dump(doc, sort_keys=False))
    apply_example_and_log(services, runner)
    assert runner.invoke(["apply", "-f", str(conditioned)]).exit_code == 0

    rec = tmp_path / "out.yaml"
    result = runner.invoke(["audit", "--out", str(tmp_path / "r.json"), "--recommend", str(rec)])
    assert result.exit_code == 0, result.output
    recommended = yaml.safe_load(rec.read_text())
    order = next(ps for ps in recommended["permission_sets"] if ps["id"] == "order-writer-rightsized")
    assert order["conditions"] == CONDITIONS
    applied = runner.invoke(["apply", "-f", str(rec)])
    assert applied.exit_code == 0, applied.output
    exported = tmp_path / "export.yaml"
    assert runner.invoke(["export", "-o", str(exported)]).exit_code == 0
    back = next(ps for ps in yaml.safe_load(exported.read_text())["permission_sets"]
                if ps["id"] == "order-writer-rightsized")
    assert back["conditions"] == CONDITIONS
