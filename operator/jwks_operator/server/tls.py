"""TLS from PEM files that are reloaded when they change (cert-manager rotates them in place).

A JWKS fetched over plain HTTP can be replaced by anyone who can answer for the Service's
address, so the server can serve https from a certificate and key mounted from a Secret.
cert-manager renews that Secret, and the kubelet swaps the mounted files; the server
notices (one ``stat`` of each file per second), loads the new pair into the *same*
``SSLContext`` and every handshake after that presents the new certificate. Open
connections keep the session they have: nothing is dropped. A pair that does not load (a
key that does not match, a half-written file) is logged and the previous one kept; the
next change is tried again.

``load_context(files)`` raises ``TlsError`` with a message naming the file and the
problem, for the commands to turn into exit status 2 before anything is started.
"""

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class TlsError(ValueError):
    """A certificate or key file that cannot be served (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_file: Path
    key_file: Path


def load_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context holding the pair; raise TlsError when it does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, files)
    return context


def _load(context: ssl.SSLContext, files: TlsFiles) -> None:
    for label, path in (("certificate", files.cert_file), ("key", files.key_file)):
        if not path.is_file():
            raise TlsError(f"TLS {label} file {path} does not exist or is not a file")
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as error:
        reason = error.reason or error.strerror or "unreadable"
        if "KEY_VALUES_MISMATCH" in str(error):
            raise TlsError(
                f"TLS key file {files.key_file} does not match the certificate in {files.cert_file}"
            ) from None
        raise TlsError(
            f"TLS certificate {files.cert_file} or key {files.key_file} cannot be loaded "
            f"({reason}): both must be PEM, the key unencrypted"
        ) from None
    except OSError as error:
        raise TlsError(f"TLS files cannot be read: {error.strerror} ({error.filename})") from None


def _signature(files: TlsFiles) -> tuple[tuple[int, int, int], ...] | None:
    try:
        stats = [os.stat(path) for path in (files.cert_file, files.key_file)]
    except OSError:
        return None
    return tuple((info.st_mtime_ns, info.st_size, info.st_ino) for info in stats)


class CertificateReloader:
    """Keeps ``context`` holding the files' current pair; ``check()`` once a second."""

    def __init__(self, context: ssl.SSLContext, files: TlsFiles) -> None:
        self.context = context
        self.files = files
        self.reloads = 0
        self._seen = _signature(files)

    def check(self) -> bool:
        """Reload if the files changed since the last look; True when a new pair is in."""
        seen = _signature(self.files)
        if seen is None or seen == self._seen:
            return False
        self._seen = seen
        try:
            # A failed load_cert_chain can leave a context with the new certificate and the
            # old key; so the pair must load into a scratch context before the live one.
            load_context(self.files)
            _load(self.context, self.files)
        except TlsError as error:
            logger.warning(
                "TLS files changed but were not loaded (%s); keeping the previous", error
            )
            return False
        self.reloads += 1
        logger.info("TLS certificate reloaded from %s", self.files.cert_file)
        return True
