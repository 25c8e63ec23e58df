"""The default SGX attestation policy and MAA's policy hash."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

from confnode.policy._ast import ClaimValue

#: TCB statuses the default policy denies. Intel marks them as needing a platform update (BIOS /
#: microcode); every other status that survives quote verification (UpToDate, SWHardeningNeeded,
#: ConfigurationNeeded, ConfigurationAndSWHardeningNeeded) is permitted, with the status and the
#: advisory IDs in the token so that relying parties can be stricter. Revoked platforms never get
#: this far: the verifier rejects them.
DEFAULT_DENIED_TCB_STATUSES = ("OutOfDate", "OutOfDateConfigurationNeeded")

#: MAA's default SGX policy (permit everything, issue the short claim aliases), plus the TCB stance
#: above expressed as ordinary deny rules on our ``x-confnode-tcb-status`` claim.
DEFAULT_SGX_POLICY = """version= 1.0;
authorizationrules
{
    [type=="x-confnode-tcb-status", value=="OutOfDate"] => deny();
    [type=="x-confnode-tcb-status", value=="OutOfDateConfigurationNeeded"] => deny();
    => permit();
};
issuancerules
{
    c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
    c:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);
    c:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);
    c:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);
    c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
    c:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);
};
"""


#: Deprecated incoming claim names MAA still accepts in policies, and the claim each stands for.
LEGACY_INCOMING_CLAIMS: Mapping[str, str] = {
    "$is-debuggable": "x-ms-sgx-is-debuggable",
    "$sgx-mrsigner": "x-ms-sgx-mrsigner",
    "$sgx-mrenclave": "x-ms-sgx-mrenclave",
    "$product-id": "x-ms-sgx-product-id",
    "$svn": "x-ms-sgx-svn",
    "$tee": "x-ms-attestation-type",
    "tee": "x-ms-attestation-type",
    "ver": "x-ms-ver",
    "maa-ehd": "x-ms-sgx-ehd",
    "aas-ehd": "x-ms-sgx-ehd",
}

_SGX_TYPES: dict[str, type[ClaimValue]] = {
    "x-ms-ver": str,
    "x-ms-attestation-type": str,
    "x-ms-sgx-is-debuggable": bool,
    "x-ms-sgx-product-id": int,
    "x-ms-sgx-mrsigner": str,
    "x-ms-sgx-mrenclave": str,
    "x-ms-sgx-svn": int,
    "x-ms-sgx-ehd": str,
    "x-ms-sgx-report-data": str,
    "x-ms-sgx-config-id": str,
    "x-ms-sgx-config-svn": int,
    "x-ms-sgx-isv-extended-product-id": str,
    "x-ms-sgx-isv-family-id": str,
    "x-confnode-tcb-status": str,
    "x-confnode-advisory-ids": str,
    "x-confnode-collateral-expired": bool,
    "x-confnode-simulated": bool,
    "x-confnode-tcb-date": str,
    "x-confnode-fmspc": str,
}
#: The value type of every claim the service puts in the incoming set of an SGX attestation
#: (deprecated names included). :func:`~confnode.policy.parse_policy` checks conditions on these
#: claims against it, so that ``value=="true"`` on a Boolean claim, a claim name in the wrong case
#: or ``<`` on a string is an error instead of a condition that silently never holds.
SGX_CLAIM_TYPES: Mapping[str, type[ClaimValue]] = {
    **_SGX_TYPES,
    **{alias: _SGX_TYPES[name] for alias, name in LEGACY_INCOMING_CLAIMS.items()},
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def policy_hash(policy_text: str) -> str:
    """``x-ms-policy-hash``: BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy text))))), as MAA does."""
    inner = b64url(policy_text.encode("utf-8"))
    return b64url(hashlib.sha256(inner.encode("utf-8")).digest())
