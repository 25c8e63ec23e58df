"""Intel-QVL-equivalent verification of SGX DCAP quotes (pure: no I/O, explicit time).

:func:`verify_quote` runs the numbered checklist documented in :mod:`confnode.verify._verifier`
and returns a :class:`VerifiedQuote`; each failed step raises its own
:class:`~confnode.errors.VerificationError` subclass exported here.
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
    QuoteSignatureInvalid,
    SigningChainInvalid,
    TcbLevelNotFound,
    UntrustedRoot,
)
from confnode.verify._result import VerifiedEnclave, VerifiedQuote
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
    "QuoteSignatureInvalid",
    "SigningChainInvalid",
    "TcbLevelNotFound",
    "UntrustedRoot",
    "VerifiedEnclave",
    "VerifiedQuote",
    "clear_caches",
    "verify_quote",
]


def clear_caches() -> None:
    """Forget every cached chain, collateral preparation and signature check."""
    clear_quote_caches()
    clear_collateral_caches()
    clear_chain_caches()
