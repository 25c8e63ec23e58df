"""Attestation tokens and key wrapping (joserfc).

* :class:`KeyDirectory` keeps the RS256 signing key (generated on first start when absent) and
  its self-signed certificate; :meth:`KeyDirectory.rotate` keeps the previous key in the JWKS
  until the tokens it signed have expired.
* :class:`TokenIssuer` signs tokens (``jku``, ``kid``, ``x5c``) or builds unsigned draft tokens.
* :func:`validate_token` pins RS256 and rejects ``alg: none`` and HMAC tokens.
* :func:`wrap_for_enclave` / :func:`unwrap`: JWE (RSA-OAEP-256 or ECDH-ES, A256GCM) to an
  enclave's public key, for key release.
"""

from __future__ import annotations

from confnode.tokens._jwe import CONTENT_ENCRYPTION, unwrap, wrap_algorithm, wrap_for_enclave
from confnode.tokens._jwt import (
    DEFAULT_LIFETIME,
    TOKEN_ALGORITHM,
    TokenIssuer,
    TokenValidationError,
    token_header,
    validate_token,
)
from confnode.tokens._keys import (
    KeyDirectory,
    KeyRing,
    ReloadingKeyRing,
    RetiredKey,
    SigningKey,
    generate_signing_key,
    kid_of,
    public_jwk_of,
    self_signed_certificate,
    write_file_atomically,
)

__all__ = [
    "CONTENT_ENCRYPTION",
    "DEFAULT_LIFETIME",
    "TOKEN_ALGORITHM",
    "KeyDirectory",
    "KeyRing",
    "ReloadingKeyRing",
    "RetiredKey",
    "SigningKey",
    "TokenIssuer",
    "TokenValidationError",
    "generate_signing_key",
    "kid_of",
    "public_jwk_of",
    "self_signed_certificate",
    "token_header",
    "unwrap",
    "validate_token",
    "wrap_algorithm",
    "wrap_for_enclave",
    "write_file_atomically",
]
