"""MAA-compatible attestation service and key release.

:class:`AttestationService` builds the Starlette app around an :class:`Appraiser` (the quote
verifier seam), a :class:`confnode.tokens.KeyRing`, a :class:`PolicyStore` and a
:class:`KeyStore`. The CLI (``confnode attestation serve``) wires the real DCAP appraiser.
``POST /attest/TdxVm`` needs a :class:`TdAppraiser` (:class:`DcapTdAppraiser`: TD quotes with
TDX collateral) passed as ``td_appraiser``.
"""

from __future__ import annotations

from confnode.attestation._app import (
    API_VERSIONS,
    ATTESTATION_TYPE,
    DEFAULT_MAX_BODY,
    AttestationService,
    BodyTooLarge,
)
from confnode.attestation._claims import AttestRequest, BindingMismatch, parse_attest_request
from confnode.attestation._evidence import Appraiser, Evidence
from confnode.attestation._keys import KeyNotFound, KeyStore, ReleasableKey, default_release_policy
from confnode.attestation._policies import (
    PolicyJwsError,
    PolicyStore,
    StoredPolicy,
    UntrustedPolicySigner,
    unsigned_policy_jws,
)
from confnode.attestation._tdx import (
    DEFAULT_TDX_POLICY,
    TDX_ATTESTATION_TYPE,
    DcapTdAppraiser,
    TdAppraiser,
    TdEvidence,
)

__all__ = [
    "API_VERSIONS",
    "ATTESTATION_TYPE",
    "DEFAULT_MAX_BODY",
    "DEFAULT_TDX_POLICY",
    "TDX_ATTESTATION_TYPE",
    "Appraiser",
    "AttestRequest",
    "AttestationService",
    "BindingMismatch",
    "BodyTooLarge",
    "DcapTdAppraiser",
    "Evidence",
    "KeyNotFound",
    "KeyStore",
    "PolicyJwsError",
    "PolicyStore",
    "ReleasableKey",
    "StoredPolicy",
    "TdAppraiser",
    "TdEvidence",
    "UntrustedPolicySigner",
    "default_release_policy",
    "parse_attest_request",
    "unsigned_policy_jws",
]
