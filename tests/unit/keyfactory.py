"""Real keys for planner tests, cheap enough for thousands of Hypothesis examples.

EC and Ed25519 keys cost microseconds, so they are made fresh. RSA keys cost tens of
milliseconds, so they come from a pool generated once per process; each factory hands out
pool entries in order, so kids stay unique within one test while the pool is reused
across tests. Nothing here fakes a key: every JWK is a real, verifiable public key.
"""

from jwks_operator.core.algorithms import is_rsa
from jwks_operator.core.keys import (
    KeyMaterial,
    PrivateKey,
    generate_private_key,
    material_from_private_key,
)

_RSA_POOL: dict[int, list[PrivateKey]] = {}


class PooledKeyFactory:
    def __init__(self) -> None:
        self._taken: dict[int, int] = {}
        self.made: list[KeyMaterial] = []

    def __call__(self, algorithm: str, key_size: int | None) -> KeyMaterial:
        if is_rsa(algorithm):
            assert key_size is not None
            pool = _RSA_POOL.setdefault(key_size, [])
            index = self._taken.get(key_size, 0)
            while len(pool) <= index:
                pool.append(generate_private_key(algorithm, key_size))
            self._taken[key_size] = index + 1
            material = material_from_private_key(pool[index], algorithm, key_size)
        else:
            material = material_from_private_key(
                generate_private_key(algorithm, key_size), algorithm, key_size
            )
        self.made.append(material)
        return material
