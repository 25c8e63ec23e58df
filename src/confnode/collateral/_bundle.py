"""The verification collateral bundle (Intel's ``sgx_ql_qve_collateral_t``, dcap-qvl's JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from confnode.collateral._decode import (
    normalise_pem_chain,
    parse_crl,
    parse_json_object,
    parse_pem_chain,
    parse_signature_hex,
)
from confnode.collateral._signed import SignedQeIdentity, SignedTcbInfo
from confnode.errors import InvalidCollateral

__all__ = ["ChainInput", "Collateral", "CrlInput"]

#: A certificate chain given as PEM text (plain or percent-encoded) or as parsed certificates.
ChainInput = str | bytes | Sequence[x509.Certificate]
#: A CRL given as DER, PEM or hex-of-DER, already parsed, or ``None`` for "not supplied".
CrlInput = bytes | str | x509.CertificateRevocationList | None

_Signed = TypeVar("_Signed", SignedTcbInfo, SignedQeIdentity)


def _is_blank(value: str | bytes) -> bool:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return not text.strip("\x00 \t\r\n")


def _chain(
    value: ChainInput | None, what: str, *, required: bool
) -> tuple[tuple[x509.Certificate, ...], str]:
    """Parse a chain input; returns the certificates and the plain PEM text to serialise."""
    if value is None or (isinstance(value, str | bytes) and _is_blank(value)):
        if required:
            raise InvalidCollateral(f"{what}: missing (expected PEM certificates)")
        return (), ""
    if isinstance(value, str | bytes):
        return parse_pem_chain(value, what=what), normalise_pem_chain(value, what=what)
    certs = tuple(value)
    if not all(isinstance(c, x509.Certificate) for c in certs):
        raise InvalidCollateral(f"{what}: expected PEM text or a sequence of certificates")
    if required and not certs:
        raise InvalidCollateral(f"{what}: expected at least one certificate, found none")
    return certs, _pem_text(None, certs)


def _crl(value: CrlInput, what: str) -> x509.CertificateRevocationList | None:
    if value is None or isinstance(value, x509.CertificateRevocationList):
        return value
    if isinstance(value, str | bytes) and _is_blank(value):
        return None
    return parse_crl(value, what=what)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Collateral:
    """The 9-part verification collateral. A CRL of ``None`` means "not supplied".

    Equality covers the parsed content (certificates, CRLs, signed bodies, signatures). The
    ``*_pem`` fields keep the chains' PEM text as received so :meth:`to_json` is faithful; they
    are not compared, and when ``None`` (direct construction) PEM is generated from the
    certificates. The object is hashable and weak-referenceable so a verifier can cache per
    bundle.
    """

    pck_crl_issuer_chain: tuple[x509.Certificate, ...]
    root_ca_crl: x509.CertificateRevocationList | None
    pck_crl: x509.CertificateRevocationList | None
    tcb_info_issuer_chain: tuple[x509.Certificate, ...]
    tcb_info: SignedTcbInfo
    qe_identity_issuer_chain: tuple[x509.Certificate, ...]
    qe_identity: SignedQeIdentity
    pck_crl_issuer_chain_pem: str | None = field(default=None, compare=False, repr=False)
    tcb_info_issuer_chain_pem: str | None = field(default=None, compare=False, repr=False)
    qe_identity_issuer_chain_pem: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Verifiers cache per bundle object (by identity): a chain passed as a list must not be
        # able to change after construction, so every chain is frozen into a tuple here.
        for name in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def __hash__(self) -> int:
        return hash(
            (
                self.tcb_info,
                self.qe_identity,
                self.pck_crl_issuer_chain,
                self.tcb_info_issuer_chain,
                self.qe_identity_issuer_chain,
            )
        )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_parts(
        cls,
        *,
        tcb_info: SignedTcbInfo,
        tcb_info_issuer_chain: ChainInput,
        qe_identity: SignedQeIdentity,
        qe_identity_issuer_chain: ChainInput,
        pck_crl: CrlInput = None,
        pck_crl_issuer_chain: ChainInput | None = None,
        root_ca_crl: CrlInput = None,
    ) -> Collateral:
        """General constructor: chains as PEM (plain or percent-encoded) or certificates, CRLs in
        any accepted encoding. Used by the other constructors and for foreign wrapper formats."""
        if not isinstance(tcb_info, SignedTcbInfo):
            raise InvalidCollateral(f"tcb_info: expected SignedTcbInfo, found {type(tcb_info)}")
        if not isinstance(qe_identity, SignedQeIdentity):
            raise InvalidCollateral(
                f"qe_identity: expected SignedQeIdentity, found {type(qe_identity)}"
            )
        pck_chain, pck_pem = _chain(pck_crl_issuer_chain, "PCK CRL issuer chain", required=False)
        tcb_chain, tcb_pem = _chain(tcb_info_issuer_chain, "TCB Info issuer chain", required=True)
        qe_chain, qe_pem = _chain(
            qe_identity_issuer_chain, "QE Identity issuer chain", required=True
        )
        return cls(
            pck_crl_issuer_chain=pck_chain,
            root_ca_crl=_crl(root_ca_crl, "Root CA CRL"),
            pck_crl=_crl(pck_crl, "PCK CRL"),
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_info,
            qe_identity_issuer_chain=qe_chain,
            qe_identity=qe_identity,
            pck_crl_issuer_chain_pem=pck_pem,
            tcb_info_issuer_chain_pem=tcb_pem,
            qe_identity_issuer_chain_pem=qe_pem,
        )

    @classmethod
    def from_pcs_responses(
        cls,
        *,
        tcb_info_body: str | bytes,
        tcb_info_issuer_chain: str | bytes,
        qe_identity_body: str | bytes,
        qe_identity_issuer_chain: str | bytes,
        pck_crl: bytes | str | None = None,
        pck_crl_issuer_chain: str | bytes | None = None,
        root_ca_crl: bytes | str | None = None,
    ) -> Collateral:
        """From raw Intel PCS/PCCS responses: bodies as served, issuer-chain header values
        (percent-encoded or plain PEM), CRLs in DER, PEM or hex. Absent CRLs stay ``None``."""
        return cls.from_parts(
            tcb_info=SignedTcbInfo.from_pcs_body(tcb_info_body),
            tcb_info_issuer_chain=tcb_info_issuer_chain,
            qe_identity=SignedQeIdentity.from_pcs_body(qe_identity_body),
            qe_identity_issuer_chain=qe_identity_issuer_chain,
            pck_crl=pck_crl,
            pck_crl_issuer_chain=pck_crl_issuer_chain,
            root_ca_crl=root_ca_crl,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Collateral:
        """From dcap-qvl's ``QuoteCollateralV3`` JSON (9 members; CRLs hex, DER or PEM).

        ``tcb_info`` / ``qe_identity`` are the raw signed strings with separate hex signatures;
        a whole PCS body (``{"tcbInfo": …, "signature": …}``) is accepted there too. Missing,
        ``null`` or empty CRL members mean "not supplied".
        """
        doc = parse_json_object(text, what="collateral JSON")
        return cls.from_parts(
            tcb_info=_signed_member(doc, "tcb_info", SignedTcbInfo),
            tcb_info_issuer_chain=_required_str(doc, "tcb_info_issuer_chain"),
            qe_identity=_signed_member(doc, "qe_identity", SignedQeIdentity),
            qe_identity_issuer_chain=_required_str(doc, "qe_identity_issuer_chain"),
            pck_crl=_crl_member(doc, "pck_crl"),
            pck_crl_issuer_chain=_str_member(doc, "pck_crl_issuer_chain"),
            root_ca_crl=_crl_member(doc, "root_ca_crl"),
        )

    # ------------------------------------------------------------------ serialisation

    def to_json(self) -> str:
        """dcap-qvl ``QuoteCollateralV3`` JSON: CRLs hex DER (``""`` if absent), chains PEM,
        signed bodies as the exact signed strings, signatures hex ``r‖s``."""
        doc: dict[str, str] = {
            "pck_crl_issuer_chain": _pem_text(
                self.pck_crl_issuer_chain_pem, self.pck_crl_issuer_chain
            ),
            "root_ca_crl": _crl_hex(self.root_ca_crl),
            "pck_crl": _crl_hex(self.pck_crl),
            "tcb_info_issuer_chain": _pem_text(
                self.tcb_info_issuer_chain_pem, self.tcb_info_issuer_chain
            ),
            "tcb_info": self.tcb_info.body_text,
            "tcb_info_signature": self.tcb_info.signature.hex(),
            "qe_identity_issuer_chain": _pem_text(
                self.qe_identity_issuer_chain_pem, self.qe_identity_issuer_chain
            ),
            "qe_identity": self.qe_identity.body_text,
            "qe_identity_signature": self.qe_identity.signature.hex(),
        }
        return json.dumps(doc, indent=2)

    # ------------------------------------------------------------------ pure accessors

    @property
    def tee(self) -> str:
        """``"SGX"`` or ``"TDX"``, from the TCB Info ``id``."""
        return self.tcb_info.info.id

    def next_update_dates(self) -> dict[str, datetime]:
        """``nextUpdate`` of every dated collateral item present (TCB Info, QE Identity, CRLs)."""
        dates = {
            "tcb_info": self.tcb_info.info.next_update,
            "qe_identity": self.qe_identity.identity.next_update,
        }
        for name, crl in (("pck_crl", self.pck_crl), ("root_ca_crl", self.root_ca_crl)):
            if crl is not None and crl.next_update_utc is not None:
                dates[name] = crl.next_update_utc
        return dates

    def issue_dates(self) -> dict[str, datetime]:
        """``issueDate`` / ``thisUpdate`` of every dated collateral item present."""
        dates = {
            "tcb_info": self.tcb_info.info.issue_date,
            "qe_identity": self.qe_identity.identity.issue_date,
        }
        for name, crl in (("pck_crl", self.pck_crl), ("root_ca_crl", self.root_ca_crl)):
            if crl is not None:
                dates[name] = crl.last_update_utc
        return dates

    @property
    def earliest_next_update(self) -> datetime:
        """The earliest ``nextUpdate`` over the dated items (certificates not included)."""
        return min(self.next_update_dates().values())

    @property
    def latest_issue_date(self) -> datetime:
        """The latest ``issueDate`` / ``thisUpdate`` over the dated items."""
        return max(self.issue_dates().values())


# ------------------------------------------------------------------------- JSON member helpers


def _str_member(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidCollateral(
            f"collateral JSON: {key!r} must be a string, found {type(value).__name__}"
        )
    return value


def _required_str(doc: dict[str, Any], key: str) -> str:
    value = _str_member(doc, key)
    if value is None:
        raise InvalidCollateral(f"collateral JSON: missing member {key!r}")
    return value


def _bytes_like(doc: dict[str, Any], key: str) -> str | bytes | None:
    """A binary member as str (hex/PEM/base text) or a JSON array of byte values."""
    value = doc.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(type(v) is int and 0 <= v <= 255 for v in value):
        return bytes(value)
    raise InvalidCollateral(
        f"collateral JSON: {key!r} must be a string or an array of byte values, "
        f"found {type(value).__name__}"
    )


def _crl_member(doc: dict[str, Any], key: str) -> str | bytes | None:
    value = _bytes_like(doc, key)
    return value if value else None


def _signature_member(doc: dict[str, Any], key: str) -> bytes:
    value = _bytes_like(doc, key)
    if value is None:
        raise InvalidCollateral(f"collateral JSON: missing member {key!r}")
    if isinstance(value, bytes):
        if len(value) != 64:
            raise InvalidCollateral(
                f"collateral JSON: {key!r} must be 64 bytes raw r||s, found {len(value)}"
            )
        return value
    return parse_signature_hex(value, what=f"collateral JSON {key!r}")


def _signed_member(doc: dict[str, Any], key: str, kind: type[_Signed]) -> _Signed:
    """A raw signed body plus ``<key>_signature``; without the latter, a whole PCS body."""
    body = _required_str(doc, key)
    if key + "_signature" not in doc:
        return kind.from_pcs_body(body)
    return kind.from_parts(body, _signature_member(doc, key + "_signature"))


def _pem_text(raw: str | None, certs: tuple[x509.Certificate, ...]) -> str:
    if raw is not None:
        return raw
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def _crl_hex(crl: x509.CertificateRevocationList | None) -> str:
    return "" if crl is None else crl.public_bytes(Encoding.DER).hex()
