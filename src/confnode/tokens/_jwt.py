"""Attestation tokens: RS256 issuance, unsigned draft tokens, pinned-algorithm validation."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from confnode.errors import InvalidInput, VerificationError
from confnode.tokens._keys import KeyRing

#: The only algorithm our tokens use and the only one validation accepts.
TOKEN_ALGORITHM = "RS256"
#: MAA's sample token lifetime (exp - iat).
DEFAULT_LIFETIME = timedelta(hours=8)


def _registry() -> JWSRegistry:
    """RS256 only; room for an ``x5c`` header (joserfc's default header limit is 512 bytes)."""
    registry = JWSRegistry(algorithms=[TOKEN_ALGORITHM])
    registry.max_header_length = 8192
    return registry


_REGISTRY = _registry()


class _StandardJson(json.JSONEncoder):
    """Refuses NaN and Infinity (not JSON, RFC 8259 §6), which ``json`` emits by default."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["allow_nan"] = False
        super().__init__(**kwargs)


def _not_standard_json(error: ValueError) -> InvalidInput:
    # Inputs are checked on arrival; reaching this means a claim slipped past that check.
    return InvalidInput(f"token claims are not standard JSON, refusing to sign them: {error}")


class TokenValidationError(VerificationError):
    """A token that is malformed, wrongly signed, from another issuer or outside its lifetime."""

    step = "token"


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """Signs attestation tokens for one service URL (``iss``; ``jku`` is ``<iss>/certs``)."""

    ring: KeyRing
    issuer: str
    lifetime: timedelta = DEFAULT_LIFETIME

    @property
    def jku(self) -> str:
        return f"{self.issuer.rstrip('/')}/certs"

    def registered_claims(self, now: datetime) -> dict[str, Any]:
        iat = int(now.timestamp())
        return {
            "iss": self.issuer,
            "iat": iat,
            "nbf": iat,
            "exp": iat + int(self.lifetime.total_seconds()),
            "jti": uuid.uuid4().hex,
        }

    def sign(self, claims: Mapping[str, Any], now: datetime) -> str:
        """An RS256 JWT over ``claims`` plus ``iss``/``iat``/``nbf``/``exp``/``jti``."""
        key = self.ring.current
        header = {
            "alg": TOKEN_ALGORITHM,
            "jku": self.jku,
            "kid": key.kid,
            "x5c": key.x5c,
            "typ": "JWT",
        }
        body = {**claims, **self.registered_claims(now)}
        try:  # a lone surrogate fails UTF-8 encoding, NaN/Infinity the encoder
            return jwt.encode(header, body, key.jwk, registry=_REGISTRY, encoder_cls=_StandardJson)
        except ValueError as error:
            raise _not_standard_json(error) from error

    def unsigned(self, claims: Mapping[str, Any], now: datetime) -> str:
        """An unsecured JWT (``alg: none``), as MAA returns for draft-policy attestation."""
        body = {**claims, **self.registered_claims(now)}
        try:
            encoded = _b64url_json(body)
        except ValueError as error:
            raise _not_standard_json(error) from error
        return ".".join((_b64url_json({"alg": "none", "typ": "JWT"}), encoded, ""))


def _b64url_json(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def token_header(token: str) -> dict[str, Any]:
    """The decoded (unverified) JOSE header of a compact token."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, RecursionError) as error:  # RecursionError: nesting too deep
        raise TokenValidationError(f"token header is not base64url JSON: {error}") from error
    if not isinstance(header, dict):
        raise TokenValidationError("token header is not a JSON object")
    return header


def validate_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str | tuple[str, ...],
    now: datetime,
    leeway: timedelta = timedelta(seconds=60),
) -> dict[str, Any]:
    """Verify an attestation token against a JWKS and return its claims.

    The algorithm is pinned to RS256 before any key is looked at, so ``alg: none`` and HMAC
    tokens (e.g. HS256 "signed" with the public key) are rejected outright. ``issuer`` is the
    expected ``iss``, or a tuple of acceptable ones.
    """
    if token.count(".") != 2:
        raise TokenValidationError(
            "token is not a compact JWS (expected three dot-separated parts)"
        )
    header = token_header(token)
    alg = header.get("alg")
    if alg != TOKEN_ALGORITHM:
        raise TokenValidationError(
            f"token algorithm is {alg!r}, only {TOKEN_ALGORITHM} is accepted"
        )
    if "crit" in header:
        # RFC 7515 §4.1.11: extensions listed as critical must be understood; we know none.
        raise TokenValidationError(
            f"token header lists critical extensions {header['crit']!r}; none are supported"
        )
    kid = header.get("kid")
    known = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not known:
        raise TokenValidationError(f"token key id {kid!r} is not in the service's key set")
    try:
        keys = KeySet.import_key_set({"keys": known})
        decoded = jwt.decode(token, keys, registry=_REGISTRY)
    except (JoseError, ValueError, RecursionError) as error:
        raise TokenValidationError(f"token signature does not verify: {error}") from error
    claims = decoded.claims
    accepted = (issuer,) if isinstance(issuer, str) else issuer
    if claims.get("iss") not in accepted:
        expected = " or ".join(repr(i) for i in accepted)
        raise TokenValidationError(f"token issuer is {claims.get('iss')!r}, expected {expected}")
    stamp = now.timestamp()
    slack = leeway.total_seconds()
    for name in ("exp", "nbf", "iat"):
        if not isinstance(claims.get(name), int | float):
            raise TokenValidationError(f"token has no numeric {name!r} claim")
    if claims["exp"] + slack < stamp:
        raise TokenValidationError(
            f"token expired at {datetime.fromtimestamp(claims['exp'], UTC).isoformat()}"
            f" (now {now.isoformat()})"
        )
    if claims["nbf"] - slack > stamp:
        raise TokenValidationError(f"token not valid before nbf={claims['nbf']} (now {stamp:.0f})")
    return dict(claims)
