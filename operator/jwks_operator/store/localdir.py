"""A keyset's state in a local directory: the standalone counterpart of Secret + ConfigMap.

Per keyset (namespace ``ns``, name ``n``) the state directory holds two files:

- ``ns_n.keys.json``: the private half, exactly the ``keys.json`` a Secret would hold
  (every key, its lifecycle times and its private JWK); the source of truth;
- ``ns_n.public.json``: the last public documents written (``{"data": {...},
  "nextChange": ...}``), so that a restart after a lost ``keys.json`` still knows which
  public keys verifiers may hold, as the operator does with its ConfigMap.

Namespaces and names are RFC 1123 (no ``_``), so ``ns_n`` names exactly one keyset, and
the two suffixes cannot collide. Every write goes to a temporary file in the same
directory, is fsynced, renamed over the target and the directory fsynced: a crash leaves
either the old or the new file, never a mix, which is what makes ``reconcile``'s
"private before public" ordering hold on disk. Files are created 0600 and the directory
is expected to be 0700 (checked by ``standalone.statedir``).

Publication to readers (the server's in-memory snapshot, the ``--publish-dir`` files) is
not the store's business: it calls ``on_public`` after the public record is safe.
"""

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from jwks_operator.core.contract import SECRET_KEYS
from jwks_operator.core.timefmt import format_time
from jwks_operator.store.base import StoredDocuments, WriteOutcome

PRIVATE_SUFFIX: Final = ".keys.json"
PUBLIC_SUFFIX: Final = ".public.json"
TEMP_SUFFIX: Final = ".tmp"
PRIVATE_MODE: Final = 0o600

PublicSink = Callable[[Mapping[str, str], datetime | None], Awaitable[bool]]
"""Publishes a keyset's public documents to readers; returns True if anything changed."""


def private_path(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / f"{namespace}_{name}{PRIVATE_SUFFIX}"


def public_path(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / f"{namespace}_{name}{PUBLIC_SUFFIX}"


def atomic_write(path: Path, content: bytes, mode: int = PRIVATE_MODE) -> None:
    """Replace ``path`` with ``content`` so that readers see the old or the new file, whole.

    The temporary file is created in the target directory (a rename is atomic only within
    one filesystem), gets its final mode before any byte is written, and is fsynced before
    the rename; the directory is fsynced after it so the rename itself survives a crash.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temporary files a killed writer left behind; only call while holding the lock."""
    removed = 0
    for candidate in directory.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed += 1
    return removed


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class LocalDirStore:
    """``KeySetStore`` over two files in a state directory; see the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        namespace: str,
        name: str,
        on_public: PublicSink | None = None,
    ) -> None:
        self.private_file = private_path(state_dir, namespace, name)
        self.public_file = public_path(state_dir, namespace, name)
        self._on_public = on_public

    async def read(self) -> StoredDocuments:
        return await asyncio.to_thread(self._read)

    def _read(self) -> StoredDocuments:
        private = _read_text(self.private_file)
        public_data, intact = self._read_public()
        return StoredDocuments(private_state=private, public_data=public_data, public_intact=intact)

    def _read_public(self) -> tuple[dict[str, str] | None, bool]:
        text = _read_text(self.public_file)
        if text is None:
            return None, True
        try:
            record = json.loads(text)
            data = record["data"]
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                raise TypeError("data")
        except (ValueError, KeyError, TypeError):
            # A damaged record is rewritten from the private state by this reconcile.
            return None, False
        return data, True

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        # Only keys.json is stored: the signing.* entries of a Secret are derived from it.
        return await asyncio.to_thread(self._write_if_changed, self.private_file, data[SECRET_KEYS])

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        """Nothing to do: standalone mode's server is fed by this process, not a watch."""

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        record = json.dumps(
            {
                "data": dict(sorted(data.items())),
                "nextChange": format_time(next_change) if next_change else None,
            },
            indent=1,
        )
        outcome = await asyncio.to_thread(self._write_if_changed, self.public_file, record)
        if self._on_public is not None:
            # Readers are fed on every reconcile, not only on change: after a restart the
            # in-memory snapshot is empty while the record on disk is already current.
            published = await self._on_public(data, next_change)
            if published and outcome is WriteOutcome.UNCHANGED:
                outcome = WriteOutcome.UPDATED
        return outcome

    def _write_if_changed(self, path: Path, text: str) -> WriteOutcome:
        current = _read_text(path)
        if current == text:
            return WriteOutcome.UNCHANGED
        atomic_write(path, text.encode("utf-8"))
        return WriteOutcome.CREATED if current is None else WriteOutcome.UPDATED

    def delete(self) -> None:
        """Remove both files (deletionPolicy Delete); the private one last."""
        for path in (self.public_file, self.private_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        fsync_directory(self.private_file.parent)
