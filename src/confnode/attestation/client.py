"""A small client for confnode's (and MAA's) attestation API, used by the CLI and the demo.

It speaks the same wire format as ``azure-security-attestation``; unlike that SDK it also knows
the key-release route. Tokens are validated with :func:`confnode.tokens.validate_token` against
the service's own ``/certs``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from confnode.errors import ConfnodeError, InfrastructureError, InvalidInput, VerificationError
from confnode.tokens import validate_token

API_VERSION = "2022-08-01"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def runtime_data_for_key(public_jwk: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """JSON runtimeData that binds an enclave key, and the report_data the enclave must use.

    Returns ``(runtime_json, report_data)``: report_data is SHA-256(runtime_json) followed by
    32 zero bytes, which is what the service checks and what key release wraps to.
    """
    runtime = json.dumps({"keys": [dict(public_jwk)]}, separators=(",", ":")).encode()
    return runtime, hashlib.sha256(runtime).digest() + bytes(32)


class AttestationClient:
    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if isinstance(verify, str):  # a CA bundle path
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(
            base_url=self.base_url, verify=verify, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AttestationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise InfrastructureError(f"{self.base_url}{url}: {error}") from error
        if response.status_code == 200:
            return response.json()
        verdict = False  # evidence or policy said no; MAA answers those with 400 too
        try:
            detail = response.json()["error"]
            message = f"{detail['code']}: {detail['message']}"
            # innererror names a failed step for evidence that does not verify; for quote
            # bytes that do not parse (code InvalidQuote) it has none: that is bad input.
            inner = detail.get("innererror")
            verdict = detail["code"] == "PolicyEvaluationError" or (
                isinstance(inner, dict) and "step" in inner
            )
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        kind: type[ConfnodeError] = (
            VerificationError
            if verdict or response.status_code in (401, 403)
            else InvalidInput
            if response.status_code in (400, 404, 413)
            else InfrastructureError
        )
        raise kind(f"{method} {url} answered {response.status_code}: {message}")

    def jwks(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/certs")
        return result

    def attest_sgx(
        self,
        quote: bytes,
        *,
        runtime_json: bytes | None = None,
        runtime_data: bytes | None = None,
        draft_policy: str | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """POST /attest/SgxEnclave; the response body (``token``; ``trace`` in draft mode)."""
        body: dict[str, Any] = {"quote": _b64url(quote)}
        if runtime_json is not None:
            body["runtimeData"] = {"data": _b64url(runtime_json), "dataType": "JSON"}
        elif runtime_data is not None:
            body["runtimeData"] = {"data": _b64url(runtime_data), "dataType": "Binary"}
        if draft_policy is not None:
            body["draftPolicyForAttestation"] = draft_policy
        if nonce is not None:
            body["nonce"] = nonce
        result: dict[str, Any] = self._call(
            "POST", "/attest/SgxEnclave", params={"api-version": API_VERSION}, json=body
        )
        return result

    def validate(
        self, token: str, now: datetime | None = None, *, allow_simulated: bool = False
    ) -> dict[str, Any]:
        """Claims of a token from this service, checked against its published keys.

        Tokens about simulated evidence name the issuer ``<base URL>/simulated``; they are
        accepted only with ``allow_simulated``.
        """
        base = self.base_url
        issuers = (base, base + "/simulated") if allow_simulated else base
        return validate_token(token, self.jwks(), issuer=issuers, now=now or datetime.now(UTC))

    def release(self, name: str, token: str) -> str:
        """POST /keys/{name}/release; returns the JWE wrapping the key to the enclave."""
        result = self._call("POST", f"/keys/{name}/release", json={"target": token})
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, str):
            raise InfrastructureError("key release answered without a 'value'")
        return value
