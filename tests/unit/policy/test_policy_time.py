"""TIME_RESTRICTION: hours, days, wrap past midnight, DST in Berlin and New York."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from policy_helpers import SOL_A, Decide, spec, usage_for

from waiaas.policy import (
    AgentContext,
    TimeRestrictionRules,
    explain,
    next_allowed_time,
    validate_rules,
)
from waiaas.types import Transfer


def utc(text: str) -> int:
    """Unix seconds of an ISO UTC timestamp."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def allowed_at(decide: Decide, agent: AgentContext, rules: dict[str, Any], when: int) -> bool:
    return bool(
        decide(
            Transfer(to=SOL_A, amount=1), agent, [spec("TIME_RESTRICTION", rules)], now=when
        ).allowed
    )


OFFICE_BERLIN = {"allowed_hours": {"start": 9, "end": 17}, "timezone": "Europe/Berlin"}
OFFICE_NY = {"allowed_hours": {"start": 9, "end": 17}, "timezone": "America/New_York"}
NIGHT = {"allowed_hours": {"start": 22, "end": 6}, "timezone": "UTC"}


@pytest.mark.parametrize(
    ("rules", "when", "allowed"),
    [
        # end-exclusive, start-inclusive, in UTC
        ({"allowed_hours": {"start": 9, "end": 17}}, "2026-05-28T08:59:59", False),
        ({"allowed_hours": {"start": 9, "end": 17}}, "2026-05-28T09:00:00", True),
        ({"allowed_hours": {"start": 9, "end": 17}}, "2026-05-28T16:59:59", True),
        ({"allowed_hours": {"start": 9, "end": 17}}, "2026-05-28T17:00:00", False),
        ({"allowed_hours": {"start": 0, "end": 24}}, "2026-05-28T23:59:59", True),
        # wrap past midnight: 22:00 -> 06:00
        (NIGHT, "2026-05-28T21:59:59", False),
        (NIGHT, "2026-05-28T22:00:00", True),
        (NIGHT, "2026-05-28T23:30:00", True),
        (NIGHT, "2026-05-29T00:00:00", True),
        (NIGHT, "2026-05-29T05:59:59", True),
        (NIGHT, "2026-05-29T06:00:00", False),
        (NIGHT, "2026-05-29T12:00:00", False),
        # days: 2026-05-28 is a Thursday (4), 2026-05-30 a Saturday (6)
        ({"allowed_days": [1, 2, 3, 4, 5]}, "2026-05-28T12:00:00", True),
        ({"allowed_days": [1, 2, 3, 4, 5]}, "2026-05-30T12:00:00", False),
        ({"allowed_days": [7]}, "2026-05-31T00:00:00", True),
        # the day is the local date: Friday 23:30 UTC is already Saturday in Berlin
        ({"allowed_days": [5], "timezone": "Europe/Berlin"}, "2026-05-29T21:30:00", True),
        ({"allowed_days": [5], "timezone": "Europe/Berlin"}, "2026-05-29T22:30:00", False),
        # night window, weekdays only: checked on the local date of the moment
        ({**NIGHT, "allowed_days": [1, 2, 3, 4, 5]}, "2026-05-29T23:00:00", True),  # Fri 23:00
        ({**NIGHT, "allowed_days": [1, 2, 3, 4, 5]}, "2026-05-30T01:00:00", False),  # Sat 01:00
    ],
)
def test_hours_and_days(
    decide: Decide, sol_agent: AgentContext, rules: dict[str, Any], when: str, allowed: bool
) -> None:
    """Allowed hours are [start, end) in local time; days are ISO weekdays of the local date."""
    assert allowed_at(decide, sol_agent, rules, utc(when)) is allowed


@pytest.mark.parametrize(
    ("rules", "when", "allowed"),
    [
        # Berlin switches to CEST on 2026-03-29 at 01:00 UTC: 07:30 UTC is 08:30 the day
        # before (CET, denied) and 09:30 on the day itself (CEST, allowed).
        (OFFICE_BERLIN, "2026-03-28T07:30:00", False),
        (OFFICE_BERLIN, "2026-03-29T07:30:00", True),
        (OFFICE_BERLIN, "2026-03-29T15:30:00", False),  # 17:30 CEST
        (OFFICE_BERLIN, "2026-03-28T15:30:00", True),  # 16:30 CET
        # back to CET on 2026-10-25 at 01:00 UTC
        (OFFICE_BERLIN, "2026-10-24T07:30:00", True),  # 09:30 CEST
        (OFFICE_BERLIN, "2026-10-25T07:30:00", False),  # 08:30 CET
        # New York: EDT from 2026-03-08 07:00 UTC, EST again from 2026-11-01 06:00 UTC
        (OFFICE_NY, "2026-03-07T13:30:00", False),  # 08:30 EST
        (OFFICE_NY, "2026-03-08T13:30:00", True),  # 09:30 EDT
        (OFFICE_NY, "2026-10-31T20:30:00", True),  # 16:30 EDT
        (OFFICE_NY, "2026-11-01T21:30:00", True),  # 16:30 EST
        (OFFICE_NY, "2026-11-01T22:30:00", False),  # 17:30 EST
        (OFFICE_NY, "2026-10-31T21:30:00", False),  # 17:30 EDT
    ],
)
def test_dst_transitions(
    decide: Decide, sol_agent: AgentContext, rules: dict[str, Any], when: str, allowed: bool
) -> None:
    """The same UTC time falls inside or outside the window depending on the DST offset."""
    assert allowed_at(decide, sol_agent, rules, utc(when)) is allowed


def test_repeated_hour_on_fall_back_is_allowed_both_times(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """02:00-03:00 happens twice in Berlin on 2026-10-25; both occurrences are in the window."""
    rules = {"allowed_hours": {"start": 2, "end": 3}, "timezone": "Europe/Berlin"}
    assert allowed_at(decide, sol_agent, rules, utc("2026-10-25T00:30:00"))  # 02:30 CEST
    assert allowed_at(decide, sol_agent, rules, utc("2026-10-25T01:30:00"))  # 02:30 CET
    assert not allowed_at(decide, sol_agent, rules, utc("2026-10-25T02:30:00"))  # 03:30 CET


def _rules(data: dict[str, Any]) -> TimeRestrictionRules:
    rules = validate_rules("TIME_RESTRICTION", data)
    assert isinstance(rules, TimeRestrictionRules)
    return rules


def test_next_allowed_time_skips_the_spring_forward_gap() -> None:
    """02:00-03:00 does not exist in Berlin on 2026-03-29; the next one is a day later."""
    rules = _rules({"allowed_hours": {"start": 2, "end": 3}, "timezone": "Europe/Berlin"})
    start = utc("2026-03-28T23:30:00")  # 00:30 CET on the 29th
    found = next_allowed_time([rules], start)
    assert found == utc("2026-03-30T00:00:00")  # 02:00 CEST on the 30th


@pytest.mark.parametrize(
    ("data", "start", "expected"),
    [
        (
            OFFICE_BERLIN,
            "2026-03-28T17:00:00",
            "2026-03-29T07:00:00",
        ),  # 09:00 CEST after the switch
        (OFFICE_BERLIN, "2026-10-24T17:00:00", "2026-10-25T08:00:00"),  # 09:00 CET after the switch
        (OFFICE_NY, "2026-03-07T23:00:00", "2026-03-08T13:00:00"),
        (NIGHT, "2026-05-28T10:00:00", "2026-05-28T22:00:00"),
        (
            {"allowed_days": [1], "timezone": "Asia/Kathmandu"},
            "2026-05-28T00:00:00",
            "2026-05-31T18:15:00",
        ),
    ],
)
def test_next_allowed_time_in_the_rules_zone(
    data: dict[str, Any], start: str, expected: str
) -> None:
    """The next allowed moment is computed in the rule's zone (including +05:45 offsets)."""
    assert next_allowed_time([_rules(data)], utc(start)) == utc(expected)


def test_next_allowed_time_of_contradictory_rules_is_none() -> None:
    """Rules that can never hold together give no next time."""
    a = _rules({"allowed_days": [1]})
    b = _rules({"allowed_days": [2]})
    assert next_allowed_time([a, b], utc("2026-05-28T00:00:00")) is None
    assert next_allowed_time([a], utc("2026-06-01T10:00:00")) == utc("2026-06-01T10:00:00")


def test_explain_says_when_it_will_be_allowed(sol_agent: AgentContext) -> None:
    """explain() gives 'allowed after 09:00 Europe/Berlin' with the local date and offset."""
    p = spec("TIME_RESTRICTION", OFFICE_BERLIN)
    when = utc("2026-03-28T20:00:00")
    result = explain(Transfer(to=SOL_A, amount=1), sol_agent, [p], usage_for([p], now=when), when)
    assert not result.decision.allowed
    assert result.next_allowed_at == utc("2026-03-29T07:00:00")
    assert any(
        h.startswith("allowed after 09:00 Europe/Berlin (2026-03-29T09:00:00+02:00)")
        for h in result.hints
    ), result.hints
    assert "would then be allowed as INSTANT" in " ".join(result.hints)
