"""The MAA-compatible request body and the claims derived from it (pure functions).

Request body of ``POST /attest/SgxEnclave`` (``/attest/OpenEnclave``: ``report`` instead of
``quote``, an Open Enclave report wrapping the quote)::

    {"quote": b64url, "runtimeData": {"data": b64url, "dataType": "Binary" | "JSON"},
     "initTimeData": {"data": b64url, "dataType": ...}, "draftPolicyForAttestation": str,
     "nonce": str}

Member names are matched case-insensitively, as MAA (ASP.NET) does: Azure's published samples
send ``Quote``, ``RuntimeData {Data, DataType}``, ``InittimeData``. The 2018-09-01-preview shape
``{"Quote", "EnclaveHeldData"}`` is the same as Binary ``runtimeData``. A name given twice in
different cases is refused rather than guessed.

Tokens carry MAA's deprecated claim names next to the current ones (:data:`LEGACY_OUTPUT`), and
policies may use the deprecated incoming names (``LEGACY_INCOMING_CLAIMS``), as MAA documents.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, RSAKey

from confnode.attestation._evidence import Evidence
from confnode.attestation._json import loads_strict
from confnode.errors import InvalidInput, VerificationError
from confnode.policy import LEGACY_INCOMING_CLAIMS, Claim, claims_from_mapping

#: Deprecated claims MAA still puts in tokens (the Azure SDK reads them as ``deprecated_*``), and
#: the claim each copies. The short enclave names (``is-debuggable``, ``sgx-mrsigner``, ``tee`` …)
#: are issued by the default policy, as in MAA, not here.
LEGACY_OUTPUT = {
    "ver": "x-ms-ver",
    "maa-attestationcollateral": "x-ms-sgx-collateral",
    "maa-ehd": "x-ms-sgx-ehd",
    "aas-ehd": "x-ms-sgx-ehd",
    "policy_hash": "x-ms-policy-hash",
    "maa-policyHash": "x-ms-policy-hash",
    "policy_signer": "x-ms-policy-signer",
    "rp_data": "nonce",
}

#: Claims the service always sets; a policy cannot issue these names.
PREFIX_RESERVED = ("x-ms-", "x-confnode-")
RESERVED = frozenset({"iss", "iat", "nbf", "exp", "jti", "nonce", "cnf", *LEGACY_OUTPUT})
#: ``oe_report_header_t`` of an Open Enclave remote report: version 1, type 2 (SGX remote).
_OE_HEADER = 16
_OE_VERSION, _OE_SGX_REMOTE = 1, 2


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


def _member(obj: dict[str, Any], name: str, what: str = "") -> Any:
    """``obj[name]`` matched case-insensitively (None when absent); two spellings are an error."""
    found = [key for key in obj if key.casefold() == name.casefold()]
    if len(found) > 1:
        raise InvalidInput(
            f"{what}{name} is given more than once ({', '.join(sorted(found))}); "
            "expected one member (names are case-insensitive)"
        )
    return obj[found[0]] if found else None


def _time_data(value: Any, what: str) -> TimeData | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be an object {{data, dataType}}")
    data = b64url_decode(_member(value, "data", f"{what}."), f"{what}.data")
    data_type = _member(value, "dataType", f"{what}.")
    kind = "binary" if data_type is None else str(data_type).casefold()
    if kind not in ("binary", "json"):
        raise InvalidInput(f"{what}.dataType is {data_type!r}, expected 'Binary' or 'JSON'")
    parsed: Any = None
    if kind == "json":  # it becomes a token claim: standard JSON only
        parsed = loads_strict(data, f"{what} (dataType JSON)")
    return TimeData(data, kind == "json", parsed)


def oe_report_quote(report: bytes) -> bytes:
    """The SGX quote inside an Open Enclave remote report (``oe_get_report`` output).

    The report is a 16-byte ``oe_report_header_t`` (version 1, report type 2 = SGX remote,
    little-endian u64 size of what follows) and then the quote.
    """
    if len(report) < _OE_HEADER:
        raise InvalidInput(
            f"report is {len(report)} bytes, shorter than the {_OE_HEADER}-byte Open Enclave "
            "report header"
        )
    version = int.from_bytes(report[0:4], "little")
    report_type = int.from_bytes(report[4:8], "little")
    size = int.from_bytes(report[8:16], "little")
    if version != _OE_VERSION:
        raise InvalidInput(f"report header version is {version}, expected {_OE_VERSION}")
    if report_type != _OE_SGX_REMOTE:
        raise InvalidInput(
            f"report type is {report_type}, expected {_OE_SGX_REMOTE} (an SGX remote report)"
        )
    if size != len(report) - _OE_HEADER:
        raise InvalidInput(
            f"report header says {size} bytes follow, but {len(report) - _OE_HEADER} do"
        )
    return report[_OE_HEADER:]


def parse_attest_request(body: Any, *, evidence: str = "quote") -> AttestRequest:
    """The request body; ``evidence`` names the member with the evidence (``report`` for
    ``/attest/OpenEnclave``, whose Open Enclave report is unwrapped to its quote)."""
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    raw = b64url_decode(_member(body, evidence), evidence)
    quote = oe_report_quote(raw) if evidence == "report" else raw
    draft = _member(body, "draftPolicyForAttestation")
    if draft is not None and not isinstance(draft, str):
        raise InvalidInput("draftPolicyForAttestation must be a string (the policy text)")
    nonce = _member(body, "nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise InvalidInput("nonce must be a string")
    runtime = _time_data(_member(body, "runtimeData"), "runtimeData")
    held = _member(body, "enclaveHeldData")  # 2018-09-01-preview: binary runtime data
    if held is not None:
        if runtime is not None:
            raise InvalidInput("give runtimeData or enclaveHeldData, not both")
        runtime = TimeData(b64url_decode(held, "enclaveHeldData"), False, None)
    return AttestRequest(
        quote=quote,
        runtime=runtime,
        init_time=_time_data(_member(body, "initTimeData"), "initTimeData"),
        draft_policy=draft or None,
        nonce=nonce,
    )


def require_binding(member: str, data: bytes, bits: int, held: bytes, where: str) -> None:
    """Raise :class:`BindingMismatch` unless SHA-``bits`` (256 or 384) of the request's
    ``member`` is ``held``, the evidence's ``where``."""
    digest = (hashlib.sha384 if bits == 384 else hashlib.sha256)(data).digest()
    if not hmac.compare_digest(digest, held):
        raise BindingMismatch(
            f"SHA-{bits} of {member} is {digest.hex()}, but {where} is {held.hex()}"
        )


def check_bindings(request: AttestRequest, evidence: Evidence) -> None:
    """SHA-256(runtimeData) must be report_data[0:32]; SHA-256(initTimeData) CONFIGID[0:32]."""
    if request.runtime is not None:
        require_binding(
            "runtimeData",
            request.runtime.data,
            256,
            evidence.report_data[:32],
            "the quote's report_data[0:32]",
        )
    if request.init_time is not None:
        require_binding(
            "initTimeData",
            request.init_time.data,
            256,
            evidence.config_id[:32],
            "the enclave's CONFIGID[0:32]",
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
    """The incoming claim set a policy sees: every scalar (or list of scalars) claim above, plus
    the deprecated names MAA still accepts in policies (``$is-debuggable`` …)."""
    legacy = {a: claims[name] for a, name in LEGACY_INCOMING_CLAIMS.items() if name in claims}
    return claims_from_mapping(claims) + claims_from_mapping(legacy)


def add_legacy_claims(claims: dict[str, Any]) -> None:
    """Copy each claim MAA also emits under a deprecated name to that name (``maa-ehd`` …)."""
    for alias, name in LEGACY_OUTPUT.items():
        if name in claims:
            claims[alias] = claims[name]


def policy_certificates_claims(signers: tuple[x509.Certificate, ...]) -> dict[str, Any]:
    """``GET /certificates``: the policy signers as ``x-ms-policy-certificates`` (a JWKS, x5c)."""
    keys: list[dict[str, Any]] = []
    for cert in signers:
        public = cert.public_key()
        key = (
            RSAKey.import_key(public)
            if isinstance(public, rsa.RSAPublicKey)
            else ECKey.import_key(public)  # type: ignore[arg-type]  # signers are RSA or EC
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        jwk = dict(key.as_dict(private=False))
        jwk.update(kid=key.thumbprint(), x5c=[base64.b64encode(der).decode("ascii")])
        keys.append(jwk)
    return {"x-ms-policy-certificates": {"keys": keys}}


def merge_issued(
    claims: dict[str, Any], issued: dict[str, Any], reserved: Collection[str] = ()
) -> list[str]:
    """Add policy-issued claims to the token; return the names refused as reserved.

    ``reserved``: further names only the service asserts (the TD claims: an SGX token must not
    get a ``tdx_mrtd`` that a TD-bound key's release policy would accept, nor a TD 1.0 token a
    ``tdx_mrservicetd``).
    """
    refused: list[str] = []
    for name, value in issued.items():
        if (
            name in RESERVED
            or name in reserved
            or name.startswith(PREFIX_RESERVED)
            or name in claims
        ):
            refused.append(name)
            continue
        claims[name] = value
    return refused
