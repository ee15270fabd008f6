"""The YAML loader's positions and errors, and the duration/size units."""
import datetime as dt

import pytest

from govern.config_as_code.units import format_duration, format_size, parse_duration, parse_size
from govern.config_as_code.yaml_loader import format_path, load
from govern.errors import ValidationFailed


def test_positions_are_one_based_and_entries_point_at_their_key():
    doc = load("a:\n  - x: 1\n    y: [1, 2]\n  - 2027-01-01\n", "f.yaml")
    assert doc.data == {"a": [{"x": 1, "y": [1, 2]}, dt.date(2027, 1, 1)]}
    assert doc.where(("a",)) == (1, 1)
    assert doc.where(("a", 0, "y")) == (3, 5)
    assert doc.where(("a", 0, "y", 1)) == (3, 12)
    assert doc.location(("a", 1, "missing")) == "f.yaml:4:5"


def test_duplicate_keys_are_errors_not_silently_overwritten():
    doc = load("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert doc.data == {"a": 1, "b": 2}
    assert [(e["location"], e["message"]) for e in doc.errors] == [("f.yaml:3:1", "duplicate key 'a'")]


def test_syntax_error_has_file_line_column():
    with pytest.raises(ValidationFailed) as info:
        load("systems:\n  - id: [a,\n  b: c\n", "bad.yaml")
    (err,) = info.value.errors
    assert err["location"].startswith("bad.yaml:")
    assert err["line"] >= 2
    assert "YAML syntax error" in err["message"]


def test_empty_document_is_an_empty_mapping():
    assert load("", "f.yaml").data == {}


def test_format_path():
    assert format_path(("integration_users", 3, "ip_ranges", 0)) == "integration_users[3].ip_ranges[0]"


@pytest.mark.parametrize("text,seconds", [("200ms", 0.2), ("30s", 30), ("15m", 900), ("24h", 86400), ("90d", 7776000),
                                          (45, 45), ("2w", 1209600)])
def test_durations_round_trip(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(parse_duration(text))) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "m5", True, -1, None])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes():
    assert parse_size("10MB") == 10 * 1024 * 1024
    assert format_size(150 * 1024 * 1024) == "150MB"
    assert format_size(1000) == "1000B"
    with pytest.raises(ValueError):
        parse_size("ten")
