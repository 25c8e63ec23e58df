"""Policy management: the uploaded policy JWS, its signer check, and where the policy lives.

Upload format (MAA): a compact JWS whose payload is ``{"AttestationPolicy": base64url(text)}``;
a reset request is a JWS whose payload is empty or an object without ``AttestationPolicy``.

* ``alg: none`` is accepted only when no policy-signer certificates are configured (MAA's AAD
  mode, where the caller is authenticated otherwise).
* With signer certificates configured (MAA's isolated mode) the JWS must be RS256 or ES256 and
  carry the signing certificate (``x5c``, or ``jwk`` with ``x5c``, or a bare ``jwk``) whose
  public key is one of the configured signers'.
* HMAC algorithms are always rejected: a shared secret cannot identify a policy author.
* A header with ``crit`` is rejected: we implement no JWS extension (RFC 7515 §4.1.11).
* Signed changes are not replayable (:func:`check_fresh`): the payload carries ``iat``, which
  must be recent and strictly newer than that of every signed change accepted before. ``GET``
  hands out the current policy's JWS, so without this anyone who can read it could re-apply it
  later, re-apply an older one, or (as a reset body) reset the policy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from confnode.attestation._json import loads_strict
from confnode.errors import InfrastructureError, InvalidInput, VerificationError
from confnode.policy import (
    DEFAULT_SGX_POLICY,
    SGX_CLAIM_TYPES,
    ClaimValue,
    Policy,
    parse_policy,
    policy_hash,
)
from confnode.tokens import write_file_atomically

PolicyPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
#: azure-security-attestation 1.0 labels its RSASSA-PKCS1-v1_5/SHA-256 policy signatures "RSA256";
#: the bytes are exactly RS256. (Its set_policy signs no iat, so it is refused as replayable; its
#: signing code over a body with iat is accepted.)
_SDK_ALIASES: dict[Any, str] = {"RSA256": "RS256"}
#: A signed change must have been signed at most this long ago (its ``iat``) ...
MAX_CHANGE_AGE = timedelta(minutes=10)
#: ... and at most this far in the future (clock skew between the signer and us).
MAX_CLOCK_SKEW = timedelta(minutes=5)


class PolicyJwsError(InvalidInput):
    """A policy upload that is not a well-formed, acceptable JWS."""


class UntrustedPolicySigner(VerificationError):
    """A policy upload that is unsigned, wrongly signed, or signed by a key we do not trust."""

    step = "policy-signer"


class PolicyChangesDisabled(VerificationError):
    """A policy change on a service with no policy signer to authenticate it."""

    step = "policy-signer"


class StalePolicyChange(VerificationError):
    """A signed policy change without ``iat``, too old, from the future, or not newer than the
    last accepted one: a replay, or a rollback to an older signed policy."""

    step = "policy-freshness"


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


def stored(
    text: str,
    jws: str | None = None,
    signer: dict[str, Any] | None = None,
    *,
    claim_types: Mapping[str, type[ClaimValue]] = SGX_CLAIM_TYPES,
) -> StoredPolicy:
    """A policy ready to evaluate; ``claim_types``: the incoming claims of its attestation type,
    against which the parser checks its conditions (see :func:`confnode.policy.parse_policy`)."""
    parsed = parse_policy(text, claim_types=claim_types)
    return StoredPolicy(text, parsed, jws or unsigned_policy_jws(text), signer, policy_hash(text))


@dataclass(frozen=True, slots=True)
class PolicyUpload:
    text: str | None  # None for a reset request
    jws: str
    signer: dict[str, Any] | None
    issued_at: int | None  # the payload's iat (NumericDate), when present


def _strict(data: bytes | str, what: str) -> Any:
    try:
        return loads_strict(data, what)
    except InvalidInput as error:
        raise PolicyJwsError(error.message) from error


def read_policy_jws(
    body: str, *, signers: Sequence[x509.Certificate], require_policy: bool
) -> PolicyUpload:
    """Check an uploaded policy JWS against the signer rules in the module docstring.

    ``require_policy``: True for ``PUT`` (the payload must carry ``AttestationPolicy``), False
    for a reset request (it must not: a policy JWS, e.g. the one ``GET`` returns, is no reset).
    """
    jws = body.strip()
    if jws.startswith('"'):
        jws = _strict(jws, "policy body (a JSON string around the JWS)")
        if not isinstance(jws, str):
            raise PolicyJwsError("policy body must be a JWS string")
    parts = jws.split(".")
    if len(parts) != 3:
        raise PolicyJwsError(
            f"policy must be a compact JWS (3 dot-separated parts), found {len(parts)} part(s)"
        )
    header = _strict(_b64url_decode(parts[0], "header"), "policy JWS header")
    if not isinstance(header, dict):
        raise PolicyJwsError("policy JWS header must be a JSON object")
    if "crit" in header:
        raise PolicyJwsError(
            f"policy JWS header lists critical extensions {header['crit']!r}; none are supported"
        )
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
        return PolicyUpload(None, jws, signer_jwk, None)
    payload = _strict(_b64url_decode(parts[1], "payload"), "policy JWS payload")
    if not isinstance(payload, dict):
        raise PolicyJwsError("policy JWS payload must be a JSON object")
    issued_at = payload.get("iat")
    if issued_at is not None and (not isinstance(issued_at, int) or isinstance(issued_at, bool)):
        raise PolicyJwsError(f"policy JWS iat is {issued_at!r}; expected an integer NumericDate")
    encoded = payload.get("AttestationPolicy")
    if not require_policy:
        if encoded is not None:
            raise PolicyJwsError(
                "reset request carries an AttestationPolicy: that is a policy, not a reset "
                "request (expected an empty payload or one with iat only)"
            )
        return PolicyUpload(None, jws, signer_jwk, issued_at)
    if not isinstance(encoded, str):
        raise PolicyJwsError("policy JWS payload has no AttestationPolicy member")
    try:
        text = _b64url_decode(encoded, "AttestationPolicy").decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyJwsError(f"AttestationPolicy is not UTF-8 text: {error}") from error
    return PolicyUpload(text, jws, signer_jwk, issued_at)


def check_fresh(upload: PolicyUpload, floor: int, now: datetime) -> None:
    """Refuse a signed change that could be a replay: see the module docstring.

    Unsigned changes carry no authority of their own (they are accepted only where anyone may
    change the policy), so only signed ones are checked. ``floor`` is the newest ``iat`` the
    store accepted; the age limit covers what the floor cannot, e.g. an in-memory store that
    restarted.
    """
    if upload.signer is None:
        return
    if upload.issued_at is None:
        raise StalePolicyChange(
            "signed policy change carries no iat; expected the signing time (NumericDate) in "
            "the payload, so that it cannot be replayed",
            hint='sign {"AttestationPolicy": ..., "iat": <now>} (an empty reset: {"iat": <now>})',
        )
    moment = int(now.timestamp())
    oldest = moment - int(MAX_CHANGE_AGE.total_seconds())
    newest = moment + int(MAX_CLOCK_SKEW.total_seconds())
    if not oldest <= upload.issued_at <= newest:
        raise StalePolicyChange(
            f"signed policy change has iat {upload.issued_at}; expected between {oldest} and "
            f"{newest} (signed within the last {MAX_CHANGE_AGE}, now is {moment})"
        )
    if upload.issued_at <= floor:
        raise StalePolicyChange(
            f"signed policy change has iat {upload.issued_at}, not newer than the last accepted "
            f"change's {floor}: a replay or a rollback"
        )


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
    """The active policy of one attestation type, in memory or in a file shared by every replica.

    With ``path`` set, PUT/reset write the file and every request re-reads it when its mtime
    changes, so replicas behind one Service agree once the volume propagates. The file also
    keeps the replay floor (the newest accepted ``iat``), so a reset does not lower it::

        {"floor": iat, "text": ..., "jws": ..., "signer": ...}   (no "text" after a reset)
    """

    def __init__(
        self,
        path: Path | None = None,
        default_text: str = DEFAULT_SGX_POLICY,
        claim_types: Mapping[str, type[ClaimValue]] = SGX_CLAIM_TYPES,
    ) -> None:
        self.path = path
        #: The incoming claims of this store's attestation type (checked when a policy parses).
        self.claim_types = claim_types
        self.default = stored(default_text, claim_types=claim_types)
        self._current = self.default
        self._floor = 0
        self._stamp: int | None = None
        self._refresh()

    def stored(
        self, text: str, jws: str | None = None, signer: dict[str, Any] | None = None
    ) -> StoredPolicy:
        """``text`` parsed for this store's attestation type (its claim types)."""
        return stored(text, jws, signer, claim_types=self.claim_types)

    def current(self) -> StoredPolicy:
        self._refresh()
        return self._current

    def floor(self) -> int:
        """The newest ``iat`` of any signed change accepted so far (0: none)."""
        self._refresh()
        return self._floor

    def set(self, policy: StoredPolicy | None, issued_at: int | None = None) -> None:
        """Activate ``policy`` (``None``: back to the default); ``issued_at`` raises the floor."""
        self._current = policy or self.default
        if issued_at is not None:
            self._floor = max(self._floor, issued_at)
        if self.path is None:
            return
        doc: dict[str, Any] = {"floor": self._floor}
        if policy is not None:
            doc.update(text=policy.text, jws=policy.jws, signer=policy.signer)
        try:
            write_file_atomically(self.path, json.dumps(doc).encode(), 0o600)
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
            floor = doc.get("floor", 0)
            if not isinstance(floor, int):
                raise TypeError(f"floor is {floor!r}, expected an integer")
            text = doc.get("text")
            current = (
                self.default
                if text is None
                else self.stored(text, doc.get("jws"), doc.get("signer"))
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InfrastructureError(f"policy file {self.path} is unreadable: {error}") from error
        self._current, self._floor, self._stamp = current, max(self._floor, floor), stamp
