"""Policy management: the uploaded policy JWS, its signer check, and where the policy lives.

Upload format (MAA): a compact JWS whose payload is ``{"AttestationPolicy": base64url(text)}``.

* ``alg: none`` is accepted only when no policy-signer certificates are configured (MAA's AAD
  mode, where the caller is authenticated otherwise).
* With signer certificates configured (MAA's isolated mode) the JWS must be RS256 or ES256 and
  carry the signing certificate (``x5c``, or ``jwk`` with ``x5c``, or a bare ``jwk``) whose
  public key is one of the configured signers'.
* HMAC algorithms are always rejected: a shared secret cannot identify a policy author.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from confnode.errors import InfrastructureError, InvalidInput, VerificationError
from confnode.policy import DEFAULT_SGX_POLICY, Policy, parse_policy, policy_hash

PolicyPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
#: azure-security-attestation 1.0 labels its RSASSA-PKCS1-v1_5/SHA-256 policy signatures "RSA256";
#: the bytes are exactly RS256, so the unmodified SDK works in isolated (signed-policy) mode.
_SDK_ALIASES: dict[Any, str] = {"RSA256": "RS256"}


class PolicyJwsError(InvalidInput):
    """A policy upload that is not a well-formed, acceptable JWS."""


class UntrustedPolicySigner(VerificationError):
    """A policy upload that is unsigned, wrongly signed, or signed by a key we do not trust."""

    step = "policy-signer"


class PolicyChangesDisabled(VerificationError):
    """A policy change on a service with no policy signer to authenticate it."""

    step = "policy-signer"


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    text: str
    parsed: Policy
    jws: str  # what GET returns under x-ms-policy
    signer: dict[str, Any] | None  # JWK of the signer, for x-ms-policy-signer
    hash: str  # x-ms-policy-hash


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(part: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as error:
        raise PolicyJwsError(f"policy JWS {what} is not base64url: {error}") from error


def unsigned_policy_jws(text: str | None) -> str:
    """The unsecured JWS MAA uses to carry a policy (or an empty body, for reset)."""
    header = _b64url(b'{"alg":"none"}')
    if text is None:
        return f"{header}.."
    payload = json.dumps({"AttestationPolicy": _b64url(text.encode())}, separators=(",", ":"))
    return f"{header}.{_b64url(payload.encode())}."


def stored(text: str, jws: str | None = None, signer: dict[str, Any] | None = None) -> StoredPolicy:
    parsed = parse_policy(text)
    return StoredPolicy(text, parsed, jws or unsigned_policy_jws(text), signer, policy_hash(text))


@dataclass(frozen=True, slots=True)
class PolicyUpload:
    text: str | None  # None for a reset request (empty payload)
    jws: str
    signer: dict[str, Any] | None


def read_policy_jws(
    body: str, *, signers: Sequence[x509.Certificate], require_policy: bool
) -> PolicyUpload:
    """Check an uploaded policy JWS against the signer rules in the module docstring."""
    jws = body.strip()
    if jws.startswith('"'):
        try:
            jws = json.loads(jws)
        except (ValueError, RecursionError) as error:
            raise PolicyJwsError(
                f"policy body is neither a JWS nor a JSON string: {error}"
            ) from error
        if not isinstance(jws, str):
            raise PolicyJwsError("policy body must be a JWS string")
    parts = jws.split(".")
    if len(parts) != 3:
        raise PolicyJwsError(
            f"policy must be a compact JWS (3 dot-separated parts), found {len(parts)} part(s)"
        )
    try:
        header = json.loads(_b64url_decode(parts[0], "header"))
    except (ValueError, RecursionError) as error:  # RecursionError: nesting too deep
        raise PolicyJwsError(f"policy JWS header is not JSON: {error}") from error
    if not isinstance(header, dict):
        raise PolicyJwsError("policy JWS header must be a JSON object")
    alg = header.get("alg")
    if isinstance(alg, str):
        alg = _SDK_ALIASES.get(alg, alg)
    signer_jwk: dict[str, Any] | None = None
    if isinstance(alg, str) and alg.upper().startswith("HS"):
        raise PolicyJwsError(
            f"policy JWS algorithm {alg} (HMAC) is never accepted; use RS256/ES256"
        )
    if alg == "none":
        if signers:
            raise UntrustedPolicySigner(
                "unsigned policy (alg none) rejected: this service only accepts policies signed "
                "by one of its configured policy signers (RS256 or ES256)"
            )
        if parts[2]:
            raise PolicyJwsError("policy JWS has alg none but carries a signature")
    elif alg in ("RS256", "ES256"):
        key, signer_jwk = _signer_key(header, alg)
        _verify(key, alg, f"{parts[0]}.{parts[1]}".encode(), _b64url_decode(parts[2], "signature"))
        if signers and not any(_same_key(key, cert.public_key()) for cert in signers):
            raise UntrustedPolicySigner(
                f"policy signed by a key that is not a configured policy signer "
                f"(kid {signer_jwk.get('kid')!r}); expected one of {len(signers)} signer(s)"
            )
    else:
        raise PolicyJwsError(f"policy JWS algorithm {alg!r} is not supported (RS256, ES256, none)")

    if not parts[1]:
        if require_policy:
            raise PolicyJwsError("policy JWS has an empty payload; expected AttestationPolicy")
        return PolicyUpload(None, jws, signer_jwk)
    try:
        payload = json.loads(_b64url_decode(parts[1], "payload"))
    except (ValueError, RecursionError) as error:
        raise PolicyJwsError(f"policy JWS payload is not JSON: {error}") from error
    encoded = payload.get("AttestationPolicy") if isinstance(payload, dict) else None
    if not isinstance(encoded, str):
        if require_policy:
            raise PolicyJwsError("policy JWS payload has no AttestationPolicy member")
        return PolicyUpload(None, jws, signer_jwk)
    try:
        text = _b64url_decode(encoded, "AttestationPolicy").decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyJwsError(f"AttestationPolicy is not UTF-8 text: {error}") from error
    return PolicyUpload(text, jws, signer_jwk)


def _signer_key(header: dict[str, Any], alg: str) -> tuple[PolicyPublicKey, dict[str, Any]]:
    jwk = header.get("jwk") if isinstance(header.get("jwk"), dict) else None
    x5c = header.get("x5c") or (jwk or {}).get("x5c")
    key: Any
    if isinstance(x5c, list) and x5c and isinstance(x5c[0], str):
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0]))
        except (binascii.Error, ValueError) as error:
            raise PolicyJwsError(f"policy JWS x5c[0] is not a DER certificate: {error}") from error
        key = cert.public_key()
    elif jwk is not None and jwk.get("kty") in ("RSA", "EC"):
        try:
            imported = RSAKey.import_key(jwk) if jwk["kty"] == "RSA" else ECKey.import_key(jwk)
        except (JoseError, ValueError, TypeError) as error:
            raise PolicyJwsError(f"policy JWS jwk is not a usable key: {error}") from error
        key = imported.public_key
    else:
        raise PolicyJwsError("signed policy JWS carries no signer (x5c or jwk in its header)")
    wanted = rsa.RSAPublicKey if alg == "RS256" else ec.EllipticCurvePublicKey
    if not isinstance(key, wanted):
        raise PolicyJwsError(f"policy JWS signer key type does not match algorithm {alg}")
    public = RSAKey.import_key(key) if isinstance(key, rsa.RSAPublicKey) else ECKey.import_key(key)
    signer = dict(public.as_dict(private=False))
    signer["kid"] = public.thumbprint()
    if isinstance(x5c, list):
        signer["x5c"] = x5c
    return key, signer


def _verify(key: PolicyPublicKey, alg: str, signed: bytes, signature: bytes) -> None:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            if len(signature) != 64:
                raise UntrustedPolicySigner("ES256 policy signature must be 64 bytes (r||s)")
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise UntrustedPolicySigner(f"policy JWS {alg} signature does not verify") from error


def _same_key(a: Any, b: Any) -> bool:
    return bool(a.public_numbers() == b.public_numbers()) if type(a) is type(b) else False


def token_hash(jws: str) -> str:
    """``x-ms-policy-token-hash``: base64url(SHA-256(the JWS as sent))."""
    return _b64url(hashlib.sha256(jws.encode()).digest())


class PolicyStore:
    """The active SGX policy, in memory or in a file shared by every replica.

    With ``path`` set, PUT/reset write the file and every request re-reads it when its mtime
    changes, so replicas behind one Service agree once the volume propagates.
    """

    def __init__(self, path: Path | None = None, default_text: str = DEFAULT_SGX_POLICY) -> None:
        self.path = path
        self.default = stored(default_text)
        self._current = self.default
        self._stamp: int | None = None
        self._refresh()

    def current(self) -> StoredPolicy:
        self._refresh()
        return self._current

    def set(self, policy: StoredPolicy | None) -> None:
        """Activate ``policy`` (``None``: back to the default)."""
        self._current = policy or self.default
        if self.path is None:
            return
        try:
            if policy is None:
                self.path.unlink(missing_ok=True)
                self._stamp = None
                return
            doc = {"text": policy.text, "jws": policy.jws, "signer": policy.signer}
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.path)
            self._stamp = self.path.stat().st_mtime_ns
        except OSError as error:
            raise InfrastructureError(f"cannot store policy in {self.path}: {error}") from error

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            if self._stamp is not None:
                self._current, self._stamp = self.default, None
            return
        except OSError as error:
            raise InfrastructureError(f"cannot read policy file {self.path}: {error}") from error
        if stamp == self._stamp:
            return
        try:
            doc = json.loads(self.path.read_text())
            self._current = stored(doc["text"], doc.get("jws"), doc.get("signer"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InfrastructureError(f"policy file {self.path} is unreadable: {error}") from error
        self._stamp = stamp
