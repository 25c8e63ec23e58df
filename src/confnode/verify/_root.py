"""The trust anchor: Intel SGX Root CA, pinned by its public key.

Pinned by key, not by certificate bytes: Intel has re-issued the root certificate with the same key
(2020-era quotes embed the 2018–2033 issuance, current ones the 2018–2049 issuance), and QvE pins
the same 65-byte key (``INTEL_ROOT_PUB_KEY`` in ``qve.cpp``).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from confnode.errors import InvalidInput

__all__ = ["INTEL_SGX_ROOT_CA_PUBLIC_KEY", "root_key_from_certificate"]

#: Uncompressed P-256 point (``04 ‖ x ‖ y``) of the production Intel SGX Root CA.
INTEL_SGX_ROOT_CA_PUBLIC_KEY = bytes.fromhex(
    "04"
    "0ba9c4c0c0c86193a3fe23d6b02cda10a8bbd4e88e48b4458561a36e705525f5"
    "67918e2edc88e40d860bd0cc4ee26aacc988e505a953558c453f6b0904ae7394"
)


def root_key_from_certificate(der: bytes) -> bytes:
    """The uncompressed P-256 public key of an alternative root given as a DER certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise InvalidInput(
            f"trusted root is not a DER X.509 certificate ({exc}); expected the root CA in DER"
        ) from exc
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidInput(
            f"trusted root key is {type(key).__name__}; expected an ECDSA P-256 key as Intel's"
        )
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
