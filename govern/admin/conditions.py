"""A permission set's access conditions (govern.domain.conditions, docs/access-conditions.md) and the
denials they cause, in words for the console: fields, never the stored JSON."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from pydantic import ValidationError

from govern.domain.conditions import RATE, SOURCE, TIME_WINDOW, WEEKDAYS, AccessConditions

_DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday",
              "sat": "Saturday", "sun": "Sunday"}
_ORDER = list(_DAY_NAMES)
# What a denial by each condition means, for the decision list (the rule itself stays in the title).
DENIAL_TEXT = {TIME_WINDOW: "outside its time window", RATE: "over its requests per minute",
               SOURCE: "from outside its source ranges"}


@dataclass(frozen=True)
class WindowText:
    days: str
    hours: str
    time_zone: str


@dataclass(frozen=True)
class ConditionsText:
    windows: list[WindowText]
    max_requests_per_minute: int | None
    source_cidrs: list[str]


def _days(days: list[str]) -> str:
    ordered = sorted(set(days), key=_ORDER.index)
    if len(ordered) == 7:
        return "every day"
    if ordered == list(WEEKDAYS):
        return "Monday to Friday"
    return ", ".join(_DAY_NAMES[d] for d in ordered)


def _hours(start: str, end: str) -> str:
    if start == "00:00" and end == "24:00":
        return "all day"
    text = f"{start} to {end}"
    return text + " (into the next day)" if end <= start else text


def describe(stored: dict[str, Any] | None) -> ConditionsText | None:
    """The stored conditions as words; None when the set has none (or they no longer parse)."""
    if not stored:
        return None
    try:
        c = AccessConditions.model_validate(stored)
    except ValidationError:
        return None
    return ConditionsText(windows=[WindowText(_days(list(w.days)), _hours(w.start, w.end), w.time_zone)
                                   for w in c.time_windows],
                          max_requests_per_minute=c.max_requests_per_minute, source_cidrs=list(c.source_cidrs))


def denial_markup(rules: list[str] | None) -> Markup:
    """`outside its time window` (and the others) for the conditions among a denial's rules; empty if none."""
    words = [(rule, DENIAL_TEXT[rule]) for rule in (rules or []) if rule in DENIAL_TEXT]
    return Markup("").join(Markup(' <span class="gv-rule-text" title="{0}">{1}</span>').format(rule, text)
                           for rule, text in words) if words else Markup("")


__all__ = ["ConditionsText", "WindowText", "describe", "denial_markup", "DENIAL_TEXT"]
