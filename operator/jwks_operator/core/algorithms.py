"""The signing algorithms a keyset may use, and what each one needs from a key.

One table drives spec validation, key generation, the CRD's enums and the verifier's
allow-list, so adding an algorithm is a one-line change that cannot be half-made.
"""

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class AlgorithmInfo:
    name: str
    kty: str  # RSA, EC or OKP
    curve: str | None  # crv for EC/OKP keys
    hash_bits: int


RSA_KEY_SIZES: Final = (2048, 3072, 4096)
DEFAULT_RSA_KEY_SIZE: Final = 2048

ALGORITHMS: Final[dict[str, AlgorithmInfo]] = {
    info.name: info
    for info in (
        AlgorithmInfo("RS256", "RSA", None, 256),
        AlgorithmInfo("RS384", "RSA", None, 384),
        AlgorithmInfo("RS512", "RSA", None, 512),
        AlgorithmInfo("PS256", "RSA", None, 256),
        AlgorithmInfo("PS384", "RSA", None, 384),
        AlgorithmInfo("PS512", "RSA", None, 512),
        AlgorithmInfo("ES256", "EC", "P-256", 256),
        AlgorithmInfo("ES384", "EC", "P-384", 384),
        AlgorithmInfo("ES512", "EC", "P-521", 512),
        AlgorithmInfo("EdDSA", "OKP", "Ed25519", 512),
    )
}
ALGORITHM_NAMES: Final = tuple(ALGORITHMS)


def is_rsa(algorithm: str) -> bool:
    return ALGORITHMS[algorithm].kty == "RSA"
