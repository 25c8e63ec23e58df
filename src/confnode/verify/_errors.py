"""One :class:`~confnode.errors.VerificationError` subclass per checklist step.

``step`` is a stable machine name (``--json`` prints it); the number in brackets in each class
docstring is the step of the checklist in :mod:`confnode.verify._verifier`. Messages say what was
found and what was expected.
"""

from __future__ import annotations

from confnode.errors import VerificationError

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
    "QuoteSignatureInvalid",
    "SigningChainInvalid",
    "TcbLevelNotFound",
    "UntrustedRoot",
]


class QuoteFormatUnsupported(VerificationError):
    """[1] Quote version, key type, vendor or TEE the verifier does not handle (TDX for now)."""

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
    """[9, 12] A CRL is not signed by its issuer, or its issuer does not match the chain."""

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
    """[17] TCB Info is for another platform (FMSPC / PCE-ID) than the PCK certificate."""

    step = "tcb-info-mismatch"
    hint = "fetch TCB Info for the FMSPC in the quote's PCK certificate"


class QeReportSignatureInvalid(VerificationError):
    """[18] The QE report is not signed by the PCK key."""

    step = "qe-report-signature"


class QeReportDataMismatch(VerificationError):
    """[19] QE report data does not bind the attestation key and QE authentication data."""

    step = "qe-report-data"


class QeIdentityMismatch(VerificationError):
    """[20] The quoting enclave is not the one described by the QE Identity."""

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


class CollateralExpired(VerificationError):
    """[24] Some collateral part expired at the verification time (QvE expiration status 1)."""

    step = "collateral-expired"
    hint = "fetch fresh collateral, or pass --allow-expired-collateral to report it instead"
