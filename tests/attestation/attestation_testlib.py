"""Helpers shared by the attestation tests: simulated quotes that bind an enclave key."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
        body: dict[str, Any] = {
            "quote": b64url(quote if quote is not None else self.quote()),
            "runtimeData": {"data": b64url(self.runtime), "dataType": "JSON"},
        }
        body.update(extra)
        return body


ServiceFactory = Callable[..., AttestationService]


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
