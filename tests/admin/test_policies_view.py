"""The policies page lists the policy files and shows the validator's verdict, or says it is unavailable."""
from __future__ import annotations

from dataclasses import dataclass, field

from tests.admin.conftest import sign_in


@dataclass
class Report:
    file: str
    policy_id: str
    errors: list = field(default_factory=list)


def test_policy_files_with_their_validation_state(client, console_users, clock, services, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "010_ok.cedar").write_text('@id("ok") forbid(principal, action, resource) when { false };')
    (folder / "020_bad.cedar").write_text("this is not cedar")
    services.policies_dir = folder
    sign_in(client, console_users["auditor"])

    html = client.get("/admin/policies/").get_data(as_text=True)
    assert "010_ok.cedar" in html and "020_bad.cedar" in html

    services.policy_validator = lambda directory: (
        [Report("010_ok.cedar", "ok"), Report("020_bad.cedar", "?", ["does not parse"])], [])
    html = client.get("/admin/policies/").get_data(as_text=True)
    # the file list and the policy list: 010_ok.cedar and its policy "ok" valid, 020_bad.cedar and its text invalid
    assert html.count(">valid<") == 2 and html.count(">invalid<") == 2
    assert "does not parse" in html
