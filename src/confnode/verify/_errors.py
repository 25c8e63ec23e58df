"""One :class:`~confnode.errors.VerificationError` subclass per checklist step.

``step`` is a stable machine name (``--json`` prints it); the number in brackets in each class
docstring is the step of the checklist in :mod:`confnode.verify._verifier`. Messages say what was
found and what was expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from confnode.errors import VerificationError

if TYPE_CHECKING:
    from confnode.verify._result import VerificationResult

__all__ = [
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
]


class QuoteFormatUnsupported(VerificationError):
    """[1] Quote version, key type, vendor or TEE the verifier does not handle."""

    step = "quote-format"


class CertificationDataUnsupported(VerificationError):
    """[3] Certification data other than type 5 (PCK chain), e.g. type 3 (encrypted PPID)."""

    step = "certification-data"
    hint = (
        "fetch the PCK certificate for this platform from PCS/PCCS /pckcert and obtain a quote "
        "with certification data type 5"
    )


class UntrustedRoot(VerificationError):
    """[5] A chain ends in a root whose public key is not the pinned one."""

    step = "root-ca"
    hint = "pass --trust-root only for a simulated platform; production quotes chain to Intel"


class PckChainInvalid(VerificationError):
    """[4, 6] The PCK chain in the quote is not leaf → Intel PCK CA → root, correctly signed."""

    step = "pck-chain"


class PckExtensionInvalid(VerificationError):
    """[8] The PCK leaf lacks a well-formed SGX extension (OID 1.2.840.113741.1.13.1)."""

    step = "pck-extension"


class CrlMissing(VerificationError):
    """[9] A CRL is absent from the collateral and skipping was not requested."""

    step = "crl-missing"
    hint = "supply root_ca_crl and pck_crl, or pass --insecure-skip-crl (recorded in the result)"


class CrlInvalid(VerificationError):
    """[9, 12] A CRL is not signed by its issuer, its issuer does not match the chain, or it
    lacks nextUpdate, CRL Number or Authority Key Identifier (Intel's CRL profile)."""

    step = "crl"


class SigningChainInvalid(VerificationError):
    """[13] TCB Info / QE Identity issuer chain is not TCB Signing → root, correctly signed."""

    step = "signing-chain"


class CollateralSignatureInvalid(VerificationError):
    """[14] TCB Info or QE Identity signature does not verify over the exact signed bytes."""

    step = "collateral-signature"


class CollateralVersionUnsupported(VerificationError):
    """[15] TCB Info version not 2/3 or tcbType not 0, or QE Identity version/id unsupported."""

    step = "collateral-version"


class CollateralNotYetValid(VerificationError):
    """[16] Collateral issued after the verification time: the clock or the collateral is wrong."""

    step = "collateral-not-yet-valid"
    hint = "check --at (default: now) and that the collateral was fetched for this time"


class CollateralMismatch(VerificationError):
    """[17] TCB Info is for another TEE, or another platform (FMSPC / PCE-ID) than the PCK
    certificate."""

    step = "tcb-info-mismatch"
    hint = "fetch TCB Info for the FMSPC in the quote's PCK certificate"


class QeReportSignatureInvalid(VerificationError):
    """[18] The QE report is not signed by the PCK key."""

    step = "qe-report-signature"


class QeReportDataMismatch(VerificationError):
    """[19] QE report data does not bind the attestation key and QE authentication data."""

    step = "qe-report-data"


class QeIdentityMismatch(VerificationError):
    """[20] The quoting enclave is not the one described by the QE Identity, or the QE Identity
    is for the other TEE (``QE`` for SGX, ``TD_QE`` for TDX)."""

    step = "qe-identity"


class QuoteSignatureInvalid(VerificationError):
    """[21] The quote body is not signed by the attestation key."""

    step = "quote-signature"


class TcbLevelNotFound(VerificationError):
    """[22] No TCB level matches the PCK certificate's TCB (Intel 0xE066, TCB_NOT_SUPPORTED)."""

    step = "tcb-level"
    hint = "the TCB Info may be older than the platform's TCB; fetch current collateral"


class QeTcbLevelNotFound(TcbLevelNotFound):
    """[20] The QE's ISVSVN is below every QE Identity TCB level (QVL: TCB_NOT_SUPPORTED)."""

    step = "qe-tcb-level"


class TdxModuleMismatch(VerificationError):
    """[T1] The TD report's TDX module (MRSIGNERSEAM, SEAM attributes, module version) is not
    one the TDX TCB Info describes (QVL STATUS_TDX_MODULE_MISMATCH)."""

    step = "tdx-module"


class TdxTcbLevelNotFound(TcbLevelNotFound):
    """[T2] No TCB level with the platform's SGX TCB also has TDX component SVNs the TD report's
    TEE TCB SVN reaches (Intel TCB_NOT_SUPPORTED)."""

    step = "tdx-tcb-level"


class TdxModuleTcbLevelNotFound(TcbLevelNotFound):
    """[T3] The TDX module's ISVSVN is below every level of its module identity
    (Intel TCB_NOT_SUPPORTED)."""

    step = "tdx-module-tcb-level"


class QuoteRevoked(VerificationError):
    """[25] Genuine evidence, but revoked: a PCK certificate or CA in a CRL, or a revoked TCB
    level (Intel SGX_QL_QV_RESULT_REVOKED).

    Raised unless the caller passed ``allow_revoked=True``, so that no caller mistakes a revoked
    quote for a good one; ``result`` is the full verdict (status ``Revoked``) for reporting.
    """

    step = "revoked"
    hint = "the platform must be updated or re-provisioned; a revoked platform is never trusted"

    def __init__(self, message: str, result: VerificationResult) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[type[QuoteRevoked], tuple[str, VerificationResult]]:
        return (type(self), (self.message, self.result))  # picklable despite two arguments


class CollateralExpired(VerificationError):
    """[24] Some collateral part expired at the verification time (QvE expiration status 1)."""

    step = "collateral-expired"
    hint = "fetch fresh collateral, or pass --allow-expired-collateral to report it instead"
