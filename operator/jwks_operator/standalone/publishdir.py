"""``--publish-dir``: the public documents as static files, for nginx or any file server.

Layout: ``<dir>/<namespace>/<name>/jwks.json`` and, when the keyset has an issuer,
``<dir>/<namespace>/<name>/openid-configuration``; the same paths as the server's routes
minus ``.well-known``, so one ``location`` block maps them. Each file is replaced by an
atomic rename: nginx opens either the old inode or the new one, never a file being
written. Files are world-readable (0644, directories 0755): they are public by nature,
and the web server usually runs as another user. Every JWKS passes the guard again on
its way to disk.
"""

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from jwks_operator.core.contract import CONFIGMAP_JWKS, CONFIGMAP_OPENID
from jwks_operator.core.guard import parse_public_jwks
from jwks_operator.store.localdir import atomic_write, remove_stale_temp_files

PUBLISHED_FILES: Final = (CONFIGMAP_JWKS, CONFIGMAP_OPENID)
FILE_MODE: Final = 0o644
DIR_MODE: Final = 0o755


class PublishDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def keyset_dir(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name

    def write(self, namespace: str, name: str, data: Mapping[str, str]) -> bool:
        """Bring the keyset's files in line with ``data``; True if any file changed."""
        directory = self.keyset_dir(namespace, name)
        self.root.mkdir(parents=True, exist_ok=True)  # it may have been removed meanwhile
        for level in (directory.parent, directory):
            if not level.is_dir():
                level.mkdir(mode=DIR_MODE, exist_ok=True)
                os.chmod(level, DIR_MODE)
        remove_stale_temp_files(directory)
        if CONFIGMAP_JWKS in data:
            parse_public_jwks(data[CONFIGMAP_JWKS])  # raises UnsafeJwksError: nothing written
        changed = False
        for filename in PUBLISHED_FILES:
            path = directory / filename
            content = data.get(filename)
            if content is None:
                if path.exists():
                    path.unlink()
                    changed = True
                continue
            encoded = content.encode("utf-8")
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if current != encoded:
                atomic_write(path, encoded, FILE_MODE)
                changed = True
        return changed

    def remove(self, namespace: str, name: str) -> None:
        """Withdraw a keyset that left the config (its files would otherwise be served)."""
        directory = self.keyset_dir(namespace, name)
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            directory.parent.rmdir()  # only succeeds when no other keyset is left in it
