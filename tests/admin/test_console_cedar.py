"""The policies page's Cedar tokenizer and the console's field rendering of structured values."""
from __future__ import annotations

from govern.admin.cedar import highlight, split_policies, tokens
from govern.admin.views.base import readable
from govern.policy.guardrails import PACKAGED_POLICIES, validate_directory


def test_the_tokenizer_gives_the_text_back_and_splits_the_packaged_policies_by_id():
    reports, problems = validate_directory(PACKAGED_POLICIES)
    assert problems == []
    ids = []
    for path in sorted(PACKAGED_POLICIES.glob("*.cedar")):
        text = path.read_text()
        assert "".join(value for _, value in tokens(text)) == text
        ids += [p.policy_id for p in split_policies(text)]
    assert ids == [r.policy_id for r in reports]  # the same policies, in the same order, as the validator's


def test_statements_split_at_top_level_semicolons_only():
    text = ('// first\n@id("a") forbid (principal, action, resource) when { context.path like "x;y" };\n'
            '@id("b") permit (principal, action, resource) when { [1, 2].contains(1) };')
    policies = split_policies(text)
    assert [(p.policy_id, p.effect) for p in policies] == [("a", "forbid"), ("b", "permit")]
    assert policies[0].text.startswith("// first") and '"x;y"' in policies[0].text
    # An unterminated statement is kept (the validator reports it).
    assert [p.policy_id for p in split_policies('@id("c") forbid (principal, action, resource)')] == ["c"]


def test_highlighting_escapes_the_text():
    html = str(highlight('@id("<script>") forbid (principal, action, resource) when { context.x < 1 };'))
    assert "<script>" not in html and "&lt;script&gt;" in html and '<span class="gv-cedar-op">&lt;</span>' in html
    assert '<span class="gv-cedar-keyword">forbid</span>' in html
    assert '<span class="gv-cedar-annotation">@id</span>' in html


def test_structured_values_render_as_escaped_fields_without_internal_keys():
    html = str(readable({"ranges": ["10.0.0.0/8"], "_location": {"file": "f", "line": 1}, "note": "<b>x</b>",
                         "retry": {"attempts": 3, "on": [{"status": 502}]}, "enabled": True, "empty": None}))
    assert "_location" not in html and "<b>" not in html and "&lt;b&gt;" in html
    assert "<dt>ranges</dt><dd>10.0.0.0/8</dd>" in html and "<dt>enabled</dt><dd>yes</dd>" in html
    assert "<dt>attempts</dt><dd>3</dd>" in html and '<span class="gv-muted">none</span>' in html
    assert "{" not in html and "status" in html  # no JSON: nested values are fields too
