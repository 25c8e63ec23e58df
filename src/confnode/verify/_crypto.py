"""ECDSA P-256 / SHA-256 over SGX's raw encodings (``r ‖ s`` signatures, ``x ‖ y`` keys)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["key_point", "load_raw_key", "verify_raw_signature"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_CURVE = ec.SECP256R1()


def load_raw_key(xy: bytes) -> ec.EllipticCurvePublicKey | None:
    """The P-256 key for a raw 64-byte ``x ‖ y``, or ``None`` when it is not a curve point."""
    if len(xy) != 64:
        return None
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, b"\x04" + xy)
    except ValueError:
        return None


def key_point(key: object) -> bytes:
    """Uncompressed SEC1 encoding of an EC public key (``b""`` for any other key type)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return b""


def verify_raw_signature(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """True when the 64-byte big-endian ``r ‖ s`` is a valid ECDSA-SHA256 signature of data."""
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if r == 0 or s == 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True
