"""Every limit of the spec, at the limit and just past it: the CRD and parse_spec agree.

The values come from the table in ``core/specfields.py`` (the single source of the CRD's
schema and of parse_spec's checks), so a limit added there is tested here without a new
line: lengths at and past ``max_length`` and ``min_length``, lists and maps at and past
``max_items``, repeated set items, durations at and past their range and length, and every
choice with its neighbours. Each value goes through the reproduced API server (schema, set
semantics, CEL after defaulting) and through ``parse_spec``; both must say the same.
"""

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwks_operator.core.durations import format_duration
from jwks_operator.core.spec import SpecError, parse_spec
from jwks_operator.core.specfields import (
    URL_PATTERN,
    Choice,
    Duration,
    Field,
    ListOf,
    MapOf,
    Section,
    Text,
    leaves,
)
from tests.deploy.support import api_server_verdict, keyset

Case = tuple[str, Any, bool]
"""(spec path, value, whether the value is within the limit)."""


def text_of_length(rule: Text, length: int, filler: str = "a") -> str:
    """A value of ``length`` characters that satisfies the rule's pattern if the length does."""
    prefix = "https://" if rule.pattern == URL_PATTERN else ""
    return prefix + filler * max(0, length - len(prefix))


def text_cases(rule: Text) -> list[tuple[Any, bool]]:
    cases = [
        (text_of_length(rule, rule.max_length), True),
        (text_of_length(rule, rule.max_length + 1), False),
        (text_of_length(rule, max(rule.min_length, 1) + 8), True),
        (42, False),
    ]
    if rule.min_length > 0:
        cases.append((text_of_length(rule, rule.min_length), True))
        cases.append(("", False))
    return cases


def distinct(rule: Text, count: int) -> list[str]:
    """``count`` different valid values of the rule, each well inside its length."""
    return [text_of_length(rule, 4) + str(index) for index in range(count)]


def map_entries(rule: MapOf, count: int) -> dict[str, str]:
    keys = [f"c{index}" for index in range(count)]
    return {key: f"X-H{index}" for index, key in enumerate(keys)}


def duration_cases(rule: Duration) -> list[tuple[Any, bool]]:
    most = format_duration(rule.maximum)
    return [
        (most, True),
        (format_duration(rule.maximum + timedelta(milliseconds=1)), False),
        ("1ms", True),
        ("0s", rule.zero_allowed),
        ("0" * (rule.max_length - 2) + "1s", True),
        ("0" * (rule.max_length - 1) + "1s", False),
        ("1d", False),
    ]


def cases(path: str, rule: Field) -> list[Case]:
    if isinstance(rule, Text):
        return [(path, value, ok) for value, ok in text_cases(rule)]
    if isinstance(rule, Duration):
        return [(path, value, ok) for value, ok in duration_cases(rule)]
    if isinstance(rule, Choice):
        found: list[Case] = [(path, value, True) for value in rule.values]
        wrong: Any = 1 if isinstance(rule.values[0], int) else "x"
        found += [(path, wrong, False), (path, True, False)]
        if isinstance(rule.values[0], str):
            found.append((path, rule.values[0].lower(), rule.values[0].lower() in rule.values))
        return found
    if isinstance(rule, ListOf):
        items = distinct(rule.item, rule.max_items + 1)
        found = [
            (path, items[: rule.max_items], True),
            (path, items[: rule.max_items + 1], False),
            (path, [items[0], items[0]], False),  # a set: no repeated value
            (path, [], True),
        ]
        found += [(path, [value], ok) for value, ok in text_cases(rule.item)]
        return found
    if isinstance(rule, MapOf):
        found = [
            (path, map_entries(rule, rule.max_items), True),
            (path, map_entries(rule, rule.max_items + 1), False),
        ]
        found += [
            (path, {key: "X-A"}, ok) for key, ok in text_cases(rule.key) if isinstance(key, str)
        ]
        found += [(path, {"c": value}, ok) for value, ok in text_cases(rule.value)]
        return found
    assert isinstance(rule, Section)
    return [(path, "not an object", False), (path, {"unknown": 1}, False)]


ALL_CASES = [case for path, rule in leaves() for case in cases(path, rule)]


def nest(path: str, value: Any) -> dict[str, Any]:
    """``spec.a.b`` = value, as a spec document, with what the field needs to be judged alone:
    a keySize needs an RSA algorithm, a short interval a shorter prePublish."""
    names = path.split(".")[1:]
    document: Any = value
    for name in reversed(names):
        document = {name: document}
    if path == "spec.rotation.interval":
        document["rotation"]["prePublish"] = "0.5ms"
    return dict(document)


CROSS_FIELD = frozenset({"spec.rotation.interval", "spec.rotation.prePublish"})
"""Fields whose extremes also meet the prePublish < interval rule: there only agreement is
asserted (the rule itself has its own tests)."""


def core_accepts(spec: Any) -> bool:
    try:
        parse_spec("auth", spec)
    except SpecError:
        return False
    return True


def test_every_field_of_the_table_has_limit_cases() -> None:
    covered = {path for path, _, _ in ALL_CASES}
    assert covered == {path for path, _ in leaves()}
    assert len(ALL_CASES) > 100


@pytest.mark.parametrize(
    ("path", "value", "within"), ALL_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(ALL_CASES)]
)
def test_at_and_past_every_limit_both_judge_alike(path: str, value: Any, within: bool) -> None:
    spec = nest(path, value)
    crd = api_server_verdict(keyset(spec))
    core = core_accepts(spec)
    assert (crd == []) == core, (spec, crd)
    if path not in CROSS_FIELD:
        assert core == within, spec


@st.composite
def boundary_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Several fields at once, each at or just past one of its limits."""
    chosen = draw(st.lists(st.sampled_from(ALL_CASES), min_size=1, max_size=4))
    spec: dict[str, Any] = {}
    for path, value, _ in chosen:
        names = path.split(".")[1:]
        target = spec
        for name in names[:-1]:
            existing = target.get(name)
            if not isinstance(existing, dict):
                existing = target[name] = {}
            target = existing
        target[names[-1]] = value
    return spec


@settings(max_examples=150, deadline=None)
@given(boundary_specs())
def test_combinations_of_boundary_values_are_judged_alike(spec: dict[str, Any]) -> None:
    assert (api_server_verdict(keyset(spec)) == []) == core_accepts(spec), spec
