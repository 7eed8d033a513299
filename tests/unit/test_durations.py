from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jwks_operator.core.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("720h", timedelta(hours=720)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h2m3s", timedelta(seconds=3723)),
    ],
)
def test_parses_kubernetes_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "10", "-5s", "5 s", "1d", "h", "1h-", "+1h", "1e3s"])
def test_rejects_what_go_would_not_accept_or_we_do_not_allow(text: str) -> None:
    with pytest.raises(DurationError, match="is not a duration like 90s, 15m or 720h"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["100000h", "99999999999999h", "9" * 60 + "s", "1" * 30 + "ms"])
def test_rejects_absurdly_long_durations(text: str) -> None:
    with pytest.raises(DurationError, match="longer than 10 years"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10 * 365 * 24 * 3600 * 1000))
def test_format_round_trips(millis: int) -> None:
    value = timedelta(milliseconds=millis)
    assert parse_duration(format_duration(value)) == value
