"""DCAP ECDSA quote codec: versions 3 (SGX), 4 and 5 (TDX, and SGX bodies where defined).

Layouts: ``sgx-dcap.md`` §1 (Intel ``sgx_quote_3.h``/``_4.h``/``_5.h`` and QVL ``Quote.cpp``).
Every part is a frozen dataclass that can also be built from fields; ``to_bytes()`` serialises
from the fields, and for a parsed quote gives back exactly the parsed bytes.

Parse-layer decisions (the verifier judges everything else):

* Bytes after the declared signature data are kept in :attr:`Quote.trailing`, not rejected:
  quote buffers from AESM/TDX stacks are often zero-padded.
* The signature data must be consumed exactly by its parts, and so must every certification
  data block; a declared size that overruns its container is an error.
* Certification data: v3 accepts types 1-5 (QVL), v4/v5 require outer type 6 wrapping an inner
  type 1-5. Type 3 must be exactly 404 bytes (encrypted PPID 384, CPUSVN 16, PCESVN 2, PCE-ID 2).
  Type 5 must be, after its trailing NULs, a sequence of PEM ``CERTIFICATE`` blocks (ASCII
  armour and base64 alphabet, checked cheaply at parse time); the DER inside is decoded only on
  request by :meth:`CertificationData.pck_certificates`, which the verifier calls anyway, so
  parsing stays fast and a parse never pays for X.509.
* The QE vendor id is not checked here: a non-Intel QE is well-formed, the verifier rejects it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography import x509

from confnode.errors import InvalidQuote
from confnode.sgx._wire import Reader, check_bytes, check_type, check_uint, le
from confnode.sgx.structs import REPORT_BODY_SIZE, EnclaveReportBody

__all__ = [
    "ATT_KEY_TYPE_ECDSA_P256",
    "HEADER_SIZE",
    "TD_REPORT10_SIZE",
    "TD_REPORT15_SIZE",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "CertificationData",
    "CertificationDataType",
    "EcdsaSigData",
    "EcdsaSigDataV4",
    "EncryptedPpid",
    "QeReportCertificationData",
    "Quote",
    "QuoteBody",
    "QuoteHeader",
    "SignatureData",
    "TdReportBody",
    "parse_quote",
    "quote_signed_region",
]

HEADER_SIZE = 48
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
#: ``sgx_attestation_algorithm_id_t`` ECDSA-256-with-P-256: the only key type QVL accepts.
ATT_KEY_TYPE_ECDSA_P256 = 2
_ENCRYPTED_PPID_SIZE = 384 + 16 + 2 + 2
_SUPPORTED_VERSIONS = (3, 4, 5)
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=\s]")
_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----[ \t\r\n]*"
)
# v5 body type -> (tee type, body size)
_V5_BODY_TYPES = {
    1: (TEE_TYPE_SGX, REPORT_BODY_SIZE),
    2: (TEE_TYPE_TDX, TD_REPORT10_SIZE),
    3: (TEE_TYPE_TDX, TD_REPORT15_SIZE),
}


class CertificationDataType(IntEnum):
    """``sgx_ql_cert_key_type_t``."""

    PPID_CLEARTEXT = 1
    PPID_RSA2048_ENCRYPTED = 2
    PPID_RSA3072_ENCRYPTED = 3
    PCK_CLEARTEXT = 4
    PCK_CERT_CHAIN = 5
    ECDSA_SIG_AUX_DATA = 6


def _type_name(value: int) -> str:
    try:
        return CertificationDataType(value).name
    except ValueError:
        return f"unknown type {value}"


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The 48-byte header (``sgx_quote_header_t`` / ``sgx_quote4_header_t``).

    For v4/v5 bytes 8..11 are reserved; they are exposed as ``qe_svn``/``pce_svn`` like v3 so
    that every header round-trips through the same fields.
    """

    version: int = 3
    att_key_type: int = ATT_KEY_TYPE_ECDSA_P256
    tee_type: int = TEE_TYPE_SGX
    qe_svn: int = 0
    pce_svn: int = 0
    vendor_id: bytes = bytes(16)
    user_data: bytes = bytes(20)

    SIZE = HEADER_SIZE

    def __post_init__(self) -> None:
        check_uint(self.version, 16, "header.version")
        check_uint(self.att_key_type, 16, "header.att_key_type")
        check_uint(self.tee_type, 32, "header.tee_type")
        check_uint(self.qe_svn, 16, "header.qe_svn")
        check_uint(self.pce_svn, 16, "header.pce_svn")
        check_bytes(self.vendor_id, 16, "header.vendor_id")
        check_bytes(self.user_data, 20, "header.user_data")

    @property
    def qe_id(self) -> bytes:
        """Bytes 28..43: the 16-byte QE-ID that PCCS ``/pckcert`` takes as ``qeid``."""
        return self.user_data[:16]

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                le(self.version, 2),
                le(self.att_key_type, 2),
                le(self.tee_type, 4),
                le(self.qe_svn, 2),
                le(self.pce_svn, 2),
                self.vendor_id,
                self.user_data,
            )
        )


@dataclass(frozen=True, slots=True)
class TdReportBody:
    """TD report 1.0 (584 bytes, ``sgx_report2_body_t``) or 1.5 (648 bytes, adds two fields).

    A 1.5 body has ``tee_tcb_svn2`` and ``mr_servicetd``; a 1.0 body has both ``None``.
    Attribute fields stay raw bytes (their bit layouts belong to TDX verification).
    """

    tee_tcb_svn: bytes = bytes(16)
    mr_seam: bytes = bytes(48)
    mrsigner_seam: bytes = bytes(48)
    seam_attributes: bytes = bytes(8)
    td_attributes: bytes = bytes(8)
    xfam: bytes = bytes(8)
    mr_td: bytes = bytes(48)
    mr_config_id: bytes = bytes(48)
    mr_owner: bytes = bytes(48)
    mr_owner_config: bytes = bytes(48)
    rt_mr: tuple[bytes, bytes, bytes, bytes] = (bytes(48),) * 4
    report_data: bytes = bytes(64)
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes | None = None

    def __post_init__(self) -> None:
        for name, size in (
            ("tee_tcb_svn", 16),
            ("mr_seam", 48),
            ("mrsigner_seam", 48),
            ("seam_attributes", 8),
            ("td_attributes", 8),
            ("xfam", 8),
            ("mr_td", 48),
            ("mr_config_id", 48),
            ("mr_owner", 48),
            ("mr_owner_config", 48),
            ("report_data", 64),
        ):
            check_bytes(getattr(self, name), size, f"td_report.{name}")
        if not isinstance(self.rt_mr, tuple) or len(self.rt_mr) != 4:
            raise InvalidQuote("expected a tuple of 4 RTMRs", field="td_report.rt_mr")
        for i, rtmr in enumerate(self.rt_mr):
            check_bytes(rtmr, 48, f"td_report.rt_mr[{i}]")
        if (self.tee_tcb_svn2 is None) != (self.mr_servicetd is None):
            raise InvalidQuote(
                "tee_tcb_svn2 and mr_servicetd must both be set (TD 1.5) or both be None (TD 1.0)",
                field="td_report",
            )
        if self.tee_tcb_svn2 is not None:
            check_bytes(self.tee_tcb_svn2, 16, "td_report.tee_tcb_svn2")
            check_bytes(self.mr_servicetd, 48, "td_report.mr_servicetd")

    @property
    def is_td15(self) -> bool:
        return self.tee_tcb_svn2 is not None

    @property
    def size(self) -> int:
        return TD_REPORT15_SIZE if self.is_td15 else TD_REPORT10_SIZE

    @property
    def td_debug(self) -> bool:
        """TD attribute bit 0 (TUD.DEBUG): the TD is debuggable."""
        return bool(self.td_attributes[0] & 0x01)

    @classmethod
    def parse(cls, data: bytes, *, field: str = "td_report", offset: int = 0) -> TdReportBody:
        if len(data) not in (TD_REPORT10_SIZE, TD_REPORT15_SIZE):
            raise InvalidQuote(
                f"{len(data)} bytes, expected {TD_REPORT10_SIZE} (TD 1.0) "
                f"or {TD_REPORT15_SIZE} (TD 1.5)",
                field=field,
                offset=offset,
            )
        d = bytes(data)
        td15 = len(d) == TD_REPORT15_SIZE
        return cls(
            tee_tcb_svn=d[0:16],
            mr_seam=d[16:64],
            mrsigner_seam=d[64:112],
            seam_attributes=d[112:120],
            td_attributes=d[120:128],
            xfam=d[128:136],
            mr_td=d[136:184],
            mr_config_id=d[184:232],
            mr_owner=d[232:280],
            mr_owner_config=d[280:328],
            rt_mr=(d[328:376], d[376:424], d[424:472], d[472:520]),
            report_data=d[520:584],
            tee_tcb_svn2=d[584:600] if td15 else None,
            mr_servicetd=d[600:648] if td15 else None,
        )

    def to_bytes(self) -> bytes:
        parts = [
            self.tee_tcb_svn,
            self.mr_seam,
            self.mrsigner_seam,
            self.seam_attributes,
            self.td_attributes,
            self.xfam,
            self.mr_td,
            self.mr_config_id,
            self.mr_owner,
            self.mr_owner_config,
            *self.rt_mr,
            self.report_data,
        ]
        if self.tee_tcb_svn2 is not None and self.mr_servicetd is not None:
            parts += [self.tee_tcb_svn2, self.mr_servicetd]
        return b"".join(parts)


QuoteBody = EnclaveReportBody | TdReportBody


@dataclass(frozen=True, slots=True)
class EncryptedPpid:
    """Type-3 certification data: what the verifier needs to fetch the PCK certificate."""

    encrypted_ppid: bytes
    cpusvn: bytes
    pcesvn: int
    pceid: bytes

    def __post_init__(self) -> None:
        check_bytes(self.encrypted_ppid, 384, "encrypted_ppid.encrypted_ppid")
        check_bytes(self.cpusvn, 16, "encrypted_ppid.cpusvn")
        check_uint(self.pcesvn, 16, "encrypted_ppid.pcesvn")
        check_bytes(self.pceid, 2, "encrypted_ppid.pceid")

    def to_bytes(self) -> bytes:
        return self.encrypted_ppid + self.cpusvn + le(self.pcesvn, 2) + self.pceid


@dataclass(frozen=True, slots=True)
class CertificationData:
    """``sgx_ql_certification_data_t`` of types 1-5: how the verifier finds the PCK certificate."""

    type: int
    data: bytes

    def __post_init__(self) -> None:
        check_uint(self.type, 16, "certification_data.type")
        if not isinstance(self.data, bytes) or len(self.data) >= 1 << 32:
            raise InvalidQuote("expected bytes shorter than 4 GiB", field="certification_data")

    @property
    def pck_chain_pem(self) -> bytes | None:
        """Type 5: the PEM chain (leaf, intermediate, root) without its trailing NULs."""
        if self.type != CertificationDataType.PCK_CERT_CHAIN:
            return None
        return self.data.rstrip(b"\x00")

    def pck_certificates(self) -> tuple[x509.Certificate, ...]:
        """Type 5: the decoded chain, leaf first; an undecodable block is an InvalidQuote.

        ``cryptography`` decodes names lazily, so the fields every caller reads (subject,
        issuer, validity) are touched here: a malformed name is this error, not a later
        ``ValueError``.
        """
        pem = self.pck_chain_pem
        if pem is None:
            raise InvalidQuote(
                f"certification data type {self.type} ({_type_name(self.type)}) carries no "
                "PCK certificate chain, expected type 5",
                field="certification_data.type",
            )
        certs = []
        for index, (start, block) in enumerate(_pem_blocks(pem, "certification_data.data", 0)):
            try:
                cert = x509.load_pem_x509_certificate(block)
                _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
            except ValueError as error:
                raise InvalidQuote(
                    f"certificate {index} of the PCK chain (byte {start} of the chain) does not "
                    f"decode: {error}",
                    field=f"certification_data.pck_chain[{index}]",
                ) from None
            certs.append(cert)
        return tuple(certs)

    @property
    def encrypted_ppid(self) -> EncryptedPpid | None:
        """Type 3: the encrypted PPID, CPUSVN, PCESVN and PCE-ID (for a PCK certificate fetch)."""
        if self.type != CertificationDataType.PPID_RSA3072_ENCRYPTED:
            return None
        d = self.data
        if len(d) != _ENCRYPTED_PPID_SIZE:
            raise InvalidQuote(
                f"{len(d)} bytes of type-3 data, expected {_ENCRYPTED_PPID_SIZE}",
                field="certification_data.data",
            )
        return EncryptedPpid(d[:384], d[384:400], int.from_bytes(d[400:402], "little"), d[402:])

    def to_bytes(self) -> bytes:
        return le(self.type, 2) + le(len(self.data), 4) + self.data


@dataclass(frozen=True, slots=True)
class QeReportCertificationData:
    """Type-6 certification data (v4/v5): the v3 QE tail nested one level deeper."""

    qe_report: EnclaveReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData

    def __post_init__(self) -> None:
        check_type(self.qe_report, EnclaveReportBody, "qe_report_certification.qe_report")
        check_bytes(self.qe_report_signature, 64, "qe_report_certification.qe_report_signature")
        _check_auth_data(self.qe_auth_data, "qe_report_certification.qe_auth_data")
        check_type(self.certification, CertificationData, "qe_report_certification.certification")

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.qe_report.to_bytes(),
                self.qe_report_signature,
                le(len(self.qe_auth_data), 2),
                self.qe_auth_data,
                self.certification.to_bytes(),
            )
        )


def _check_auth_data(value: object, field: str) -> None:
    if not isinstance(value, bytes) or len(value) > 0xFFFF:
        raise InvalidQuote("expected at most 65535 bytes", field=field)


@dataclass(frozen=True, slots=True)
class EcdsaSigData:
    """v3 ``sgx_ql_ecdsa_sig_data_t``. ECDSA values are raw big-endian ``r||s`` and ``x||y``."""

    signature: bytes
    attest_pub_key: bytes
    qe_report: EnclaveReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData

    def __post_init__(self) -> None:
        check_bytes(self.signature, 64, "signature_data.signature")
        check_bytes(self.attest_pub_key, 64, "signature_data.attest_pub_key")
        check_type(self.qe_report, EnclaveReportBody, "signature_data.qe_report")
        check_bytes(self.qe_report_signature, 64, "signature_data.qe_report_signature")
        _check_auth_data(self.qe_auth_data, "signature_data.qe_auth_data")
        check_type(self.certification, CertificationData, "signature_data.certification")

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.signature,
                self.attest_pub_key,
                self.qe_report.to_bytes(),
                self.qe_report_signature,
                le(len(self.qe_auth_data), 2),
                self.qe_auth_data,
                self.certification.to_bytes(),
            )
        )


@dataclass(frozen=True, slots=True)
class EcdsaSigDataV4:
    """v4/v5 ``sgx_ecdsa_sig_data_v4_t``: signature, key and type-6 certification data.

    Exposes the same ``qe_report``/``qe_report_signature``/``qe_auth_data``/``certification``
    names as :class:`EcdsaSigData`, so callers need not care about the nesting.
    """

    signature: bytes
    attest_pub_key: bytes
    qe_report_certification: QeReportCertificationData

    def __post_init__(self) -> None:
        check_bytes(self.signature, 64, "signature_data.signature")
        check_bytes(self.attest_pub_key, 64, "signature_data.attest_pub_key")
        check_type(
            self.qe_report_certification,
            QeReportCertificationData,
            "signature_data.qe_report_certification",
        )

    @property
    def qe_report(self) -> EnclaveReportBody:
        return self.qe_report_certification.qe_report

    @property
    def qe_report_signature(self) -> bytes:
        return self.qe_report_certification.qe_report_signature

    @property
    def qe_auth_data(self) -> bytes:
        return self.qe_report_certification.qe_auth_data

    @property
    def certification(self) -> CertificationData:
        """The inner certification data (normally type 5)."""
        return self.qe_report_certification.certification

    def to_bytes(self) -> bytes:
        inner = self.qe_report_certification.to_bytes()
        outer = le(CertificationDataType.ECDSA_SIG_AUX_DATA, 2) + le(len(inner), 4)
        return self.signature + self.attest_pub_key + outer + inner


SignatureData = EcdsaSigData | EcdsaSigDataV4


def _v5_body_type(body: QuoteBody) -> int:
    if isinstance(body, EnclaveReportBody):
        return 1
    return 3 if body.is_td15 else 2


def _body_size(body: QuoteBody) -> int:
    return REPORT_BODY_SIZE if isinstance(body, EnclaveReportBody) else body.size


def _signed_length(header: QuoteHeader, body: QuoteBody) -> int:
    return HEADER_SIZE + (6 if header.version == 5 else 0) + _body_size(body)


def _serialise_signed(header: QuoteHeader, body: QuoteBody) -> bytes:
    parts = [header.to_bytes()]
    if header.version == 5:
        parts.append(le(_v5_body_type(body), 2) + le(_body_size(body), 4))
    parts.append(body.to_bytes())
    return b"".join(parts)


def quote_signed_region(header: QuoteHeader, body: QuoteBody) -> bytes:
    """The bytes the attestation key signs for a quote with this header and body.

    Lets a quoting enclave (or the simulator) sign before the signature data exists.
    """
    _check_consistent(header, body)
    return _serialise_signed(header, body)


def _check_header(version: int, att_key_type: int, tee: int, *, parsed: bool) -> None:
    """QVL's header rules; offsets are reported when the values came from quote bytes."""
    if version not in _SUPPORTED_VERSIONS:
        raise InvalidQuote(
            f"version {version}, expected 3, 4 or 5",
            field="header.version",
            offset=0 if parsed else None,
        )
    if att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise InvalidQuote(
            f"attestation key type {att_key_type}, expected 2 (ECDSA P-256)",
            field="header.att_key_type",
            offset=2 if parsed else None,
        )
    if tee not in (TEE_TYPE_SGX, TEE_TYPE_TDX) or (version == 3 and tee != TEE_TYPE_SGX):
        expected = "0 (SGX)" if version == 3 else "0 (SGX) or 0x81 (TDX)"
        raise InvalidQuote(
            f"TEE type {tee:#x} in a v{version} quote, expected {expected}",
            field="header.tee_type",
            offset=4 if parsed else None,
        )


def _check_consistent(header: QuoteHeader, body: object) -> None:
    """Version, TEE type and body kind must agree (QVL's rules); raised for built quotes too."""
    version, tee = header.version, header.tee_type
    _check_header(version, header.att_key_type, tee, parsed=False)
    if tee == TEE_TYPE_SGX and not isinstance(body, EnclaveReportBody):
        raise InvalidQuote(
            f"{type(body).__name__} body in an SGX quote, expected EnclaveReportBody", field="body"
        )
    if tee == TEE_TYPE_TDX:
        if not isinstance(body, TdReportBody):
            raise InvalidQuote(
                f"{type(body).__name__} body in a TDX quote, expected TdReportBody", field="body"
            )
        if version == 4 and body.is_td15:
            raise InvalidQuote("TD report 1.5 body in a v4 quote, needs v5", field="body")


@dataclass(frozen=True, slots=True)
class Quote:
    """A DCAP ECDSA quote.

    Build one from parts with ``Quote(header, body, signature_data)`` (or derive one with
    ``dataclasses.replace``). ``raw`` is always the serialisation of the fields, computed once at
    construction; for a parsed quote it equals the parsed bytes, because the codec is lossless.
    """

    header: QuoteHeader
    body: QuoteBody
    signature_data: SignatureData
    trailing: bytes = b""
    raw: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_type(self.header, QuoteHeader, "header")
        _check_consistent(self.header, self.body)
        expected: type = EcdsaSigData if self.header.version == 3 else EcdsaSigDataV4
        check_type(self.signature_data, expected, "signature_data")
        if not isinstance(self.trailing, bytes):
            raise InvalidQuote("expected bytes", field="trailing")
        object.__setattr__(self, "raw", self.to_bytes())

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def is_sgx(self) -> bool:
        return self.header.tee_type == TEE_TYPE_SGX

    @property
    def is_tdx(self) -> bool:
        return self.header.tee_type == TEE_TYPE_TDX

    @property
    def signed_region(self) -> bytes:
        """Header (‖ v5 body type and size) ‖ body: what the attestation key signs."""
        return self.raw[: _signed_length(self.header, self.body)]

    def to_bytes(self) -> bytes:
        sig = self.signature_data.to_bytes()
        return b"".join(
            (
                _serialise_signed(self.header, self.body),
                le(len(sig), 4),
                sig,
                self.trailing,
            )
        )


# --------------------------------------------------------------------------------------- parsing


def _parse_header(r: Reader) -> QuoteHeader:
    version = r.u16("header.version")
    att_key_type = r.u16("header.att_key_type")
    tee_type = r.u32("header.tee_type")
    _check_header(version, att_key_type, tee_type, parsed=True)
    return QuoteHeader(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        qe_svn=r.u16("header.qe_svn"),
        pce_svn=r.u16("header.pce_svn"),
        vendor_id=r.take(16, "header.vendor_id"),
        user_data=r.take(20, "header.user_data"),
    )


def _parse_body(r: Reader, header: QuoteHeader) -> QuoteBody:
    if header.version == 5:
        type_offset = r.offset
        body_type = r.u16("body_type")
        size_offset = r.offset
        body_size = r.u32("body_size")
        if body_type not in _V5_BODY_TYPES:
            raise InvalidQuote(
                f"body type {body_type}, expected 1 (SGX), 2 (TD 1.0) or 3 (TD 1.5)",
                field="body_type",
                offset=type_offset,
            )
        tee, size = _V5_BODY_TYPES[body_type]
        if tee != header.tee_type:
            raise InvalidQuote(
                f"body type {body_type} with TEE type {header.tee_type:#x}",
                field="body_type",
                offset=type_offset,
            )
        if body_size != size:
            raise InvalidQuote(
                f"body size {body_size}, expected {size} for body type {body_type}",
                field="body_size",
                offset=size_offset,
            )
    else:
        size = REPORT_BODY_SIZE if header.tee_type == TEE_TYPE_SGX else TD_REPORT10_SIZE
    offset = r.offset
    data = r.take(size, "body")
    if size == REPORT_BODY_SIZE:
        return EnclaveReportBody.parse(data, field="body", offset=offset)
    return TdReportBody.parse(data, field="body", offset=offset)


def _take_declared(
    r: Reader, size: int, field: str, size_offset: int, container: str
) -> tuple[int, bytes]:
    if size > r.remaining:
        raise InvalidQuote(
            f"declares {size} bytes but only {r.remaining} remain in the {container}",
            field=field,
            offset=size_offset,
        )
    offset = r.offset
    return offset, r.take(size, field)


def _pem_blocks(text: bytes, field: str, offset: int) -> list[tuple[int, bytes]]:
    """Split a PEM chain into ``(start, block)``; anything but CERTIFICATE blocks is an error."""
    at = len(text) - len(text.lstrip(b" \t\r\n"))
    blocks = []
    while at < len(text):
        match = _PEM_BLOCK.match(text, at)
        if match is None:
            bad = at
            if text.startswith(_PEM_BEGIN, at):
                stray = _NOT_BASE64.search(text, at + len(_PEM_BEGIN))
                bad = len(text) if stray is None else stray.start()
            found = f"byte {text[bad]:#04x}" if bad < len(text) else "end of data"
            raise InvalidQuote(
                f"{found} where PEM certificate text was expected "
                "(type-5 data must be a chain of PEM CERTIFICATE blocks)",
                field=field,
                offset=offset + bad,
            )
        blocks.append((at, match.group(0)))
        at = match.end()
    if not blocks:
        raise InvalidQuote("empty PCK certificate chain", field=field, offset=offset)
    return blocks


def _parse_certification(
    r: Reader, field: str, allowed: range, container: str
) -> CertificationData:
    type_offset = r.offset
    cert_type = r.u16(f"{field}.type")
    if cert_type not in allowed:
        raise InvalidQuote(
            f"certification data type {cert_type} ({_type_name(cert_type)}), "
            f"expected {allowed.start}..{allowed.stop - 1}",
            field=f"{field}.type",
            offset=type_offset,
        )
    size_offset = r.offset
    size = r.u32(f"{field}.size")
    data_offset, data = _take_declared(r, size, f"{field}.size", size_offset, container)
    if cert_type == CertificationDataType.PCK_CERT_CHAIN:
        _pem_blocks(data.rstrip(b"\x00"), f"{field}.data", data_offset)
    elif cert_type == CertificationDataType.PPID_RSA3072_ENCRYPTED and size != _ENCRYPTED_PPID_SIZE:
        raise InvalidQuote(
            f"{size} bytes of encrypted-PPID data, expected {_ENCRYPTED_PPID_SIZE} "
            "(encrypted PPID 384, CPUSVN 16, PCESVN 2, PCE-ID 2)",
            field=f"{field}.size",
            offset=size_offset,
        )
    return CertificationData(cert_type, data)


def _parse_qe_tail(
    r: Reader, prefix: str, container: str
) -> tuple[EnclaveReportBody, bytes, bytes]:
    offset = r.offset
    qe_report = EnclaveReportBody.parse(
        r.take(REPORT_BODY_SIZE, f"{prefix}.qe_report"), field=f"{prefix}.qe_report", offset=offset
    )
    qe_report_signature = r.take(64, f"{prefix}.qe_report_signature")
    size_offset = r.offset
    auth_size = r.u16(f"{prefix}.qe_auth_data_size")
    _, qe_auth_data = _take_declared(
        r, auth_size, f"{prefix}.qe_auth_data_size", size_offset, container
    )
    return qe_report, qe_report_signature, qe_auth_data


def _expect_consumed(r: Reader, what: str, field: str, declared_at: int) -> None:
    if r.remaining:
        raise InvalidQuote(
            f"{r.remaining} bytes left over: the declared size exceeds what its {what} occupy",
            field=field,
            offset=declared_at,
        )


def _parse_sig_v3(r: Reader) -> EcdsaSigData:
    signature = r.take(64, "signature_data.signature")
    attest_pub_key = r.take(64, "signature_data.attest_pub_key")
    qe_report, qe_sig, auth = _parse_qe_tail(r, "signature_data", "signature data")
    cert = _parse_certification(r, "signature_data.certification", range(1, 6), "signature data")
    return EcdsaSigData(signature, attest_pub_key, qe_report, qe_sig, auth, cert)


def _parse_sig_v4(data: bytes, r: Reader) -> EcdsaSigDataV4:
    signature = r.take(64, "signature_data.signature")
    attest_pub_key = r.take(64, "signature_data.attest_pub_key")
    type_offset = r.offset
    outer_type = r.u16("signature_data.certification.type")
    if outer_type != CertificationDataType.ECDSA_SIG_AUX_DATA:
        raise InvalidQuote(
            f"certification data type {outer_type} ({_type_name(outer_type)}), "
            "expected 6 (QE report certification data) in a v4/v5 quote",
            field="signature_data.certification.type",
            offset=type_offset,
        )
    size_offset = r.offset
    size = r.u32("signature_data.certification.size")
    start, _ = _take_declared(
        r, size, "signature_data.certification.size", size_offset, "signature data"
    )
    inner = Reader(data, start=start, end=start + size)
    prefix = "signature_data.qe_report_certification"
    qe_report, qe_sig, auth = _parse_qe_tail(inner, prefix, "type-6 certification data")
    cert = _parse_certification(
        inner, f"{prefix}.certification", range(1, 6), "type-6 certification data"
    )
    _expect_consumed(inner, "parts", "signature_data.certification.size", size_offset)
    qe_cert = QeReportCertificationData(qe_report, qe_sig, auth, cert)
    return EcdsaSigDataV4(signature, attest_pub_key, qe_cert)


def parse_quote(data: bytes) -> Quote:
    """Parse a v3/v4/v5 DCAP ECDSA quote; raise :class:`InvalidQuote` naming field and offset."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidQuote(f"expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    r = Reader(raw)
    header = _parse_header(r)
    body = _parse_body(r, header)
    size_offset = r.offset
    sig_len = r.u32("signature_data_len")
    start, _ = _take_declared(r, sig_len, "signature_data_len", size_offset, "quote")
    sr = Reader(raw, start=start, end=start + sig_len)
    signature_data: SignatureData
    if header.version == 3:
        signature_data = _parse_sig_v3(sr)
    else:
        signature_data = _parse_sig_v4(raw, sr)
    _expect_consumed(sr, "parts", "signature_data_len", size_offset)
    return _parsed(header, body, signature_data, raw[start + sig_len :], raw)


def _parsed(
    header: QuoteHeader, body: QuoteBody, signature_data: SignatureData, trailing: bytes, raw: bytes
) -> Quote:
    """The :class:`Quote` for parts just read from ``raw``.

    ``Quote.__post_init__`` would check what the parser has already checked and serialise the
    parts again only to obtain ``raw``: the codec is lossless (``to_bytes()`` of a parsed quote
    is its input, a tested property), so ``raw`` is the input itself. Saves a fifth of a parse.
    """
    quote = object.__new__(Quote)
    for name, value in (
        ("header", header),
        ("body", body),
        ("signature_data", signature_data),
        ("trailing", trailing),
        ("raw", raw),
    ):
        object.__setattr__(quote, name, value)
    return quote
