"""The MAA-compatible request body and the claims derived from it (pure functions).

Request body of ``POST /attest/SgxEnclave``::

    {"quote": b64url, "runtimeData": {"data": b64url, "dataType": "Binary" | "JSON"},
     "initTimeData": {"data": b64url, "dataType": ...}, "draftPolicyForAttestation": str,
     "nonce": str}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from confnode.attestation._evidence import Evidence
from confnode.errors import InvalidInput, VerificationError
from confnode.policy import Claim, claims_from_mapping

#: Claims the service always sets; a policy cannot issue these names.
PREFIX_RESERVED = ("x-ms-", "x-confnode-")
RESERVED = frozenset({"iss", "iat", "nbf", "exp", "jti", "nonce", "cnf"})


class BindingMismatch(VerificationError):
    """runtimeData or initTimeData does not hash to what the enclave put in its quote."""

    step = "binding"


@dataclass(frozen=True, slots=True)
class TimeData:
    data: bytes
    is_json: bool  # dataType JSON (the document may itself be ``null``)
    json_value: Any | None  # the parsed document when dataType is JSON


@dataclass(frozen=True, slots=True)
class AttestRequest:
    quote: bytes
    runtime: TimeData | None
    init_time: TimeData | None
    draft_policy: str | None
    nonce: str | None


def b64url_decode(value: Any, what: str) -> bytes:
    """base64url (padding optional); standard base64 is accepted too, as MAA does."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty base64url string")
    text = value.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:  # validate: characters outside the alphabet are an error, not silently dropped
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"{what} is not valid base64url: {error}") from error


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _time_data(value: Any, what: str) -> TimeData | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be an object {{data, dataType}}")
    data = b64url_decode(value.get("data"), f"{what}.data")
    data_type = value.get("dataType", "Binary")
    if data_type not in ("Binary", "JSON"):
        raise InvalidInput(f"{what}.dataType is {data_type!r}, expected 'Binary' or 'JSON'")
    parsed: Any = None
    if data_type == "JSON":
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError) as error:  # RecursionError: nesting too deep
            raise InvalidInput(f"{what} has dataType JSON but is not JSON: {error}") from error
    return TimeData(data, data_type == "JSON", parsed)


def parse_attest_request(body: Any) -> AttestRequest:
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    quote = b64url_decode(body.get("quote"), "quote")
    draft = body.get("draftPolicyForAttestation")
    if draft is not None and not isinstance(draft, str):
        raise InvalidInput("draftPolicyForAttestation must be a string (the policy text)")
    nonce = body.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise InvalidInput("nonce must be a string")
    return AttestRequest(
        quote=quote,
        runtime=_time_data(body.get("runtimeData"), "runtimeData"),
        init_time=_time_data(body.get("initTimeData"), "initTimeData"),
        draft_policy=draft or None,
        nonce=nonce,
    )


def check_bindings(request: AttestRequest, evidence: Evidence) -> None:
    """SHA-256(runtimeData) must be report_data[0:32]; SHA-256(initTimeData) CONFIGID[0:32]."""
    if request.runtime is not None:
        digest = hashlib.sha256(request.runtime.data).digest()
        if not hmac.compare_digest(digest, evidence.report_data[:32]):
            raise BindingMismatch(
                f"SHA-256 of runtimeData is {digest.hex()}, but the quote's report_data[0:32] "
                f"is {evidence.report_data[:32].hex()}"
            )
    if request.init_time is not None:
        digest = hashlib.sha256(request.init_time.data).digest()
        if not hmac.compare_digest(digest, evidence.config_id[:32]):
            raise BindingMismatch(
                f"SHA-256 of initTimeData is {digest.hex()}, but the enclave's CONFIGID[0:32] "
                f"is {evidence.config_id[:32].hex()}"
            )


def evidence_claims(request: AttestRequest, evidence: Evidence) -> dict[str, Any]:
    """The claims the service asserts about verified evidence (MAA's names plus ours)."""
    claims: dict[str, Any] = {
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": "sgx",
        "x-ms-sgx-is-debuggable": evidence.debug,
        "x-ms-sgx-product-id": evidence.isv_prod_id,
        "x-ms-sgx-mrsigner": evidence.mr_signer.hex(),
        "x-ms-sgx-mrenclave": evidence.mr_enclave.hex(),
        "x-ms-sgx-svn": evidence.isv_svn,
        "x-ms-sgx-report-data": evidence.report_data.hex(),
        "x-ms-sgx-collateral": dict(evidence.collateral_hashes),
        "x-confnode-tcb-status": evidence.tcb_status,
        "x-confnode-advisory-ids": list(evidence.advisory_ids),
        "x-confnode-collateral-expired": evidence.collateral_expired,
        "x-confnode-simulated": evidence.simulated,
    }
    if evidence.tcb_date is not None:
        claims["x-confnode-tcb-date"] = evidence.tcb_date.strftime("%Y-%m-%dT%H:%M:%SZ")
    if evidence.fmspc:
        claims["x-confnode-fmspc"] = evidence.fmspc
    kss = (evidence.config_id, evidence.isv_ext_prod_id, evidence.isv_family_id)
    if evidence.config_svn or any(any(part) for part in kss):
        claims["x-ms-sgx-config-id"] = evidence.config_id.hex()
        claims["x-ms-sgx-config-svn"] = evidence.config_svn
        claims["x-ms-sgx-isv-extended-product-id"] = evidence.isv_ext_prod_id.hex()
        claims["x-ms-sgx-isv-family-id"] = evidence.isv_family_id.hex()
    if request.runtime is not None:
        if request.runtime.is_json:
            claims["x-ms-runtime"] = request.runtime.json_value
        else:
            claims["x-ms-sgx-ehd"] = b64url(request.runtime.data)
    if request.init_time is not None and request.init_time.is_json:
        claims["x-ms-inittime"] = request.init_time.json_value
    return claims


def incoming_claims(claims: dict[str, Any]) -> list[Claim]:
    """The incoming claim set a policy sees: every scalar (or list of scalars) claim above."""
    return claims_from_mapping(claims)


def merge_issued(claims: dict[str, Any], issued: dict[str, Any]) -> list[str]:
    """Add policy-issued claims to the token; return the names refused as reserved."""
    refused: list[str] = []
    for name, value in issued.items():
        if name in RESERVED or name.startswith(PREFIX_RESERVED) or name in claims:
            refused.append(name)
            continue
        claims[name] = value
    return refused
