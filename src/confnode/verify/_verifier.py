"""Intel-QVL-equivalent verification of DCAP quotes: SGX (v3) and TDX (v4/v5), ECDSA P-256.

The checklist mirrors Intel QVL/QvE (``sgx-dcap.md`` §3; QVL requirement tags in brackets). Each
step is coded under its number below and fails with its own
:class:`~confnode.errors.VerificationError` subclass (``.step`` names it). "Expiry" is never a
failure on its own: it is folded into ``collateral_expired`` (step 24), as QvE does. Steps
marked TDX run for TD quotes only (QVL ``QuoteVerifier::verify``, ``TcbLevelCheck``,
``TdxModuleCheck``, ``TDRelaunchCheck``).

A. Quote structure
   1. SGX: version 3 with an SGX report body; TDX: TEE type 0x81, version 4/5 with a TD report
      1.0/1.5 body. ECDSA-P256 attestation key (codec), Intel QE vendor id.
                                                                    QuoteFormatUnsupported
   2. Sizes consistent and consumed exactly: :func:`confnode.sgx.parse_quote` (InvalidQuote);
      v4/v5 certification data must be type 6 (QE report certification data) wrapping the QE
      report, its signature, QE auth data and the inner certification data.
   3. (Inner) certification data type 5 (PCK chain); type 3 needs the PCK certificate fetched
      from PCS/PCCS ``/pckcert`` first.                              CertificationDataUnsupported
B. PCK chain to the pinned root                               (cached per chain bytes + root key)
   4. PEM chain of exactly 3 certificates.                                        PckChainInvalid
   5. Root: public key == pinned key (Intel's unless ``trusted_root``), CN "SGX Root CA",
      self-signed.                                                   UntrustedRoot / PckChainInvalid
   6. Intermediate CN contains "CA", signed by the root; leaf CN "SGX PCK Certificate", signed
      by the intermediate [4.1.2.4.4].                                            PckChainInvalid
   7. notAfter of each certificate → earliest expiration (non-fatal, step 24; QVL ignores
      notBefore).
   8. SGX extension: FMSPC, PCE-ID, component SVNs, PCESVN, SGX type.          PckExtensionInvalid
C. CRLs                                            (signatures once per bundle, lookups per quote)
   9. Root CA CRL signed and named by the root, PCK CRL signed and named by its issuer chain's
      CA, issuer CNs contain "CA", both with nextUpdate, CRL Number and Authority Key Identifier
      (QVL ``CrlStore``); PCK CRL issuer == PCK leaf issuer and the same CA key [4.1.2.4.6]. A
      missing CRL fails unless ``insecure_skip_crl`` (then ``crl_checked=False``); a supplied
      CRL is always checked.                                          CrlInvalid / CrlMissing
  10. Revocation: PCK leaf in the PCK CRL, intermediate or TCB Signing certificate in the Root
      CA CRL → status ``Revoked`` (step 25).
  11. CRL nextUpdate → earliest expiration (non-fatal, step 24).
  12. PCK CRL issuer chain: exactly 2 (CA, root), verified as in 5–6.              CrlInvalid
D. TCB Info and QE Identity                                                   (once per bundle)
  13. Issuer chains: exactly 2, leaf CN "SGX TCB Signing", signed by the pinned root.
                                                                             SigningChainInvalid
  14. Signatures over the exact signed bytes.                         CollateralSignatureInvalid
  15. TCB Info version 2/3 with tcbType 0; QE Identity "QE" or "TD_QE" version 2.
                                                                    CollateralVersionUnsupported
  16. issueDate / thisUpdate after ``at`` → rejected (QVL accepts; dcap-qvl and oasis reject:
      either the clock or the collateral is wrong). nextUpdate → step 24.  CollateralNotYetValid
E. Quote-internal checks (QVL ``QuoteVerifier::verify`` order)
  17. TCB Info for the quote's TEE (SGX: id "SGX"; TDX: version 3, id "TDX") [4.1.2.4.9]; PCK
      FMSPC and PCE-ID == TCB Info fmspc / pceId [4.1.2.4.10].               CollateralMismatch
  T1. TDX: the TDX module. ``tee_tcb_svn[1]`` (module major version) > 0 selects
      ``tdxModuleIdentities`` entry ``TDX_<version, 2 hex digits>`` (none → mismatch), else
      ``tdxModule``; MRSIGNERSEAM == its mrsigner, SEAMATTRIBUTES all zero and == its attributes
      (QVL compares unmasked) [4.1.2.4.11].                                   TdxModuleMismatch
  18. QE report signed by the PCK key [4.1.2.4.12].                     QeReportSignatureInvalid
  19. QE report_data == SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes [4.1.2.4.13;
      the zero tail is stricter than QVL].                                   QeReportDataMismatch
  20. QE Identity for the quote's TEE ("QE" for SGX, "TD_QE" for TDX); QE report vs QE
      Identity: miscselect (little-endian uint32) and attributes under their masks, MRSIGNER,
      ISVPRODID [4.1.2.4.14] → QeIdentityMismatch; QE TCB level: first level in document order
      with isvsvn ≤ the QE's ISVSVN [4.1.2.4.15]; if none, QeTcbLevelNotFound after step 22
      (QVL ``checkTcbLevel`` order).
  21. Quote signature by the attestation key over header ‖ body [4.1.2.4.16].
                                                                          QuoteSignatureInvalid
F. Verdict [4.1.2.4.17]
  22. Platform TCB level: TCB levels sorted descending (SGX component SVNs, PCESVN, then TDX
      component SVNs for TDX TCB Info), first level the PCK certificate's SVNs and PCESVN all
      reach.                                                                  TcbLevelNotFound
  T2. TDX: TDX TCB level = first level (from that one on) whose SGX part matches too and whose
      ``tdxtcbcomponents`` the TD report's ``tee_tcb_svn`` reaches (components 0–1, the module's
      SVN and version, skipped when the module version is > 0).             TdxTcbLevelNotFound
  T3. TDX module TCB: version 0 → UpToDate; else the module identity's first TCB level with
      isvsvn ≤ ``tee_tcb_svn[0]``.                                   TdxModuleTcbLevelNotFound
  T4. TDX status = TDX level status converged with the module status (QVL
      ``convergeTcbStatusWithTdxModuleStatus``); Revoked ends here. TD 1.5 only: QVL
      ``checkForRelaunch`` — QE not out of date, SGX level fine, TDX status OutOfDate… because
      of an OutOfDate module, and ``tee_tcb_svn2`` (the module now running) reaches the newest
      level → ``TDRelaunchAdvised`` (``…ConfigurationNeeded`` if SGX or TDX status needs
      configuration).
  23. Converge the platform (SGX) or TDX status with the QE status (QVL
      ``convergeTcbStatusWithQeTcbStatus``). Advisory IDs: the platform level's (TDX: the TDX
      level's and the TDX module level's); QvE reports no QE advisories.
  24. Collateral expiry: earliest expiration ≤ ``at`` → ``collateral_expired``; raised unless
      ``allow_expired_collateral``.                                         CollateralExpired
  25. Revoked (step 10, or a Revoked level): raised unless ``allow_revoked``, which returns
      the verdict with status ``Revoked``.                                       QuoteRevoked

Reuse: steps 9–16 that involve only the bundle are computed once per ``Collateral`` object and
root key (:mod:`confnode.verify._collateral`); steps 4–8 once per distinct PCK chain; the QE
report signature (step 18) once per distinct (PCK key, QE report, signature) — all three are
pure functions of the bytes they are keyed by. Everything that reads the quote or ``at`` runs on
every call.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from confnode.collateral import (
    Collateral,
    QeTcbLevel,
    TcbLevel,
    TcbStatus,
    TdxModuleIdentity,
    parse_certificate_der,
)
from confnode.errors import InvalidCollateral, InvalidInput, InvalidQuote
from confnode.sgx.pck import PckExtension, parse_pck_extension
from confnode.sgx.quote import (
    EcdsaSigData,
    EcdsaSigDataV4,
    Quote,
    TdReportBody,
    parse_quote,
)
from confnode.sgx.structs import INTEL_QE_VENDOR_ID, EnclaveReportBody
from confnode.verify._chain import LruCache, ThreeCertChain, check_three, der_of
from confnode.verify._collateral import PreparedCollateral, prepared_for
from confnode.verify._crypto import key_point, load_raw_key, verify_raw_signature
from confnode.verify._errors import (
    CertificationDataUnsupported,
    CollateralExpired,
    CollateralMismatch,
    CollateralNotYetValid,
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
    TcbLevelNotFound,
    TdxModuleMismatch,
    TdxModuleTcbLevelNotFound,
    TdxTcbLevelNotFound,
)
from confnode.verify._result import (
    VerificationResult,
    VerifiedEnclave,
    VerifiedQuote,
    VerifiedTd,
    VerifiedTdQuote,
    VerifiedTdxModule,
)
from confnode.verify._root import INTEL_SGX_ROOT_CA_PUBLIC_KEY, root_key_from_certificate

__all__ = ["clear_quote_caches", "verify_quote"]


@dataclass(frozen=True, slots=True)
class _PckChain:
    """Steps 4–8 for one chain: the verified certificates and what later steps read from them."""

    chain: ThreeCertChain
    extension: PckExtension
    leaf_key_point: bytes
    leaf_issuer: bytes
    leaf_serial: int
    intermediate_serial: int
    intermediate_key_point: bytes


_PCK_CHAINS: LruCache[tuple[bytes, bytes], _PckChain] = LruCache(256)
_QE_REPORT_SIGNATURES: LruCache[tuple[bytes, bytes, bytes], bool] = LruCache(1024)
_ROOT_KEYS: LruCache[bytes, bytes] = LruCache(16)
#: Attestation keys by raw point: every quote from one quoting enclave carries the same key.
_ATTESTATION_KEYS: LruCache[bytes, ec.EllipticCurvePublicKey] = LruCache(1024)

#: Signature data up to the QE report: length (4), signature (64), attestation key (64); in
#: v4/v5 also the type-6 certification data header (type 2, size 4). sgx-dcap.md §1.3-1.5.
_TO_QE_REPORT_V3 = 4 + 64 + 64
_TO_QE_REPORT_V4 = _TO_QE_REPORT_V3 + 6
_QE_REPORT_SIZE = 384

#: Table 3.1, QE column "OutOfDate" (any QE status other than UpToDate and Revoked).
_WITH_QE_OUT_OF_DATE = {
    TcbStatus.UP_TO_DATE: TcbStatus.OUT_OF_DATE,
    TcbStatus.SW_HARDENING_NEEDED: TcbStatus.OUT_OF_DATE,
    TcbStatus.CONFIGURATION_NEEDED: TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
    TcbStatus.OUT_OF_DATE: TcbStatus.OUT_OF_DATE,
    TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED: TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
}


def clear_quote_caches() -> None:
    """Drop the PCK chain, QE report signature and trusted-root caches (benchmarks, tests)."""
    _PCK_CHAINS.clear()
    _QE_REPORT_SIGNATURES.clear()
    _ROOT_KEYS.clear()
    _ATTESTATION_KEYS.clear()


def _rfc4514(name: x509.Name | None) -> str:
    return "" if name is None else name.rfc4514_string()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _root_key(trusted_root: bytes | None) -> bytes:
    if trusted_root is None:
        return INTEL_SGX_ROOT_CA_PUBLIC_KEY
    key = _ROOT_KEYS.get(trusted_root)
    if key is None:
        key = root_key_from_certificate(trusted_root)
        _ROOT_KEYS.put(trusted_root, key)
    return key


def _shared(cert: x509.Certificate, der: bytes) -> x509.Certificate:
    """The collateral parser's object for these exact DER bytes, else ``cert`` itself.

    The quote's root and PCK CA are the collateral's root and PCK CRL issuer; using the object
    the bundle's parse already decoded (names, key) avoids decoding them twice. Same bytes, so
    every check gives the same result; one the collateral parser rejects stays as it was.
    """
    try:
        return parse_certificate_der(der)
    except InvalidCollateral:
        return cert


def _pck_chain(pem: bytes, root_key: bytes) -> _PckChain:
    cache_key = (root_key, pem)
    found = _PCK_CHAINS.get(cache_key)
    if found is not None:
        return found
    # [4] Exactly three certificates.
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PckChainInvalid(
            f"PCK chain in the quote does not decode as PEM certificates ({exc}); expected "
            "PCK leaf, intermediate CA and root"
        ) from None
    ders = der_of(certs)
    if len(certs) == 3:
        certs = [certs[0], *(_shared(c, d) for c, d in zip(certs[1:], ders[1:], strict=True))]
    # [5, 6] Root pinned by key, CN rules, signatures (7: notAfter kept for step 24).
    chain = check_three(
        certs,
        ders,
        root_key,
        what="PCK chain",
        leaf_cn="SGX PCK Certificate",
        error=PckChainInvalid,
    )
    # [8] The SGX extension.
    try:
        extension = parse_pck_extension(chain.leaf)
    except InvalidQuote as exc:
        raise PckExtensionInvalid(f"PCK certificate SGX extension: {exc.message}") from None
    entry = _PckChain(
        chain=chain,
        extension=extension,
        leaf_key_point=key_point(chain.leaf_key),
        leaf_issuer=chain.leaf.issuer.public_bytes(),
        leaf_serial=chain.leaf.serial_number,
        intermediate_serial=chain.intermediate.serial_number,
        intermediate_key_point=key_point(chain.intermediate.public_key()),
    )
    _PCK_CHAINS.put(cache_key, entry)
    return entry


def _qe_report_signed(pck: _PckChain, qe_report: bytes, signature: bytes) -> bool:
    key = (pck.leaf_key_point, qe_report, signature)
    if _QE_REPORT_SIGNATURES.get(key):
        return True
    valid = verify_raw_signature(pck.chain.leaf_key, signature, qe_report)
    if valid:
        _QE_REPORT_SIGNATURES.put(key, True)
    return valid


def _match_qe_identity(
    qe: EnclaveReportBody, qe_bytes: bytes, prepared: PreparedCollateral
) -> QeTcbLevel | None:
    """Step 20: identity mismatches raise; the QE TCB level is ``None`` when the QE's ISVSVN is
    below every level (QVL reports that only at step 22, after the quote signature)."""
    identity = prepared.qe_identity
    mask = identity.miscselect_mask_le
    if qe.misc_select & mask != identity.miscselect_le:
        raise QeIdentityMismatch(
            f"QE miscselect {qe.misc_select:#010x} masked with {mask:#010x} is "
            f"{qe.misc_select & mask:#010x}; expected {identity.miscselect_le:#010x} "
            "(QE Identity, little-endian)"
        )
    attributes = qe_bytes[48:64]
    masked = (
        int.from_bytes(attributes, "big") & int.from_bytes(identity.attributes_mask, "big")
    ).to_bytes(16, "big")
    if masked != identity.attributes:
        raise QeIdentityMismatch(
            f"QE attributes {attributes.hex()} masked with {identity.attributes_mask.hex()} are "
            f"{masked.hex()}; expected {identity.attributes.hex()}"
        )
    if qe.mr_signer != identity.mrsigner:
        raise QeIdentityMismatch(
            f"QE MRSIGNER {qe.mr_signer.hex()}; expected {identity.mrsigner.hex()}"
        )
    if qe.isv_prod_id != identity.isvprodid:
        raise QeIdentityMismatch(f"QE ISVPRODID {qe.isv_prod_id}; expected {identity.isvprodid}")
    for level in prepared.qe_tcb_levels:
        if level.isvsvn <= qe.isv_svn:
            return level
    return None


def _match_tcb_level(extension: PckExtension, prepared: PreparedCollateral) -> int:
    """Step 22: the index (in QVL order) of the first level the PCK certificate's TCB reaches."""
    svns = extension.tcb.comp_svns
    pcesvn = extension.tcb.pcesvn
    for index, level in enumerate(prepared.tcb_levels):
        if pcesvn >= level.pcesvn and all(map(operator.ge, svns, level.sgx_components)):
            return index
    raise TcbLevelNotFound(
        f"PCK TCB (component SVNs {list(svns)}, PCESVN {pcesvn}) is below every TCB level of "
        f"FMSPC {prepared.tcb_info.fmspc.hex().upper()}; expected a matching level (Intel "
        "SGX_QL_TCB_NOT_SUPPORTED 0xE066)"
    )


def _match_tdx_tcb_level(
    extension: PckExtension, tee_tcb_svn: bytes, prepared: PreparedCollateral, start: int
) -> TcbLevel:
    """Step T2 (QVL ``matchTcbLevels``): from the SGX level on, the first level whose SGX part
    and TDX components both match; components 0-1 are the module's, skipped for version > 0."""
    svns = extension.tcb.comp_svns
    pcesvn = extension.tcb.pcesvn
    first = 2 if tee_tcb_svn[1] > 0 else 0
    for level in prepared.tcb_levels[start:]:
        tdx = level.tdx_components or ()
        if (
            pcesvn >= level.pcesvn
            and all(map(operator.ge, svns, level.sgx_components))
            and all(map(operator.ge, tee_tcb_svn[first : len(tdx)], tdx[first:]))
        ):
            return level
    raise TdxTcbLevelNotFound(
        f"TEE TCB SVN {tee_tcb_svn.hex()} is below the TDX components of every TCB level that "
        f"matches the platform's SGX TCB (FMSPC {prepared.tcb_info.fmspc.hex().upper()}); "
        "expected a matching level (Intel TCB_NOT_SUPPORTED)"
    )


def _module_identity(prepared: PreparedCollateral, version: int) -> TdxModuleIdentity:
    """QVL ``findTdxModuleIdentity``: ``TDX_<version as two upper-case hex digits>``."""
    wanted = f"TDX_{version:02X}"
    for identity in prepared.tcb_info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return identity
    found = ", ".join(i.id for i in prepared.tcb_info.tdx_module_identities) or "none"
    raise TdxModuleMismatch(
        f"TDX module version {version}: TCB Info has no module identity {wanted!r} (found "
        f"{found}); expected one for the module in the TD report"
    )


def _check_tdx_module(td: TdReportBody, prepared: PreparedCollateral) -> TdxModuleIdentity | None:
    """Step T1: MRSIGNERSEAM and SEAMATTRIBUTES against the module identity or ``tdxModule``."""
    module = prepared.tcb_info.tdx_module
    version = td.tee_tcb_svn[1]
    identity = _module_identity(prepared, version) if version > 0 else None
    if identity is not None:
        what, mrsigner, attributes = identity.id, identity.mrsigner, identity.attributes
    elif module is not None:
        what, mrsigner, attributes = "tdxModule", module.mrsigner, module.attributes
    else:  # the parser requires tdxModule in TDX TCB Info
        raise TdxModuleMismatch("TDX TCB Info has no tdxModule; expected one")
    if td.mrsigner_seam != mrsigner:
        raise TdxModuleMismatch(
            f"MRSIGNERSEAM {td.mrsigner_seam.hex()}; expected {mrsigner.hex()} ({what})"
        )
    if any(td.seam_attributes) or td.seam_attributes != attributes:
        raise TdxModuleMismatch(
            f"SEAMATTRIBUTES {td.seam_attributes.hex()}; expected all zero and equal to "
            f"{attributes.hex()} ({what}; QVL compares them unmasked)"
        )
    return identity


def _module_level(td: TdReportBody, identity: TdxModuleIdentity | None) -> QeTcbLevel | None:
    """Step T3: the module identity's TCB level for ``tee_tcb_svn[0]`` (None for version 0)."""
    if identity is None:
        return None
    isvsvn = td.tee_tcb_svn[0]
    for level in identity.tcb_levels:
        if isvsvn >= level.isvsvn:
            return level
    lowest = min((level.isvsvn for level in identity.tcb_levels), default=0)
    raise TdxModuleTcbLevelNotFound(
        f"TDX module ISVSVN {isvsvn} (identity {identity.id}) is below every module TCB level; "
        f"expected at least {lowest}"
    )


_NEEDS_CONFIGURATION = {
    TcbStatus.CONFIGURATION_NEEDED,
    TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
}
_SGX_FINE_FOR_RELAUNCH = {
    TcbStatus.UP_TO_DATE,
    TcbStatus.SW_HARDENING_NEEDED,
    TcbStatus.CONFIGURATION_NEEDED,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
}


def _converge_module(tdx: TcbStatus, module: TcbStatus) -> TcbStatus:
    """QVL ``convergeTcbStatusWithTdxModuleStatus``."""
    if module is TcbStatus.OUT_OF_DATE:
        if tdx in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE
        if tdx in (TcbStatus.CONFIGURATION_NEEDED, TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    if module is TcbStatus.REVOKED:
        return TcbStatus.REVOKED
    return tdx


def _relaunch(
    td: TdReportBody,
    prepared: PreparedCollateral,
    sgx: TcbStatus,
    tdx: TcbStatus,
    module: TcbStatus,
    qe: TcbStatus,
) -> TcbStatus:
    """Step T4, QVL ``checkForRelaunch`` (TD 1.5): would relaunching make the TD up to date?"""
    svn2 = td.tee_tcb_svn2
    if (
        svn2 is None
        or qe is not TcbStatus.UP_TO_DATE
        or sgx not in _SGX_FINE_FOR_RELAUNCH
        or tdx not in (TcbStatus.OUT_OF_DATE, TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED)
        or module is not TcbStatus.OUT_OF_DATE
    ):
        return tdx
    latest = prepared.tcb_levels[0].tdx_components or (0,) * 16
    if svn2[1] == 0:
        newest_module_svn = latest[0]
    else:
        levels = _module_identity(prepared, svn2[1]).tcb_levels
        newest_module_svn = levels[0].isvsvn
    if svn2[0] >= newest_module_svn and svn2[2] >= latest[2]:
        if sgx in _NEEDS_CONFIGURATION or tdx in _NEEDS_CONFIGURATION:
            return TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return TcbStatus.TD_RELAUNCH_ADVISED
    return tdx


def _converge(platform: TcbStatus, qe: TcbStatus) -> TcbStatus:
    """QVL ``convergeTcbStatusWithQeTcbStatus`` (sgx-dcap.md table 3.1)."""
    if qe is TcbStatus.REVOKED or platform is TcbStatus.REVOKED:
        return TcbStatus.REVOKED
    if qe is TcbStatus.UP_TO_DATE:
        return platform
    return _WITH_QE_OUT_OF_DATE.get(platform, platform)


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(advisory for group in groups for advisory in group))


def _enclave_identity(parsed: Quote, body: EnclaveReportBody) -> VerifiedEnclave:
    return VerifiedEnclave(
        mr_enclave=body.mr_enclave,
        mr_signer=body.mr_signer,
        isv_prod_id=body.isv_prod_id,
        isv_svn=body.isv_svn,
        debug=body.attributes.debug,
        attributes=parsed.raw[96:112],
        misc_select=body.misc_select,
        config_id=body.config_id,
        config_svn=body.config_svn,
        isv_ext_prod_id=body.isv_ext_prod_id,
        isv_family_id=body.isv_family_id,
    )


def _td_identity(td: TdReportBody) -> VerifiedTd:
    rtmr0, rtmr1, rtmr2, rtmr3 = td.rt_mr
    return VerifiedTd(
        mr_td=td.mr_td,
        rtmr0=rtmr0,
        rtmr1=rtmr1,
        rtmr2=rtmr2,
        rtmr3=rtmr3,
        report_data=td.report_data,
        mr_seam=td.mr_seam,
        mr_signer_seam=td.mrsigner_seam,
        seam_attributes=td.seam_attributes,
        td_attributes=td.td_attributes,
        xfam=td.xfam,
        mr_config_id=td.mr_config_id,
        mr_owner=td.mr_owner,
        mr_owner_config=td.mr_owner_config,
        tee_tcb_svn=td.tee_tcb_svn,
        debug=td.td_debug,
        tee_tcb_svn2=td.tee_tcb_svn2,
        mr_servicetd=td.mr_servicetd,
    )


def verify_quote(
    quote: bytes | Quote,
    collateral: Collateral,
    *,
    at: datetime,
    trusted_root: bytes | None = None,
    allow_expired_collateral: bool = False,
    insecure_skip_crl: bool = False,
    allow_revoked: bool = False,
) -> VerificationResult:
    """Verify an SGX or TDX quote against collateral as of ``at``; see the module docstring.

    Returns a :class:`VerifiedQuote` for an SGX quote and a :class:`VerifiedTdQuote` for a TDX
    quote. ``trusted_root`` is the DER certificate of an alternative root (e.g. a simulated
    platform's); it is pinned by its public key exactly as Intel's is. Raises
    :class:`InvalidQuote` for bytes that do not parse, :class:`QuoteRevoked` for revoked
    evidence unless ``allow_revoked`` (then the result has status ``Revoked``), and a
    :class:`~confnode.errors.VerificationError` subclass for any other failed step.
    """
    if at.tzinfo is None:
        raise InvalidInput(f"verification time {at.isoformat()} has no timezone; expected UTC")
    at = at.astimezone(UTC)
    root_key = _root_key(trusted_root)

    # ---------------------------------------------------------------- A. quote structure
    # [2] Structure and sizes (the codec raises InvalidQuote).
    parsed = quote if isinstance(quote, Quote) else parse_quote(quote)
    header = parsed.header
    # [1] Version, TEE, body, vendor (key type: the codec).
    if header.vendor_id != INTEL_QE_VENDOR_ID:
        raise QuoteFormatUnsupported(
            f"QE vendor id {header.vendor_id.hex()}; expected Intel's {INTEL_QE_VENDOR_ID.hex()}"
        )
    signature_data = parsed.signature_data
    body = parsed.body
    td: TdReportBody | None = None
    if isinstance(body, TdReportBody) and isinstance(signature_data, EcdsaSigDataV4):
        td = body
        qe_start = len(parsed.signed_region) + _TO_QE_REPORT_V4
    elif isinstance(body, EnclaveReportBody) and isinstance(signature_data, EcdsaSigData):
        sgx_body = body
        qe_start = len(parsed.signed_region) + _TO_QE_REPORT_V3
    else:
        raise QuoteFormatUnsupported(
            f"SGX quote version {header.version}; expected version 3 (no SGX v4/v5 quote is "
            "produced by Intel's QE)"
        )
    # [3] Certification data type 5 (nested in type 6 for v4/v5: the codec).
    certification = signature_data.certification
    pem = certification.pck_chain_pem
    if pem is None:
        detail = ""
        ppid = certification.encrypted_ppid
        if ppid is not None:
            detail = (
                f" (encrypted PPID with CPUSVN {ppid.cpusvn.hex()}, PCESVN {ppid.pcesvn}, "
                f"PCE-ID {ppid.pceid.hex()})"
            )
        raise CertificationDataUnsupported(
            f"certification data type {certification.type}{detail}; expected type 5 (PCK "
            "certificate chain): the PCK certificate must be supplied, fetched from PCS/PCCS "
            "/pckcert"
        )

    # ---------------------------------------------------------------- B. PCK chain [4–8]
    pck = _pck_chain(pem, root_key)
    extension = pck.extension

    # ---------------------------------------------------------------- C, D. collateral
    # [9–16] once per bundle; the quote-dependent parts follow.
    prepared = prepared_for(collateral, root_key)
    # [9] CRLs present, PCK CRL issued by the PCK leaf's CA.
    crl_checked = prepared.root_revoked is not None and prepared.pck_revoked is not None
    if not crl_checked and not insecure_skip_crl:
        missing = [
            name
            for name, value in (
                ("Root CA CRL", prepared.root_revoked),
                ("PCK CRL", prepared.pck_revoked),
            )
            if value is None
        ]
        raise CrlMissing(f"{' and '.join(missing)} not supplied; expected both CRLs")
    if prepared.pck_crl_issuer is not None:
        if prepared.pck_crl_issuer != pck.leaf_issuer:
            raise CrlInvalid(
                f"PCK CRL issuer {_rfc4514(prepared.pck_crl_issuer_name)!r}; expected the PCK "
                f"certificate's issuer {pck.chain.leaf.issuer.rfc4514_string()!r} (a "
                "Processor-CA CRL for a Platform-CA quote, or vice versa?)"
            )
        if prepared.pck_crl_issuer_key != pck.intermediate_key_point:
            raise CrlInvalid(
                "PCK CRL is signed by a different key than the PCK chain's intermediate CA; "
                "expected the same CA key"
            )
    # [10] Revocation → Revoked verdict.
    revocation = prepared.revocation
    if prepared.pck_revoked is not None and pck.leaf_serial in prepared.pck_revoked:
        revocation = f"PCK certificate (serial {pck.leaf_serial:x}) is listed in the PCK CRL"
    if prepared.root_revoked is not None and pck.intermediate_serial in prepared.root_revoked:
        revocation = (
            f"PCK intermediate CA (serial {pck.intermediate_serial:x}) is listed in the Root CA CRL"
        )
    # [16] Nothing issued after `at`.
    if prepared.latest_issue > at:
        raise CollateralNotYetValid(
            f"{prepared.latest_issue_what} is {_iso(prepared.latest_issue)}, after the "
            f"verification time {_iso(at)}; expected collateral issued at or before it"
        )

    # ---------------------------------------------------------------- E. quote-internal
    info = prepared.tcb_info
    # [17] TCB Info for this TEE and platform.
    tee = "SGX" if td is None else "TDX"
    if info.id != tee:
        raise CollateralMismatch(
            f"TCB Info id {info.id!r} (version {info.version}) for an {tee} quote; expected "
            f"{tee!r}" + (" version 3" if td is not None else "")
        )
    if extension.fmspc != info.fmspc or extension.pce_id != info.pce_id:
        raise CollateralMismatch(
            f"PCK certificate FMSPC {extension.fmspc.hex().upper()} PCE-ID "
            f"{extension.pce_id.hex().upper()}; TCB Info is for FMSPC {info.fmspc.hex().upper()} "
            f"PCE-ID {info.pce_id.hex().upper()}"
        )
    # [T1] The TDX module is one the TCB Info describes.
    module_identity = None if td is None else _check_tdx_module(td, prepared)
    # [18] QE report signed by the PCK key.
    qe = signature_data.qe_report
    qe_bytes = parsed.raw[qe_start : qe_start + _QE_REPORT_SIZE]
    qe_signature = parsed.raw[qe_start + _QE_REPORT_SIZE : qe_start + _QE_REPORT_SIZE + 64]
    if not _qe_report_signed(pck, qe_bytes, qe_signature):
        raise QeReportSignatureInvalid(
            "QE report signature does not verify with the PCK certificate key; expected the "
            "PCK key's signature over the 384-byte QE report"
        )
    # [19] QE report data binds the attestation key and the QE auth data.
    digest = hashlib.sha256(signature_data.attest_pub_key + signature_data.qe_auth_data).digest()
    if qe.report_data != digest + bytes(32):
        raise QeReportDataMismatch(
            f"QE report_data {qe.report_data.hex()}; expected SHA-256(attestation key ‖ QE auth "
            f"data) = {digest.hex()} followed by 32 zero bytes"
        )
    # [20] The QE Identity is for this TEE; the QE is Intel's, at a known ISVSVN.
    expected_qe = "QE" if td is None else "TD_QE"
    if prepared.qe_identity.id != expected_qe:
        raise QeIdentityMismatch(
            f"QE Identity id {prepared.qe_identity.id!r} for an {tee} quote; expected "
            f"{expected_qe!r}"
        )
    qe_level = _match_qe_identity(qe, qe_bytes, prepared)
    # [21] Quote signature by the attestation key.
    attest_key = _ATTESTATION_KEYS.get(signature_data.attest_pub_key)
    if attest_key is None:
        attest_key = load_raw_key(signature_data.attest_pub_key)
        if attest_key is not None:
            _ATTESTATION_KEYS.put(signature_data.attest_pub_key, attest_key)
    if attest_key is None or not verify_raw_signature(
        attest_key, signature_data.signature, parsed.signed_region
    ):
        raise QuoteSignatureInvalid(
            "quote signature does not verify with the attestation key over header ‖ report "
            "body; expected a valid ECDSA-P256 signature"
        )

    # ---------------------------------------------------------------- F. verdict
    # [22] Platform TCB level from the PCK certificate's TCB.
    level_index = _match_tcb_level(extension, prepared)
    level = prepared.tcb_levels[level_index]
    verdict = level
    module_level: QeTcbLevel | None = None
    tdx_status = level.status
    if td is not None:
        # [T2] The TDX TCB level; [T3] the module's TCB level.
        verdict = _match_tdx_tcb_level(extension, td.tee_tcb_svn, prepared, level_index)
        module_level = _module_level(td, module_identity)
    # QVL checkTcbLevel: both "not supported" outcomes are TCB_NOT_SUPPORTED, the platform's
    # first; the QE's comes last.
    if qe_level is None:
        lowest = min((qe_tcb.isvsvn for qe_tcb in prepared.qe_tcb_levels), default=0)
        raise QeTcbLevelNotFound(
            f"QE ISVSVN {qe.isv_svn} is below every QE Identity TCB level; expected at least "
            f"{lowest}"
        )
    qe_status = qe_level.status
    if td is not None:
        # [T4] TDX level with the module; relaunch advice for TD 1.5.
        module_status = TcbStatus.UP_TO_DATE if module_level is None else module_level.status
        tdx_status = _converge_module(verdict.status, module_status)
        if tdx_status is not TcbStatus.REVOKED:
            tdx_status = _relaunch(td, prepared, level.status, tdx_status, module_status, qe_status)
    # [23] Converge with the QE; a revoked certificate overrides every TCB status.
    status = _converge(tdx_status, qe_status)
    if revocation is not None:
        status = TcbStatus.REVOKED
    # [24] Collateral expiry at `at`.
    earliest = min(prepared.earliest_expiration, pck.chain.not_after)
    expired = earliest <= at
    if expired and not allow_expired_collateral:
        raise CollateralExpired(
            f"collateral expired: earliest expiration {_iso(earliest)} is not after the "
            f"verification time {_iso(at)}; expected all collateral valid at that time"
        )

    result: VerificationResult
    fmspc = extension.fmspc.hex().upper()
    is_intel = root_key == INTEL_SGX_ROOT_CA_PUBLIC_KEY
    root_sha = hashlib.sha256(root_key).hexdigest()
    pce_id = extension.pce_id.hex().upper()
    evaluation = prepared.tcb_evaluation_data_number
    if td is None:
        result = VerifiedQuote(
            status=status,
            advisory_ids=level.advisory_ids,
            tcb_date=level.tcb_date,
            fmspc=fmspc,
            qe_status=qe_status,
            collateral_expired=expired,
            crl_checked=crl_checked,
            enclave=_enclave_identity(parsed, sgx_body),
            report_data=sgx_body.report_data,
            quote=parsed,
            trusted_root_is_intel=is_intel,
            root_key_sha256=root_sha,
            platform_status=level.status,
            pce_id=pce_id,
            sgx_type=extension.sgx_type,
            tcb_evaluation_data_number=evaluation,
            earliest_expiration=earliest,
            revocation=revocation,
        )
    else:
        module_advisories = () if module_level is None else module_level.advisory_ids
        result = VerifiedTdQuote(
            status=status,
            advisory_ids=_union(verdict.advisory_ids, module_advisories),
            tcb_date=verdict.tcb_date,
            fmspc=fmspc,
            qe_status=qe_status,
            collateral_expired=expired,
            crl_checked=crl_checked,
            td=_td_identity(td),
            tdx_module=VerifiedTdxModule(
                identity_id=None if module_identity is None else module_identity.id,
                version=td.tee_tcb_svn[1],
                isv_svn=td.tee_tcb_svn[0],
                mr_signer=td.mrsigner_seam,
                status=None if module_level is None else module_level.status,
                tcb_date=None if module_level is None else module_level.tcb_date,
                advisory_ids=module_advisories,
            ),
            report_data=td.report_data,
            quote=parsed,
            trusted_root_is_intel=is_intel,
            root_key_sha256=root_sha,
            platform_status=level.status,
            tdx_status=tdx_status,
            pce_id=pce_id,
            sgx_type=extension.sgx_type,
            tcb_evaluation_data_number=evaluation,
            earliest_expiration=earliest,
            revocation=revocation,
        )
    # [25] Revoked evidence is an error unless the caller asked for the verdict.
    if result.revoked and not allow_revoked:
        raise QuoteRevoked(
            f"quote is revoked: {revocation or 'its TCB level is Revoked'}; expected evidence "
            "from a platform that is not revoked",
            result,
        )
    return result
