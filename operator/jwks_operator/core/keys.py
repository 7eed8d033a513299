"""Signing keys: generation, JWK export, RFC 7638 thumbprints, and loading stored keys.

Every JWK the project writes or reads goes through jwcrypto: ``JWK.from_pyca`` exports a
generated key, ``JWK(**members)`` imports a stored or published one (with jwcrypto's checks
of kty, curve and members), and ``JWK.thumbprint`` is the RFC 7638 kid. What this module
adds is the project's contract on top: the exact set of public members that is published
(``kty`` and the key's numbers, then ``kid``, ``use``, ``alg``), which the leak guard relies
on, and the check that a stored private key's public half is the one its kid names.
``KeyMaterial`` hides its private half from ``repr`` so that a key object logged by mistake
shows no secret.
"""

import asyncio
import base64
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk
from jwcrypto.common import JWException

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.guard import check_public_jwk

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
PUBLIC_MEMBERS: Final = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
"""The key numbers of each published kty; with ``kty`` they are what RFC 7638 hashes."""
_LOADED_MAX: Final = 1024


class KeyLoadError(ValueError):
    """A stored private JWK that cannot be turned back into a usable key."""


@dataclass(frozen=True)
class KeyMaterial:
    """One key pair as the project stores it: the private JWK is the single source."""

    kid: str
    algorithm: str
    key_size: int | None
    public_jwk: Mapping[str, Any]
    private_jwk: Mapping[str, Any] = field(repr=False)

    @property
    def params(self) -> tuple[str, int | None]:
        return (self.algorithm, self.key_size)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise KeyLoadError("JWK member is not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise KeyLoadError("JWK member is not base64url") from None


def import_jwk(members: Mapping[str, Any]) -> jwk.JWK:
    """A jwcrypto JWK from JSON members, with jwcrypto's validation; ValueError if refused.

    The error names the exception class only: jwcrypto's messages may quote member values.
    """
    try:
        return jwk.JWK(**dict(members))
    except (JWException, TypeError, ValueError, KeyError) as error:
        raise ValueError(f"not a usable JWK ({error.__class__.__name__})") from None


def thumbprint(members: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: the kid, so that a kid always names exactly one key.

    Only the required members take part, so extra ones (kid, use, alg) do not change it.
    """
    kty = members.get("kty")
    required = PUBLIC_MEMBERS.get(kty, ()) if isinstance(kty, str) else ()
    public = {name: members[name] for name in ("kty", *required) if name in members}
    return str(import_jwk(public).thumbprint())


def _public_members(key: jwk.JWK) -> dict[str, Any]:
    exported = key.export_public(as_dict=True)
    kty = exported["kty"]
    return {"kty": kty, **{name: exported[name] for name in PUBLIC_MEMBERS[kty]}}


def material_from_private_key(key: PrivateKey, algorithm: str, key_size: int | None) -> KeyMaterial:
    ALGORITHMS[algorithm]  # KeyError for an unknown algorithm, before any export
    exported = jwk.JWK.from_pyca(key)
    public_members = _public_members(exported)
    kid = str(exported.thumbprint())
    public_jwk = {**public_members, "kid": kid, "use": "sig", "alg": algorithm}
    check_public_jwk(public_jwk)
    private = exported.export_private(as_dict=True)
    secret = {name: value for name, value in private.items() if name not in public_jwk}
    private_jwk = {**public_jwk, **secret}
    # The exported JWK signs as it is (the token header carries kid and alg). Its key came
    # from OpenSSL itself, so jwcrypto need not repeat the ~60 ms RSA consistency check.
    exported.unsafe_skip_rsa_key_validation = True
    _remember(_identity(private_jwk), _Loaded(key, exported))
    return KeyMaterial(
        kid=kid,
        algorithm=algorithm,
        key_size=key_size,
        public_jwk=MappingProxyType(public_jwk),
        private_jwk=MappingProxyType(private_jwk),
    )


def generate_private_key(algorithm: str, key_size: int | None) -> PrivateKey:
    info = ALGORITHMS[algorithm]
    if info.kty == "RSA":
        if key_size is None:
            raise ValueError(f"{algorithm} needs a key size")
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if info.kty == "EC":
        assert info.curve is not None
        return ec.generate_private_key(_CURVES[info.curve]())
    return ed25519.Ed25519PrivateKey.generate()


def generate_key(algorithm: str, key_size: int | None) -> KeyMaterial:
    """A fresh key pair (CPU-bound: up to a second for RSA-4096; call it off the loop)."""
    return material_from_private_key(generate_private_key(algorithm, key_size), algorithm, key_size)


async def generate_key_async(algorithm: str, key_size: int | None) -> KeyMaterial:
    """Generate in a worker thread: OpenSSL releases the GIL, so the loop keeps serving."""
    return await asyncio.to_thread(generate_key, algorithm, key_size)


@dataclass(frozen=True, slots=True)
class _Loaded:
    private_key: PrivateKey
    signer: jwk.JWK


_Identity = tuple[tuple[str, str], ...]
_LOADED: "OrderedDict[_Identity, _Loaded]" = OrderedDict()
_LOADED_LOCK = threading.Lock()
"""Keys already checked in this process, by their stored JWK. The RSA consistency check costs
~60 ms per key and the operator loads every stored key on every reconciliation (parsing
keys.json, writing signing.pem, signing tokens); a key made here needs no check at all. An
edited key is a different JWK and is checked again. Keys are generated in worker threads,
hence the lock."""


def _identity(private_jwk: Mapping[str, Any]) -> _Identity:
    try:
        return tuple(sorted((k, v) for k, v in private_jwk.items() if isinstance(v, str)))
    except TypeError:
        raise KeyLoadError("private JWK is malformed (TypeError)") from None


_MATERIALS: "OrderedDict[tuple[_Identity, str, int | None], KeyMaterial]" = OrderedDict()
"""Stored JWK -> its KeyMaterial: jwcrypto's export costs ~0.2-0.4 ms a key, and every
reconciliation parses every stored key. KeyMaterial is immutable, so it is shared."""


_CHECKED: "OrderedDict[bytes, None]" = OrderedDict()
_CHECKED_MAX: Final = 262_144
"""Digests of the stored keys already checked in full in this process. ``_LOADED`` keeps
the loaded objects of the last 1,024 keys only (they weigh kilobytes each); at thousands
of RSA keysets (three keys each) it cannot hold them all, and every reconciliation would
pay the RSA check again (~50 ms a key: 150 ms per RS256 keyset per resync). A digest is
32 bytes: a key whose exact members passed the check once is imported again without it."""


def _digest(identity: _Identity) -> bytes:
    return hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).digest()


def _remember(identity: _Identity, loaded: _Loaded) -> None:
    _bounded_put(_LOADED, identity, loaded)
    with _LOADED_LOCK:
        _CHECKED[_digest(identity)] = None
        while len(_CHECKED) > _CHECKED_MAX:
            _CHECKED.popitem(last=False)


def _checked(identity: _Identity) -> bool:
    with _LOADED_LOCK:
        return _digest(identity) in _CHECKED


def _bounded_put(memo: "OrderedDict[Any, Any]", key: object, value: object) -> None:
    with _LOADED_LOCK:
        memo[key] = value
        memo.move_to_end(key)
        while len(memo) > _LOADED_MAX:
            memo.popitem(last=False)


def _loaded(private_jwk: Mapping[str, Any]) -> _Loaded:
    identity = _identity(private_jwk)
    with _LOADED_LOCK:
        known = _LOADED.get(identity)
    if known is not None:
        return known
    loaded = _load(dict(identity), checked=_checked(identity))
    _remember(identity, loaded)
    return loaded


def _load(private_jwk: dict[str, str], *, checked: bool = False) -> _Loaded:
    """Import with jwcrypto (full RSA check unless these exact members passed it in this
    process: ``checked``), and check the public half is the stored one."""
    kty = private_jwk.get("kty")
    if kty not in PUBLIC_MEMBERS:
        raise KeyLoadError("private JWK has an unsupported kty/crv")
    if kty == "OKP" and private_jwk.get("crv") != "Ed25519":
        raise KeyLoadError("private JWK has an unsupported kty/crv")
    try:
        signer = import_jwk(private_jwk)  # a stored key: jwcrypto checks it in full
        signer.unsafe_skip_rsa_key_validation = checked
        if not signer.has_private:
            raise KeyLoadError("private JWK has no private part")
        key = signer.get_op_key("sign", private_jwk.get("crv"))
        derived = jwk.JWK.from_pyca(key.public_key())
    except KeyLoadError:
        raise
    except (JWException, KeyError, TypeError, ValueError) as error:
        # Never include the exception text: it may quote key material.
        raise KeyLoadError(f"private JWK is malformed ({error.__class__.__name__})") from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise KeyLoadError("private JWK has an unsupported kty/crv")
    if _public_members(derived) != _public_members(signer):
        raise KeyLoadError(f"{kty} private key does not match its public key")
    return _Loaded(key, signer)


def load_private_key(private_jwk: Mapping[str, Any]) -> PrivateKey:
    """Rebuild a private key from its stored JWK, checking it is internally consistent."""
    return _loaded(private_jwk).private_key


def signing_jwk(material: KeyMaterial) -> jwk.JWK:
    """The jwcrypto JWK that signs with ``material`` (checked once per process)."""
    return _loaded(material.private_jwk).signer


def load_material(
    private_jwk: Mapping[str, Any], algorithm: str, key_size: int | None
) -> KeyMaterial:
    """Stored JWK -> KeyMaterial, re-deriving the public half and kid from the private key."""
    if algorithm not in ALGORITHMS:
        raise KeyLoadError(f"unsupported algorithm {algorithm!r}")
    if ALGORITHMS[algorithm].kty != private_jwk.get("kty"):
        raise KeyLoadError(f"key type {private_jwk.get('kty')!r} does not fit {algorithm}")
    memo_key = (_identity(private_jwk), algorithm, key_size)
    with _LOADED_LOCK:
        known = _MATERIALS.get(memo_key)
    if known is not None:
        return known
    material = material_from_private_key(load_private_key(private_jwk), algorithm, key_size)
    _bounded_put(_MATERIALS, memo_key, material)
    return material


def private_key_pem(material: KeyMaterial) -> str:
    """PKCS#8 PEM of the private key, for services that mount ``signing.pem``.

    ``material`` was checked when keys.json was parsed, or was just generated: either way
    the key is remembered, so the costly RSA check is not repeated.
    """
    key = load_private_key(material.private_jwk)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
