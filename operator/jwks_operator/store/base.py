"""The one interface to where a keyset's state lives; Kubernetes and a local directory.

Two halves with different audiences: the *private* half (Secret / 0600 state file) holds
``keys.json`` and the signing files; the *public* half (ConfigMap / published file) holds
the JWKS and friends. ``reconcile`` always writes private before public, so a key is never
published before its private half is safe, and adapters skip writes whose content is
unchanged so that a steady keyset costs no writes at all.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class WriteOutcome(StrEnum):
    UNCHANGED = "unchanged"  # content already as desired: nothing written
    CREATED = "created"
    UPDATED = "updated"


@dataclass(frozen=True)
class StoredDocuments:
    """What a store holds for one keyset right now, as raw text (not yet trusted)."""

    private_state: str | None = field(repr=False)
    """``keys.json`` text, or None when the Secret / state file does not exist."""
    public_data: Mapping[str, str] | None
    """The public documents (ConfigMap data), or None when absent."""
    public_intact: bool = True
    """False when the public documents no longer match what was last written (edited)."""
    conflict: str | None = None
    """Set when a target name is taken by an object this keyset does not own: why."""
    untrusted_configmaps: tuple[str, ...] = ()
    """Other ConfigMaps labelled for this keyset (planted or relabelled): never served."""


class StoreConflictError(Exception):
    """A target exists but belongs to someone else; it must never be overwritten."""


class KeySetStore(Protocol):
    async def read(self) -> StoredDocuments: ...

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome: ...

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        """Before a JWKS holding a new kid is written: record that its kids are vouched for
        where servers look (a keyset's ``status.keys``); a no-op where no server needs it."""
        ...

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome: ...
