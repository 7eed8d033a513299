"""The one place that decides a keyset's ``Ready`` condition: an ordered chain of checks.

Modelled on cert-manager's policy chains: each check is a small pure function of what a
reconciliation found (``Facts``) that either passes (None) or returns the verdict. The
first verdict wins, so the order is the priority: a keyset whose spec is invalid is
reported as ``InvalidSpec`` even if its Secret is also corrupt, because fixing the spec
comes first. The status condition, the Event that goes with it and the table of reasons
in docs/operator.md (``reasons_table``; a test compares them) all come from ``CHAIN``.

The first verdict is the condition; every verdict that applies is a Warning Event. A
verdict says whether its Event is posted every time (``each_time``: something that
happened in this reconciliation, such as a repair or a failed attempt) or once per change
of the condition (a state that persists, such as a name conflict, which would otherwise
repeat its Warning on every re-check).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Facts:
    """What a reconciliation found, in the terms the checks need (never key material)."""

    spec_error: str | None = None
    conflict: str | None = None
    corrupt_secret: str | None = None
    failure: str | None = None
    untrusted_configmaps: tuple[str, ...] = ()
    """ConfigMaps labelled for this keyset that it does not publish through (planted or
    relabelled); the JWKS server never serves them."""
    repaired: str | None = None
    """Set when this reconciliation rebuilt a ConfigMap that was deleted or edited by hand."""
    summary: str = ""
    """The Ready message when nothing is wrong (active and next key, next rotation)."""


@dataclass(frozen=True)
class Verdict:
    ready: bool
    reason: str
    message: str
    each_time: bool = False

    @property
    def warning(self) -> bool:
        return not self.ready or self.reason != PUBLISHED


@dataclass(frozen=True)
class Check:
    reason: str
    ready: bool
    meaning: str
    """For the docs' table: what the reason means and what is written meanwhile."""
    verdict: Callable[[Facts], Verdict | None]


PUBLISHED: Final = "KeysPublished"


def _invalid_spec(facts: Facts) -> Verdict | None:
    if facts.spec_error is None:
        return None
    return Verdict(False, "InvalidSpec", facts.spec_error)


def _name_conflict(facts: Facts) -> Verdict | None:
    if facts.conflict is None:
        return None
    return Verdict(False, "NameConflict", facts.conflict)


def _corrupt_secret(facts: Facts) -> Verdict | None:
    if facts.corrupt_secret is None:
        return None
    return Verdict(False, "CorruptSecret", facts.corrupt_secret)


def _reconcile_failed(facts: Facts) -> Verdict | None:
    if facts.failure is None:
        return None
    return Verdict(False, "ReconcileFailed", facts.failure, each_time=True)


def _untrusted_configmap(facts: Facts) -> Verdict | None:
    if not facts.untrusted_configmaps:
        return None
    names = ", ".join(facts.untrusted_configmaps)
    return Verdict(
        True,
        "UntrustedConfigMap",
        f"ConfigMap(s) {names} claim this keyset (label) but it does not publish through "
        "them: the JWKS server never serves them. Someone who may write ConfigMaps in this "
        f"namespace made or relabelled them; {facts.summary}",
    )


def _public_keys_repaired(facts: Facts) -> Verdict | None:
    if facts.repaired is None:
        return None
    return Verdict(True, "PublicKeysRepaired", f"{facts.repaired}; {facts.summary}", True)


def _published(facts: Facts) -> Verdict | None:
    return Verdict(True, PUBLISHED, facts.summary)


CHAIN: Final[tuple[Check, ...]] = (
    Check(
        "InvalidSpec",
        False,
        'the message names each bad field (`spec.algorithm: "HS256" is not supported ...`); '
        "nothing is written",
        _invalid_spec,
    ),
    Check(
        "NameConflict",
        False,
        "a target Secret/ConfigMap belongs to someone else; nothing is written, re-checked "
        "every 30 s and on spec changes",
        _name_conflict,
    ),
    Check(
        "CorruptSecret",
        False,
        "`keys.json` cannot be trusted (not JSON, inconsistent, a kid that is not its key's "
        "thumbprint); nothing is written: no new keys, the last good JWKS stays published",
        _corrupt_secret,
    ),
    Check(
        "ReconcileFailed",
        False,
        "an API call failed; retried with backoff (1 s doubling to 60 s); whatever completed "
        "stays (every step is idempotent); its Warning is posted for every failed attempt",
        _reconcile_failed,
    ),
    Check(
        "UntrustedConfigMap",
        True,
        "a ConfigMap labelled for the keyset that it does not publish through exists "
        "(planted or relabelled); never served; Warning once per change",
        _untrusted_configmap,
    ),
    Check(
        "PublicKeysRepaired",
        True,
        "this reconciliation rebuilt a deleted or hand-edited ConfigMap from the Secret "
        "(keys added or swapped by hand were never served); Warning each time",
        _public_keys_repaired,
    ),
    Check(
        PUBLISHED,
        True,
        "reconciled: every published key is in the ConfigMap and status",
        _published,
    ),
)


def verdicts(facts: Facts) -> tuple[Verdict, ...]:
    """Every verdict that applies, in chain order (``KeysPublished`` only when none does).

    The first is the condition; each one's Event is still posted, so that a repair made
    while an untrusted ConfigMap is reported is not swallowed by the higher-ranked reason.
    """
    found = tuple(v for check in CHAIN[:-1] if (v := check.verdict(facts)) is not None)
    if found:
        return found
    closing = CHAIN[-1].verdict(facts)
    assert closing is not None, "the chain ends with a check that always answers"
    return (closing,)


def decide(facts: Facts) -> Verdict:
    """The verdict that becomes the Ready condition: the first of the chain that applies."""
    return verdicts(facts)[0]


def reasons_table() -> str:
    """The docs' table of Ready reasons, in chain order (docs/operator.md holds this text)."""
    lines = ["| `Ready` reason | status | meaning |", "|---|---|---|"]
    for check in CHAIN:
        lines.append(f"| `{check.reason}` | {check.ready} | {check.meaning} |")
    return "\n".join(lines)
