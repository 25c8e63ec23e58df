"""Intel-QVL-equivalent verification of SGX and TDX DCAP quotes (pure: no I/O, explicit time).

:func:`verify_quote` runs the numbered checklist documented in :mod:`confnode.verify._verifier`
and returns, by the quote's TEE type, a :class:`VerifiedQuote` (SGX enclave, ``.enclave``) or a
:class:`VerifiedTdQuote` (TDX, ``.td`` with MRTD, RTMR0-3, report data, SEAM and TD fields, and
``.tdx_module``); :data:`VerificationResult` is the union. Each failed step raises its own
:class:`~confnode.errors.VerificationError` subclass exported here.

API::

    verify_quote(quote: bytes | Quote, collateral: Collateral, *, at: datetime,
                 trusted_root: bytes | None = None, allow_expired_collateral: bool = False,
                 insecure_skip_crl: bool = False, allow_revoked: bool = False,
                 ) -> VerifiedQuote | VerifiedTdQuote

A TDX quote needs TDX collateral: TCB Info v3 with ``id`` ``"TDX"`` (``tdxtcbcomponents``,
``tdxModule``, ``tdxModuleIdentities``) and the ``TD_QE`` Enclave Identity; SGX collateral for a
TDX quote (or the reverse) fails with :class:`CollateralMismatch` / :class:`QeIdentityMismatch`.

Revocation: a revoked quote raises :class:`QuoteRevoked` (its ``.result`` holds the verdict)
unless ``allow_revoked=True``, which returns it with ``status`` ``Revoked`` for callers that
report revocation as a verdict (the CLI). ``TDRelaunchAdvised`` /
``TDRelaunchAdvisedConfigurationNeeded`` (TDX only) are returned like any other TCB status.
"""

from __future__ import annotations

from confnode.verify._chain import clear_chain_caches
from confnode.verify._collateral import clear_collateral_caches
from confnode.verify._errors import (
    CertificationDataUnsupported,
    CollateralExpired,
    CollateralMismatch,
    CollateralNotYetValid,
    CollateralSignatureInvalid,
    CollateralVersionUnsupported,
    CrlInvalid,
    CrlMissing,
    PckChainInvalid,
    PckExtensionInvalid,
    QeIdentityMismatch,
    QeReportDataMismatch,
    QeReportSignatureInvalid,
    QeTcbLevelNotFound,
    QuoteFormatUnsupported,
    QuoteRevoked,
    QuoteSignatureInvalid,
    SigningChainInvalid,
    TcbLevelNotFound,
    TdxModuleMismatch,
    TdxModuleTcbLevelNotFound,
    TdxTcbLevelNotFound,
    UntrustedRoot,
)
from confnode.verify._result import (
    VerificationResult,
    VerifiedEnclave,
    VerifiedQuote,
    VerifiedTd,
    VerifiedTdQuote,
    VerifiedTdxModule,
)
from confnode.verify._root import INTEL_SGX_ROOT_CA_PUBLIC_KEY
from confnode.verify._verifier import clear_quote_caches, verify_quote

__all__ = [
    "INTEL_SGX_ROOT_CA_PUBLIC_KEY",
    "CertificationDataUnsupported",
    "CollateralExpired",
    "CollateralMismatch",
    "CollateralNotYetValid",
    "CollateralSignatureInvalid",
    "CollateralVersionUnsupported",
    "CrlInvalid",
    "CrlMissing",
    "PckChainInvalid",
    "PckExtensionInvalid",
    "QeIdentityMismatch",
    "QeReportDataMismatch",
    "QeReportSignatureInvalid",
    "QeTcbLevelNotFound",
    "QuoteFormatUnsupported",
    "QuoteRevoked",
    "QuoteSignatureInvalid",
    "SigningChainInvalid",
    "TcbLevelNotFound",
    "TdxModuleMismatch",
    "TdxModuleTcbLevelNotFound",
    "TdxTcbLevelNotFound",
    "UntrustedRoot",
    "VerificationResult",
    "VerifiedEnclave",
    "VerifiedQuote",
    "VerifiedTd",
    "VerifiedTdQuote",
    "VerifiedTdxModule",
    "clear_caches",
    "verify_quote",
]


def clear_caches() -> None:
    """Forget every cached chain, collateral preparation and signature check."""
    clear_quote_caches()
    clear_collateral_caches()
    clear_chain_caches()
