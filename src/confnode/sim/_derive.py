"""Deterministic derivation of every simulated secret from one seed.

A simulated platform must keep its identity across restarts and tests must be reproducible, so
nothing here uses randomness: each key, serial number and platform secret is an HMAC-SHA256
expansion of the seed under a distinct label.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric import ec

# Order of the NIST P-256 group.
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_DOMAIN = b"confnode-sim/v1/"


def seed_bytes(seed: bytes | str) -> bytes:
    """Normalise a seed: text seeds are their UTF-8 bytes."""
    return seed.encode("utf-8") if isinstance(seed, str) else bytes(seed)


def expand(seed: bytes, label: str, length: int) -> bytes:
    """HKDF-style expansion: ``length`` pseudo-random bytes bound to ``label``."""
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(
            seed, block + _DOMAIN + label.encode() + bytes([counter]), hashlib.sha256
        ).digest()
        out += block
        counter += 1
    return out[:length]


def private_key(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key whose scalar is 48 derived bytes reduced into [1, n-1] (negligible bias)."""
    scalar = int.from_bytes(expand(seed, "key/" + label, 48), "big") % (_P256_N - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def serial_number(seed: bytes, label: str) -> int:
    """A positive 20-byte certificate serial number, as Intel's PKI uses."""
    raw = bytearray(expand(seed, "serial/" + label, 20))
    raw[0] = (raw[0] & 0x7F) | 0x01  # positive and exactly 20 bytes in DER
    return int.from_bytes(raw, "big")
