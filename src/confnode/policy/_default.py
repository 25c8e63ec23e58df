"""The default SGX attestation policy and MAA's policy hash."""

from __future__ import annotations

import base64
import hashlib

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


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def policy_hash(policy_text: str) -> str:
    """``x-ms-policy-hash``: BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy text))))), as MAA does."""
    inner = b64url(policy_text.encode("utf-8"))
    return b64url(hashlib.sha256(inner.encode("utf-8")).digest())
