"""``POST /attest/TdxVm``: verified TD evidence, MAA's TDX claims and bindings, the real appraiser.

Request body (MAA ``attest/TdxVm``, same shape as ``attest/SgxEnclave``)::

    {"quote": b64url TD quote (v4 or v5), "runtimeData": {"data": b64url, "dataType": ...},
     "initTimeData": {...}, "draftPolicyForAttestation": str, "nonce": str}

Claims follow MAA's TDX EAT profile (``trust-domain-extensions-eat-profile``): ``tdx_mrtd``,
``tdx_rtmr0``..``3``, ``tdx_report_data``, ``tdx_mrseam``, ``tdx_mrsignerseam``, ``tdx_seamsvn``,
``tdx_td_attributes_*``, ``attester_tcb_status``, ``eat_profile``, ``dbgstat``, ``intuse`` and
``x-ms-attestation-type: tdxvm``; plus confnode's ``x-confnode-*`` (advisory IDs, TCB date,
collateral expiry, simulated) as for SGX. TD 1.5 quotes add ``tdx_mrservicetd`` and
``tdx_tee_tcb_svn2`` (confnode's names; MAA documents no TD 1.5 claims).

TdxVm policies (:func:`td_policy_store`) are parsed against :data:`TDX_CLAIM_TYPES`, so a
condition on a TD claim with a constant of the wrong type is a parse error, as for SGX.

Bindings: SHA-256(runtimeData) must equal report_data[0:32] (MAA's documented rule). For
initTimeData MAA documents only that it "was known to the TD"; confnode requires
SHA-384(initTimeData) == MRCONFIGID, the convention Confidential Containers use for TD init data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from confnode.attestation._claims import AttestRequest, require_binding
from confnode.attestation._dcap import DcapTrust, _pck_pem, collateral_hashes
from confnode.attestation._policies import PolicyStore
from confnode.policy import ClaimValue
from confnode.sgx import Quote, parse_quote
from confnode.verify import (
    QuoteFormatUnsupported,
    UntrustedRoot,
    VerifiedTd,
    VerifiedTdQuote,
)

#: The route's attestation type (``/attest/TdxVm``, ``/policies/TdxVm``).
TDX_ATTESTATION_TYPE = "TdxVm"
#: ``x-ms-attestation-type`` of TD tokens, and of tokens about simulated TDs.
TDX_TOKEN_TYPE = "tdxvm"
SIMULATED_TDX_TOKEN_TYPE = "tdxvm-simulated"
#: MAA's ``eat_profile`` for TDX tokens (clients check it).
EAT_PROFILE = "https://aka.ms/maa-eat-profile-tdxvm"

#: The default TdxVm policy: the SGX stance (deny only what needs a platform update; the status
#: and advisories are in the token for stricter relying parties) on MAA's TDX status claim.
DEFAULT_TDX_POLICY = """version= 1.0;
authorizationrules
{
    [type=="attester_tcb_status", value=="OutOfDate"] => deny();
    [type=="attester_tcb_status", value=="OutOfDateConfigurationNeeded"] => deny();
    => permit();
};
issuancerules
{
    c:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);
};
"""

#: The claims a TD token carries (for discovery's ``claims_supported``).
TDX_CLAIMS = (
    "eat_profile",
    "dbgstat",
    "intuse",
    "attester_tcb_status",
    "tdx_mrsignerseam",
    "tdx_mrseam",
    "tdx_mrtd",
    "tdx_rtmr0",
    "tdx_rtmr1",
    "tdx_rtmr2",
    "tdx_rtmr3",
    "tdx_mrconfigid",
    "tdx_mrowner",
    "tdx_mrownerconfig",
    "tdx_report_data",
    "tdx_seam_attributes",
    "tdx_tee_tcb_svn",
    "tdx_xfam",
    "tdx_seamsvn",
    "tdx_td_attributes",
    "tdx_td_attributes_debug",
    "tdx_td_attributes_key_locker",
    "tdx_td_attributes_perfmon",
    "tdx_td_attributes_protection_keys",
    "tdx_td_attributes_septve_disable",
    "tdx_tee_tcb_svn2",
    "tdx_mrservicetd",
)

#: The value type of every claim in the incoming set of a TD attestation (deprecated names
#: included): TdxVm policies are checked against it as SgxEnclave ones are against
#: :data:`~confnode.policy.SGX_CLAIM_TYPES`, so ``[type=="tdx_td_attributes_debug",
#: value=="true"] => deny();`` is a parse error instead of a rule that never fires.
TDX_CLAIM_TYPES: Mapping[str, type[ClaimValue]] = {
    **{name: str for name in TDX_CLAIMS},
    "tdx_seamsvn": int,
    **{name: bool for name in TDX_CLAIMS if name.startswith("tdx_td_attributes_")},
    "x-ms-ver": str,
    "x-ms-attestation-type": str,
    "x-confnode-tcb-status": str,
    "x-confnode-advisory-ids": str,
    "x-confnode-collateral-expired": bool,
    "x-confnode-simulated": bool,
    "x-confnode-tcb-date": str,
    "x-confnode-fmspc": str,
    **{alias: str for alias in ("$tee", "tee", "ver")},
}


def td_policy_store(path: Path | None = None) -> PolicyStore:
    """The TdxVm policy: :data:`DEFAULT_TDX_POLICY` unless changed, TD claim types."""
    return PolicyStore(path, DEFAULT_TDX_POLICY, TDX_CLAIM_TYPES)


# TDATTRIBUTES bits (Intel TDX DCAP Quoting Library API, A.3.4; the field is a little-endian u64).
_TD_DEBUG = 1 << 0
_TD_SEPT_VE_DISABLE = 1 << 28
_TD_PKS = 1 << 30
_TD_KL = 1 << 31
_TD_PERFMON = 1 << 63


@dataclass(frozen=True, slots=True)
class TdEvidence:
    """A TD quote that passed verification: the TD's identity plus the platform's TCB verdict."""

    td: VerifiedTd
    tcb_status: str
    advisory_ids: tuple[str, ...] = ()
    collateral_expired: bool = False
    #: True when the quote chained to a root other than Intel's (e.g. the simulated one).
    simulated: bool = False
    tcb_date: datetime | None = None
    fmspc: str = ""
    #: SHA-256 (hex) of the quote and of each collateral part.
    collateral_hashes: Mapping[str, str] = field(default_factory=dict)


class TdAppraiser(Protocol):
    """Verifies a TD quote as of ``now`` (errors as :class:`~confnode.attestation.Appraiser`)."""

    async def appraise_td(self, quote: bytes, *, now: datetime) -> TdEvidence: ...


def check_td_bindings(request: AttestRequest, evidence: TdEvidence) -> None:
    """SHA-256(runtimeData) must be report_data[0:32]; SHA-384(initTimeData) must be MRCONFIGID."""
    td = evidence.td
    if request.runtime is not None:
        require_binding(
            "runtimeData",
            request.runtime.data,
            256,
            td.report_data[:32],
            "the TD's report_data[0:32]",
        )
    if request.init_time is not None:
        require_binding(
            "initTimeData", request.init_time.data, 384, td.mr_config_id, "the TD's MRCONFIGID"
        )


def td_claims(request: AttestRequest, evidence: TdEvidence) -> dict[str, Any]:
    """The claims the service asserts about a verified TD (MAA's TDX EAT profile plus ours)."""
    td = evidence.td
    attributes = int.from_bytes(td.td_attributes, "little")
    claims: dict[str, Any] = {
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": SIMULATED_TDX_TOKEN_TYPE if evidence.simulated else TDX_TOKEN_TYPE,
        "eat_profile": EAT_PROFILE,
        "dbgstat": "enabled" if td.debug else "disabled",
        "intuse": "generic",
        "attester_tcb_status": evidence.tcb_status,
        "tdx_mrsignerseam": td.mr_signer_seam.hex(),
        "tdx_mrseam": td.mr_seam.hex(),
        "tdx_mrtd": td.mr_td.hex(),
        "tdx_rtmr0": td.rtmr0.hex(),
        "tdx_rtmr1": td.rtmr1.hex(),
        "tdx_rtmr2": td.rtmr2.hex(),
        "tdx_rtmr3": td.rtmr3.hex(),
        "tdx_mrconfigid": td.mr_config_id.hex(),
        "tdx_mrowner": td.mr_owner.hex(),
        "tdx_mrownerconfig": td.mr_owner_config.hex(),
        "tdx_report_data": td.report_data.hex(),
        "tdx_seam_attributes": td.seam_attributes.hex(),
        "tdx_tee_tcb_svn": td.tee_tcb_svn.hex(),
        "tdx_xfam": td.xfam.hex(),
        # TEE_TCB_SVN[0..1] is the module's SEAMSVN (minor, major), as MAA's sample shows.
        "tdx_seamsvn": int.from_bytes(td.tee_tcb_svn[:2], "little"),
        "tdx_td_attributes": td.td_attributes.hex(),
        "tdx_td_attributes_debug": bool(attributes & _TD_DEBUG),
        "tdx_td_attributes_key_locker": bool(attributes & _TD_KL),
        "tdx_td_attributes_perfmon": bool(attributes & _TD_PERFMON),
        "tdx_td_attributes_protection_keys": bool(attributes & _TD_PKS),
        "tdx_td_attributes_septve_disable": bool(attributes & _TD_SEPT_VE_DISABLE),
        "x-confnode-tcb-status": evidence.tcb_status,
        "x-confnode-advisory-ids": list(evidence.advisory_ids),
        "x-confnode-collateral-expired": evidence.collateral_expired,
        "x-confnode-simulated": evidence.simulated,
        "x-confnode-collateral": dict(evidence.collateral_hashes),
    }
    if td.tee_tcb_svn2 is not None and td.mr_servicetd is not None:
        claims["tdx_tee_tcb_svn2"] = td.tee_tcb_svn2.hex()
        claims["tdx_mrservicetd"] = td.mr_servicetd.hex()
    if evidence.tcb_date is not None:
        claims["x-confnode-tcb-date"] = evidence.tcb_date.strftime("%Y-%m-%dT%H:%M:%SZ")
    if evidence.fmspc:
        claims["x-confnode-fmspc"] = evidence.fmspc
    if request.runtime is not None and request.runtime.is_json:
        claims["x-ms-runtime"] = request.runtime.json_value
    if request.init_time is not None and request.init_time.is_json:
        claims["x-ms-inittime"] = request.init_time.json_value
    return claims


class DcapTdAppraiser(DcapTrust):
    """Implements :class:`TdAppraiser` with confnode's DCAP verifier (TDX checklist).

    Trust as for SGX (:class:`~confnode.attestation._dcap.DcapAppraiser`): Intel's root always,
    the extra root only for quotes whose PCK chain ends in it (then marked ``simulated``).
    """

    def _check_before_fetch(self, quote: Quote) -> None:
        """Refuse a TD quote whose PCK chain is not trusted before any collateral fetch.

        The FMSPC that keys the collateral comes from that chain; an untrusted one would let
        anyone make the service fetch collateral for arbitrary FMSPCs.
        """
        if not quote.is_tdx:
            raise QuoteFormatUnsupported(
                f"TEE type {quote.header.tee_type:#x} (version {quote.header.version}); "
                "expected a TDX quote on /attest/TdxVm"
            )
        pem = _pck_pem(quote)
        if pem is None or not self._chain_trusted(pem):
            raise UntrustedRoot(
                "the TD quote's PCK certificate chain is not signed up to Intel's SGX Root CA "
                "(nor to the configured --trust-root); collateral was not fetched"
            )

    async def appraise_td(self, quote: bytes, *, now: datetime) -> TdEvidence:
        parsed = parse_quote(quote)
        self._check_before_fetch(parsed)
        simulated = self._uses_extra_root(parsed)
        collateral = await asyncio.to_thread(self._collateral_for, parsed)
        verified = self._verify(parsed, collateral, now, simulated)
        if not isinstance(verified, VerifiedTdQuote):  # parse said TDX; the verifier agrees
            raise QuoteFormatUnsupported("the verifier did not judge the quote as a TD quote")
        return TdEvidence(
            td=verified.td,
            tcb_status=verified.status.value,
            advisory_ids=verified.advisory_ids,
            collateral_expired=verified.collateral_expired,
            simulated=simulated or not verified.trusted_root_is_intel,
            tcb_date=verified.tcb_date,
            fmspc=verified.fmspc,
            collateral_hashes=collateral_hashes(quote, collateral),
        )


def tdx_policy_file(policy_file: str | None) -> Path | None:
    """Where the TdxVm policy lives next to the SgxEnclave one (``policy.json`` →
    ``policy.TdxVm.json``), so that every replica sees the same TdxVm policy too."""
    if policy_file is None:
        return None
    path = Path(policy_file)
    return path.with_name(f"{path.stem}.{TDX_ATTESTATION_TYPE}{path.suffix}")
