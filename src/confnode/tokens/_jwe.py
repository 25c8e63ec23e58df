"""Key wrapping for release: a JWE to the enclave's public key (RSA-OAEP-256 or ECDH-ES)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from confnode.errors import InvalidInput

#: Content encryption for every wrapped key.
CONTENT_ENCRYPTION = "A256GCM"
_EC_CURVES = ("P-256", "P-384", "P-521")


def wrap_algorithm(jwk: Mapping[str, Any]) -> str:
    """The key-management algorithm we use for an enclave key of this type."""
    kty = jwk.get("kty")
    if kty == "RSA":
        return "RSA-OAEP-256"
    if kty == "EC" and jwk.get("crv") in _EC_CURVES:
        return "ECDH-ES"
    raise InvalidInput(
        f"enclave key type {kty!r} (crv {jwk.get('crv')!r}) cannot receive a key; "
        f"expected RSA or EC {'/'.join(_EC_CURVES)}"
    )


def wrap_for_enclave(
    plaintext: bytes, enclave_jwk: Mapping[str, Any], *, kid: str | None = None
) -> str:
    """Encrypt ``plaintext`` to ``enclave_jwk`` (public) as a compact JWE."""
    alg = wrap_algorithm(enclave_jwk)
    public = {k: v for k, v in enclave_jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    public.pop("key_ops", None)
    public.pop("use", None)
    if alg.startswith("RSA") and _modulus_bits(public.get("n")) < 2048:
        raise InvalidInput("enclave RSA key must be at least 2048 bits")
    try:
        key: RSAKey | ECKey = (
            RSAKey.import_key(public) if alg.startswith("RSA") else ECKey.import_key(public)
        )
        header: dict[str, Any] = {"alg": alg, "enc": CONTENT_ENCRYPTION}
        if kid:
            header["kid"] = kid
        return jwe.encrypt_compact(header, plaintext, key, algorithms=[alg, CONTENT_ENCRYPTION])
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidInput(f"enclave public key is not usable: {error}") from error


def _modulus_bits(n: Any) -> int:
    """Bit length of a JWK ``n`` (checked before import: joserfc only warns on small keys)."""
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def unwrap(token: str, private_jwk: RSAKey | ECKey) -> bytes:
    """Decrypt a JWE made by :func:`wrap_for_enclave` (what the enclave does with its key)."""
    alg = "RSA-OAEP-256" if isinstance(private_jwk, RSAKey) else "ECDH-ES"
    try:
        obj = jwe.decrypt_compact(token, private_jwk, algorithms=[alg, CONTENT_ENCRYPTION])
    except (JoseError, ValueError) as error:
        raise InvalidInput(f"cannot decrypt wrapped key: {error}") from error
    assert obj.plaintext is not None
    return obj.plaintext
