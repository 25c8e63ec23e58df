"""Helpers shared by the attestation tests: simulated quotes that bind an enclave key."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey

from confnode.attestation import AttestationService
from confnode.attestation._admin import Caller, ManagementAction, NotAuthenticated, NotAuthorized
from confnode.attestation.client import runtime_data_for_key
from confnode.sim import SimPlatform

ISSUER = "https://attest.confnode.test"
#: The issuer of tokens about simulated evidence (every quote in these tests is simulated).
SIM_ISSUER = f"{ISSUER}/simulated"
ATTEST = "/attest/SgxEnclave?api-version=2022-08-01"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_payload(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking its signature."""
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def attest_body(quote: bytes, runtime: bytes, **extra: Any) -> dict[str, Any]:
    """An attest request for ``quote`` with JSON ``runtimeData`` (plus ``extra`` members)."""
    body: dict[str, Any] = {
        "quote": b64url(quote),
        "runtimeData": {"data": b64url(runtime), "dataType": "JSON"},
    }
    body.update(extra)
    return body


SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def policy_signer(
    name: str = "policy signer",
    *,
    key: SignerKey | None = None,
    serial: int | None = None,
    days: int = 1,
) -> tuple[SignerKey, x509.Certificate]:
    """A self-signed policy signer certificate for ``key`` (default: a fresh RSA-2048 key), valid
    from a day ago for ``days`` days from now; a random serial number unless ``serial``."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


@dataclass
class Sim:
    platform: SimPlatform
    enclave_key: RSAKey

    def quote(self, *, debug: bool = False, report_data: bytes | None = None, **kw: Any) -> bytes:
        enclave = self.platform.enclave(debug=debug, **kw)
        data = report_data if report_data is not None else self.report_data
        report = enclave.report(self.platform.quoting_enclave.target_info(), data)
        return self.platform.quote(report)

    @property
    def runtime(self) -> bytes:
        return runtime_data_for_key({**self.enclave_key.as_dict(private=False), "kid": "ek"})[0]

    @property
    def report_data(self) -> bytes:
        return runtime_data_for_key({**self.enclave_key.as_dict(private=False), "kid": "ek"})[1]

    def body(self, quote: bytes | None = None, **extra: Any) -> dict[str, Any]:
        return attest_body(quote if quote is not None else self.quote(), self.runtime, **extra)


ServiceFactory = Callable[..., AttestationService]
#: ``serve_https(tmp, make_service)``: see the fixture in conftest.py.
HttpsService = Callable[
    [Path, Callable[[str], AttestationService]], AbstractContextManager[tuple[str, str]]
]


class SdkCredential:
    """The Azure SDK insists on an AAD credential; attestation itself needs none."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("unused", int(time.time()) + 3600)


@dataclass
class FakeReviews:
    """A :class:`ManagementAuthorizer` standing in for the API server's Token/SubjectAccessReview:
    ``tokens`` maps bearer tokens to users, ``allowed`` holds the (user, verb) pairs RBAC grants."""

    tokens: dict[str, str]
    allowed: set[tuple[str, str]]

    async def authorize(self, token: str, action: ManagementAction) -> Caller:
        user = self.tokens.get(token)
        if user is None:
            raise NotAuthenticated("the Kubernetes API server rejected the token: unknown token")
        if (user, action.verb) not in self.allowed:
            raise NotAuthorized(f"{user} may not {action.verb} {action.resource}/{action.name}")
        return Caller(user)


ADMIN_TOKEN = "admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def admin_reviews() -> FakeReviews:
    """An authorizer that lets the holder of ADMIN_TOKEN do everything."""
    return FakeReviews(
        {ADMIN_TOKEN: "system:serviceaccount:ops:admin"},
        {("system:serviceaccount:ops:admin", v) for v in ("get", "update", "delete")},
    )
