"""Collateral steps that do not depend on the quote, done once per bundle and root key.

:func:`prepare` runs checklist steps 9–16 as far as they concern only the collateral (CRL and
issuer-chain signatures, TCB Info / QE Identity signatures, versions, TCB level ordering) and
condenses the result into a :class:`PreparedCollateral`: revoked-serial sets, issuer names and
keys, the sorted TCB levels and the dates the per-quote time checks need. Nothing here depends on
the verification time, so one preparation serves every ``at``.

Reuse is keyed by the identity of the :class:`~confnode.collateral.Collateral` object (held
weakly: an entry disappears with its bundle) plus the root key; issuer chains are also cached by
their DER bytes so a freshly parsed copy of the same collateral skips their signature checks.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from confnode.collateral import Collateral, EnclaveIdentity, QeTcbLevel, TcbInfo, TcbLevel
from confnode.verify._chain import LruCache, TwoCertChain, check_two, common_name, der_of
from confnode.verify._crypto import key_point, verify_raw_signature
from confnode.verify._errors import (
    CollateralSignatureInvalid,
    CollateralVersionUnsupported,
    CrlInvalid,
    SigningChainInvalid,
)

__all__ = ["PreparedCollateral", "clear_collateral_caches", "prepared_for"]

#: Signing chains verified, by root key and DER of the certificates (shared across bundles).
_CHAINS: LruCache[tuple[bytes, tuple[bytes, ...], str], TwoCertChain] = LruCache(64)
#: Valid collateral signatures by (signer key, signature, exact signed bytes or CRL DER): a
#: re-parsed copy of the same collateral does not pay for the ECDSA checks again.
_SIGNATURES: LruCache[tuple[bytes, bytes, bytes], bool] = LruCache(256)


@dataclass(frozen=True, slots=True)
class PreparedCollateral:
    """What the per-quote steps need from a verified bundle."""

    tcb_info: TcbInfo
    qe_identity: EnclaveIdentity
    #: TCB levels sorted as QVL does: descending by SGX component SVNs, then PCESVN (then TDX
    #: component SVNs, for TDX TCB Info only).
    tcb_levels: tuple[TcbLevel, ...]
    qe_tcb_levels: tuple[QeTcbLevel, ...]
    #: Serials revoked by the Root CA CRL (intermediate CAs); ``None`` when not supplied.
    root_revoked: frozenset[int] | None
    #: Serials revoked by the PCK CRL; ``None`` when not supplied.
    pck_revoked: frozenset[int] | None
    #: DER of the PCK CRL issuer name and the key that signed the PCK CRL.
    pck_crl_issuer: bytes | None
    #: The PCK CRL issuer name, rendered only for an error message.
    pck_crl_issuer_name: x509.Name | None
    pck_crl_issuer_key: bytes | None
    #: Revocation of a collateral signer (TCB Signing certificate, PCK CRL issuer CA), if any.
    revocation: str | None
    #: min over CRL nextUpdate, issuer-chain notAfter, TCB Info / QE Identity nextUpdate.
    earliest_expiration: datetime
    #: The latest issueDate / thisUpdate, and what carries it (for the error message).
    latest_issue: datetime
    latest_issue_what: str
    tcb_evaluation_data_number: int


_PREPARED: dict[int, tuple[weakref.ref[Collateral], dict[bytes, PreparedCollateral]]] = {}
#: Re-entrant: a weakref callback may run (on GC) while this thread holds the lock.
_LOCK = threading.RLock()


def prepared_for(collateral: Collateral, root_key: bytes) -> PreparedCollateral:
    """The cached preparation of this bundle object for this root key (computed on first use)."""
    ident = id(collateral)
    entry = _PREPARED.get(ident)
    if entry is not None and entry[0]() is collateral:
        found = entry[1].get(root_key)
        if found is not None:
            return found
    prepared = _prepare(collateral, root_key)
    with _LOCK:
        entry = _PREPARED.get(ident)
        if entry is None or entry[0]() is not collateral:
            ref = weakref.ref(collateral, functools.partial(_forget, ident))
            entry = (ref, {})
            _PREPARED[ident] = entry
        entry[1][root_key] = prepared
    return prepared


def _forget(ident: int, ref: weakref.ref[Collateral]) -> None:
    with _LOCK:
        entry = _PREPARED.get(ident)
        if entry is not None and entry[0] is ref:
            del _PREPARED[ident]


def clear_collateral_caches() -> None:
    """Drop every cached preparation and signing chain (benchmarks, tests)."""
    with _LOCK:
        _PREPARED.clear()
    _CHAINS.clear()
    _SIGNATURES.clear()


def _signing_chain(
    certs: tuple[x509.Certificate, ...], root_key: bytes, what: str, leaf_cn: str
) -> TwoCertChain:
    ders = der_of(certs)
    key = (root_key, ders, leaf_cn)
    chain = _CHAINS.get(key)
    if chain is None:
        error = CrlInvalid if leaf_cn == "CA" else SigningChainInvalid
        chain = check_two(certs, ders, root_key, what=what, leaf_cn=leaf_cn, error=error)
        _CHAINS.put(key, chain)
    return chain


def _document_signed(key: ec.EllipticCurvePublicKey, signature: bytes, body: bytes) -> bool:
    memo = (key_point(key), signature, body)
    if _SIGNATURES.get(memo):
        return True
    valid = verify_raw_signature(key, signature, body)
    if valid:
        _SIGNATURES.put(memo, True)
    return valid


def _crl_signed_by(
    crl: x509.CertificateRevocationList, key: ec.EllipticCurvePublicKey, what: str, by: str
) -> x509.Name:
    """Check the CRL's signature and issuer CN; returns the issuer name (costly to rebuild)."""
    memo = (key_point(key), b"crl", crl.public_bytes(Encoding.DER))
    valid = bool(_SIGNATURES.get(memo))
    if not valid:
        try:
            valid = crl.is_signature_valid(key)
        except (ValueError, TypeError) as exc:
            raise CrlInvalid(
                f"{what}: signature unreadable ({exc}); expected ECDSA by {by}"
            ) from None
        if valid:
            _SIGNATURES.put(memo, True)
    if not valid:
        raise CrlInvalid(f"{what}: signature does not verify with the {by} key")
    issuer = crl.issuer
    cn = " ".join(str(a.value) for a in issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME))
    if "CA" not in cn:
        raise CrlInvalid(f"{what}: issuer CN is {cn!r}; expected a CN containing 'CA'")
    return issuer


def _check_profile(crl: x509.CertificateRevocationList, what: str) -> datetime:
    """Intel's CRL profile (QVL ``CrlStore``): nextUpdate, CRL Number and Authority Key
    Identifier are all required. A CRL without nextUpdate would never expire. Returns
    nextUpdate."""
    next_update = crl.next_update_utc
    if next_update is None:
        raise CrlInvalid(f"{what}: no nextUpdate; expected one (a CRL must expire)")
    for extension, label in (
        (x509.CRLNumber, "CRL Number"),
        (x509.AuthorityKeyIdentifier, "Authority Key Identifier"),
    ):
        try:
            crl.extensions.get_extension_for_class(extension)
        except x509.ExtensionNotFound:
            raise CrlInvalid(
                f"{what}: no {label} extension; expected one (Intel's CRL profile)"
            ) from None
        except ValueError as exc:
            raise CrlInvalid(f"{what}: extensions unreadable ({exc})") from None
    return next_update


def _revoked(crl: x509.CertificateRevocationList) -> frozenset[int]:
    return frozenset(entry.serial_number for entry in crl)


def _level_key(level: TcbLevel) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """QVL ``TcbLevel::operator>``: TDX components break ties; only TDX TCB Info has them (the
    parser rejects them in SGX TCB Info)."""
    return (level.sgx_components, level.pcesvn, level.tdx_components or ())


def _prepare(collateral: Collateral, root_key: bytes) -> PreparedCollateral:
    root = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), root_key)
    info = collateral.tcb_info.info
    identity = collateral.qe_identity.identity
    expirations: list[datetime] = [info.next_update, identity.next_update]
    issues: list[tuple[datetime, str]] = [
        (info.issue_date, "TCB Info issueDate"),
        (identity.issue_date, "QE Identity issueDate"),
    ]
    revocation: str | None = None

    # [13] TCB Info / QE Identity issuer chains: TCB Signing → root.
    tcb_chain = _signing_chain(
        collateral.tcb_info_issuer_chain, root_key, "TCB Info issuer chain", "SGX TCB Signing"
    )
    qe_chain = _signing_chain(
        collateral.qe_identity_issuer_chain,
        root_key,
        "QE Identity issuer chain",
        "SGX TCB Signing",
    )
    expirations += [tcb_chain.not_after, qe_chain.not_after]

    # [14] Signatures over the exact signed bytes.
    if not _document_signed(
        tcb_chain.leaf_key, collateral.tcb_info.signature, collateral.tcb_info.body
    ):
        raise CollateralSignatureInvalid(
            "TCB Info signature does not verify over the signed tcbInfo bytes with the TCB "
            "Signing key; expected Intel's signature of exactly these bytes"
        )
    if not _document_signed(
        qe_chain.leaf_key, collateral.qe_identity.signature, collateral.qe_identity.body
    ):
        raise CollateralSignatureInvalid(
            "QE Identity signature does not verify over the signed enclaveIdentity bytes with "
            "the TCB Signing key; expected Intel's signature of exactly these bytes"
        )

    # [15] Versions and ids (which TEE they are for is checked per quote, step 17).
    if info.version not in (2, 3):
        raise CollateralVersionUnsupported(f"TCB Info version {info.version}; expected 2 or 3")
    if info.tcb_type != 0:  # QVL 4.1.2.7.4: the component SVN layout is defined for type 0 only
        raise CollateralVersionUnsupported(
            f"TCB Info tcbType {info.tcb_type}; expected 0 (the only type Intel QVL supports)"
        )
    if identity.version != 2 or identity.id not in ("QE", "TD_QE"):
        raise CollateralVersionUnsupported(
            f"QE Identity id {identity.id!r} version {identity.version}; expected 'QE' (SGX) or "
            "'TD_QE' (TDX) version 2"
        )

    # [9, 10, 12] CRLs: signatures, issuers, revoked serials.
    root_revoked: frozenset[int] | None = None
    if collateral.root_ca_crl is not None:
        crl = collateral.root_ca_crl
        issuer = _crl_signed_by(crl, root, "Root CA CRL", "root CA")
        if issuer != tcb_chain.root.subject:  # QVL PckCrlVerifier: STATUS_SGX_CRL_UNKNOWN_ISSUER
            raise CrlInvalid(
                f"Root CA CRL issuer {issuer.rfc4514_string()!r}; expected the root CA "
                f"{tcb_chain.root.subject.rfc4514_string()!r}"
            )
        root_revoked = _revoked(crl)
        for chain, what in ((tcb_chain, "TCB Info"), (qe_chain, "QE Identity")):
            if chain.leaf.serial_number in root_revoked:
                revocation = (
                    f"{what} signing certificate (serial {chain.leaf.serial_number:x}) is "
                    "listed in the Root CA CRL"
                )
        issues.append((crl.last_update_utc, "Root CA CRL thisUpdate"))
        expirations.append(_check_profile(crl, "Root CA CRL"))
    pck_revoked: frozenset[int] | None = None
    pck_crl_issuer: bytes | None = None
    pck_crl_issuer_key: bytes | None = None
    pck_crl_issuer_name: x509.Name | None = None
    if collateral.pck_crl is not None:
        crl = collateral.pck_crl
        issuer_chain = _signing_chain(
            collateral.pck_crl_issuer_chain, root_key, "PCK CRL issuer chain", "CA"
        )
        issuer = _crl_signed_by(crl, issuer_chain.leaf_key, "PCK CRL", "PCK CRL issuer chain's CA")
        if issuer != issuer_chain.leaf.subject:
            raise CrlInvalid(
                f"PCK CRL issuer {issuer.rfc4514_string()!r}; expected its issuer chain's "
                f"CA {issuer_chain.leaf.subject.rfc4514_string()!r}"
            )
        if root_revoked is not None and issuer_chain.leaf.serial_number in root_revoked:
            revocation = (
                f"PCK CRL issuer CA {common_name(issuer_chain.leaf)!r} (serial "
                f"{issuer_chain.leaf.serial_number:x}) is listed in the Root CA CRL"
            )
        pck_revoked = _revoked(crl)
        pck_crl_issuer = issuer.public_bytes()
        pck_crl_issuer_name = issuer
        pck_crl_issuer_key = key_point(issuer_chain.leaf_key)
        expirations.append(issuer_chain.not_after)
        issues.append((crl.last_update_utc, "PCK CRL thisUpdate"))
        expirations.append(_check_profile(crl, "PCK CRL"))

    latest_issue, latest_what = max(issues, key=lambda item: item[0])
    levels = tuple(sorted(info.tcb_levels, key=_level_key, reverse=True))
    return PreparedCollateral(
        tcb_info=info,
        qe_identity=identity,
        tcb_levels=levels,
        qe_tcb_levels=identity.tcb_levels,
        root_revoked=root_revoked,
        pck_revoked=pck_revoked,
        pck_crl_issuer=pck_crl_issuer,
        pck_crl_issuer_name=pck_crl_issuer_name,
        pck_crl_issuer_key=pck_crl_issuer_key,
        revocation=revocation,
        earliest_expiration=min(expirations),
        latest_issue=latest_issue,
        latest_issue_what=latest_what,
        tcb_evaluation_data_number=min(
            info.tcb_evaluation_data_number, identity.tcb_evaluation_data_number
        ),
    )
