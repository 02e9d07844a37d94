"""Durations as agent.yaml spells them."""

from __future__ import annotations

import pytest

from agents.runtime.durations import format_duration_ms, parse_duration_ms


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("2s", 2000), ("1.5s", 1500),
                                          ("2m", 120_000), ("1h", 3_600_000), ("3", 3000),
                                          (2, 2000), (0.25, 250)])
def test_durations_parse_to_milliseconds(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["soon", "-1s", "1d", "", True, None, [1], -2,
                                 "\u0663s", "\uff15s"])  # Arabic-Indic 3, fullwidth 5
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(bad)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e400, "1" + "0" * 400 + "s"])
def test_non_finite_durations_are_refused_with_a_value_error(bad: object) -> None:
    """JSON's 1e400 parses to inf, a 400-digit string to float inf: not an OverflowError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(bad)


@pytest.mark.parametrize("ms", [1, 500, 1000, 1500, 60_000, 3_600_000, 90_000])
def test_format_round_trips(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms
