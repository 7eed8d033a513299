"""An in-memory store: the reference behaviour of the KeySetStore contract, for tests.

It keeps a log of writes so that tests can check ordering (private before public) and
that unchanged content is never rewritten.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jwks_operator.core.contract import SECRET_KEYS
from jwks_operator.store.base import StoredDocuments, WriteOutcome


class MemoryStore:
    def __init__(self) -> None:
        self.private: dict[str, str] | None = None
        self.public: dict[str, str] | None = None
        self.next_change: datetime | None = None
        self.writes: list[str] = []
        self._public_written: dict[str, str] | None = None
        self.trusted: frozenset[str] = frozenset()

    async def read(self) -> StoredDocuments:
        return StoredDocuments(
            private_state=self.private.get(SECRET_KEYS) if self.private is not None else None,
            public_data=dict(self.public) if self.public is not None else None,
            public_intact=self.public is None or self.public == self._public_written,
        )

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        if self.private == dict(data):
            return WriteOutcome.UNCHANGED
        outcome = WriteOutcome.CREATED if self.private is None else WriteOutcome.UPDATED
        self.private = dict(data)
        self.writes.append("private")
        return outcome

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        kids = frozenset(str(entry["kid"]) for entry in keys)
        if not kids <= self.trusted:
            self.trusted = kids
            self.writes.append("trust")

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        if self.public == dict(data) and self.next_change == next_change:
            return WriteOutcome.UNCHANGED
        outcome = WriteOutcome.CREATED if self.public is None else WriteOutcome.UPDATED
        self.public = dict(data)
        self._public_written = dict(data)
        self.next_change = next_change
        self.writes.append("public")
        return outcome
