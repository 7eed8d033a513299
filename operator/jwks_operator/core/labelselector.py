"""Kubernetes label selectors: parsed once, checked at startup, matched in memory.

A shard of the operator (``jwks-operator run --keyset-selector SELECTOR``) owns the
JwksKeySets whose labels match a selector. The same text is sent to the API server (which
filters the watch) and matched here against each keyset the daemon sees (so a keyset that
no longer matches is not reconciled even if an event slips through). Parsing it here means
a typo fails at startup with exit code 2 and a message naming the problem, instead of every
watch request being refused by the API server while the operator retries forever.

The grammar is the API server's (``k8s.io/apimachinery/pkg/labels``), minus the numeric
``>`` and ``<`` operators that only node affinity uses:

    selector    := requirement ("," requirement)*
    requirement := KEY | "!" KEY | KEY ("=" | "==" | "!=") VALUE
                 | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"

``k!=v`` and ``k notin (...)`` also match objects without the label ``k``, as in Kubernetes.
Pure: no I/O, no Kubernetes client.
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from jwks_operator.core.specfields import NAME_MAX, NAME_PATTERN

_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX: Final = re.compile(NAME_PATTERN)  # a DNS subdomain, as an object name
_NAME_MAX: Final = 63
_PREFIX_MAX: Final = NAME_MAX
_SYMBOLS: Final = ("==", "!=", "=", "!", ",", "(", ")", ">", "<")
_SEPARATORS: Final = frozenset(" \t\n,()=!<>")

EQUALS: Final = "="
NOT_EQUALS: Final = "!="
IN: Final = "in"
NOT_IN: Final = "notin"
EXISTS: Final = "exists"
NOT_EXISTS: Final = "!"


class SelectorError(ValueError):
    """A label selector that the API server would refuse (or that this parser does not take)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == EXISTS:
            return present
        if self.operator == NOT_EXISTS:
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.operator in (EQUALS, IN) else not inside

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == NOT_EXISTS:
            return f"!{self.key}"
        if self.operator in (EQUALS, NOT_EQUALS):
            return f"{self.key}{self.operator}{self.values[0]}"
        return f"{self.key} {self.operator} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """Every requirement must hold (they join by "and", as in Kubernetes)."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)

    def __str__(self) -> str:
        """The selector in the API server's syntax (what ``labelSelector=`` is given)."""
        return ",".join(str(requirement) for requirement in self.requirements)


def _tokens(text: str) -> Iterator[str]:
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        symbol = next((s for s in _SYMBOLS if text.startswith(s, position)), None)
        if symbol is not None:
            yield symbol
            position += len(symbol)
            continue
        end = position
        while end < len(text) and text[end] not in _SEPARATORS:
            end += 1
        yield text[position:end]
        position = end


def _shown(token: str | None) -> str:
    return repr(token) if token else "the end"


def _check_key(key: str) -> str:
    if key in _SYMBOLS or not key:
        raise SelectorError(f"expected a label key, found {_shown(key)}")
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > _PREFIX_MAX or not _PREFIX.match(prefix)):
        raise SelectorError(
            f"label key {key!r}: the prefix before '/' must be a DNS subdomain "
            f"(lowercase letters, digits, '-', '.'; at most {_PREFIX_MAX} characters)"
        )
    if len(name) > _NAME_MAX or not _NAME.match(name):
        raise SelectorError(
            f"label key {key!r}: the name must be 1-{_NAME_MAX} letters, digits, '-', '_' "
            "or '.', beginning and ending with a letter or digit"
        )
    return key


def _check_value(value: str, key: str) -> str:
    if value and (len(value) > _NAME_MAX or not _NAME.match(value)):
        raise SelectorError(
            f"label value {value!r} (of {key!r}): at most {_NAME_MAX} letters, digits, "
            "'-', '_' or '.', beginning and ending with a letter or digit"
        )
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.at += token is not None
        return token

    def expect(self, wanted: str, after: str) -> None:
        found = self.take()
        if found != wanted:
            raise SelectorError(f"expected {wanted!r} after {after}, found {_shown(found)}")

    def selector(self) -> LabelSelector:
        requirements = [self.requirement()]
        while self.peek() == ",":
            self.take()
            requirements.append(self.requirement())
        if self.peek() is not None:
            raise SelectorError(f"expected ',' between requirements, found {self.peek()!r}")
        return LabelSelector(tuple(requirements))

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(_check_key(self.take() or ""), NOT_EXISTS)
        key = _check_key(self.take() or "")
        operator = self.peek()
        if operator in (None, ","):
            return Requirement(key, EXISTS)
        self.take()
        if operator in ("=", "=="):
            return Requirement(key, EQUALS, (self.value(key),))
        if operator == "!=":
            return Requirement(key, NOT_EQUALS, (self.value(key),))
        if operator in (IN, NOT_IN):
            return Requirement(key, operator, self.value_set(key, operator))
        if operator in (">", "<"):
            raise SelectorError(
                f"the operator {operator!r} (numeric comparison) is not supported here; "
                "use =, ==, !=, in, notin, KEY or !KEY"
            )
        raise SelectorError(
            f"expected an operator (=, ==, !=, in, notin) or ',' after {key!r}, found {operator!r}"
        )

    def value(self, key: str) -> str:
        token = self.peek()
        if token is None or token == ",":
            return ""  # `k=` selects the empty value, as in Kubernetes
        if token in _SYMBOLS:
            raise SelectorError(f"expected a label value for {key!r}, found {token!r}")
        self.take()
        return _check_value(token, key)

    def value_set(self, key: str, operator: str) -> tuple[str, ...]:
        self.expect("(", f"{key!r} {operator}")
        values: list[str] = []
        while True:
            token = self.take()
            if token is None:
                raise SelectorError(f"the value set of {key!r} {operator} is not closed by ')'")
            if token == ")" and not values:
                raise SelectorError(f"{key!r} {operator} (): the value set must not be empty")
            if token in _SYMBOLS:
                raise SelectorError(
                    f"expected a label value in {key!r} {operator} (...), found {token!r}"
                )
            values.append(_check_value(token, key))
            separator = self.take()
            if separator == ")":
                return tuple(values)
            if separator != ",":
                raise SelectorError(
                    f"expected ',' or ')' in {key!r} {operator} (...), found {_shown(separator)}"
                )


def parse_selector(text: str) -> LabelSelector:
    """Parse ``text`` as a Kubernetes label selector; raise ``SelectorError`` saying why not."""
    if not text.strip():
        raise SelectorError("the selector is empty (it would select every keyset)")
    return _Parser(text).selector()
