"""A tiny, deterministic SGX PKI for verifier tests: every byte under the test's control.

Real vectors cannot exercise most failure paths (changing a signed byte breaks a signature
first), so these tests mint their own root, PCK CA, PCK leaf (with the SGX extension), TCB
Signing certificate, CRLs, TCB Info, QE Identity and quotes, and verify with ``trusted_root``.
Names follow Intel's CN rules; extensions follow Intel's profile so dcap-qvl accepts them too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from confnode.collateral import Collateral, SignedQeIdentity, SignedTcbInfo
from confnode.sgx import (
    INTEL_QE_VENDOR_ID,
    Attributes,
    CertificationData,
    EcdsaSigData,
    EcdsaSigDataV4,
    EnclaveReportBody,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    TdReportBody,
    encode_pck_extension,
    quote_signed_region,
)
from confnode.sgx.pck import PCK_EXTENSION_OID, PckExtension, PckTcb

NOW = datetime(2025, 1, 15, tzinfo=UTC)
ISSUE = datetime(2025, 1, 1, tzinfo=UTC)
NEXT = datetime(2025, 2, 1, tzinfo=UTC)
FMSPC = bytes.fromhex("00A067110000")
QE_MRSIGNER = bytes.fromhex("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff")
AUTH_DATA = bytes(range(32))
PCK_SVNS = (11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
PCK_PCESVN = 13
LOW_SVNS = (1, 1, 1, 1, 1, 1) + (0,) * 10


def key(seed: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(seed, ec.SECP256R1())


def raw_sign(private: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_point(private: ec.EllipticCurvePrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "confnode tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def cert(
    subject: str,
    subject_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    serial: int,
    ca: bool,
    pathlen: int | None = None,
    extension: bytes | None = None,
    not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC),
    not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    )
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(PCK_EXTENSION_OID, extension), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def der(c: x509.Certificate) -> bytes:
    return c.public_bytes(Encoding.DER)


def crl(
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    revoked: tuple[int, ...] = (),
    *,
    this_update: datetime = ISSUE,
    next_update: datetime = NEXT,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name(issuer))
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(ISSUE).build()
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def crl_without(
    omit: str, issuer: str, issuer_key: ec.EllipticCurvePrivateKey
) -> x509.CertificateRevocationList:
    """A CRL lacking ``omit`` ("next_update", "crl_number" or "aki"), which cryptography's
    builder cannot produce (it always writes nextUpdate): the DER is assembled by hand."""
    ecdsa_sha256 = _der(0x30, _der(0x06, bytes.fromhex("2a8648ce3d040302")))
    extensions = []
    if omit != "crl_number":
        extensions.append(
            _der(0x30, _der(0x06, bytes.fromhex("551d14")) + _der(0x04, _der(0x02, b"\x01")))
        )
    if omit != "aki":
        key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        assert key_id.key_identifier is not None
        aki = _der(0x30, _der(0x80, key_id.key_identifier))
        extensions.append(_der(0x30, _der(0x06, bytes.fromhex("551d23")) + _der(0x04, aki)))
    tbs = _der(
        0x30,
        _der(0x02, b"\x01")
        + ecdsa_sha256
        + name(issuer).public_bytes()
        + _der(0x17, ISSUE.strftime("%y%m%d%H%M%SZ").encode())
        + (b"" if omit == "next_update" else _der(0x17, NEXT.strftime("%y%m%d%H%M%SZ").encode()))
        + (_der(0xA0, _der(0x30, b"".join(extensions))) if extensions else b""),
    )
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_crl(_der(0x30, tbs + ecdsa_sha256 + _der(0x03, b"\x00" + signature)))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def tcb_level(
    svns: tuple[int, ...],
    pcesvn: int,
    status: str,
    date: str = "2024-03-13",
    advisories=(),
    tdx: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    return {
        "tcb": {
            "sgxtcbcomponents": [{"svn": s} for s in svns],
            "pcesvn": pcesvn,
            **({"tdxtcbcomponents": [{"svn": s} for s in tdx]} if tdx is not None else {}),
        },
        "tcbDate": f"{date}T00:00:00Z",
        "tcbStatus": status,
        **({"advisoryIDs": list(advisories)} if advisories else {}),
    }


DEFAULT_LEVELS = (
    tcb_level(PCK_SVNS, PCK_PCESVN, "UpToDate", "2024-03-13"),
    tcb_level(LOW_SVNS, 5, "OutOfDate", "2018-01-04", ("INTEL-SA-00001",)),
)


def qe_level(isvsvn: int, status: str, advisories=()) -> dict[str, Any]:
    return {
        "tcb": {"isvsvn": isvsvn},
        "tcbDate": "2024-03-13T00:00:00Z",
        "tcbStatus": status,
        **({"advisoryIDs": list(advisories)} if advisories else {}),
    }


@dataclass
class Scenario:
    """Knobs for one scenario; :meth:`build` returns (quote bytes, Collateral, root DER)."""

    # collateral
    levels: tuple[dict[str, Any], ...] = DEFAULT_LEVELS
    tcb_fmspc: bytes = FMSPC
    tcb_pce_id: bytes = b"\x00\x00"
    tcb_id: str = "SGX"
    tcb_type: int = 0
    tcb_issue: datetime = ISSUE
    tcb_next: datetime = NEXT
    qe_levels: tuple[dict[str, Any], ...] = (qe_level(8, "UpToDate"), qe_level(6, "OutOfDate"))
    qe_id: str = "QE"
    miscselect: str = "00000000"
    miscselect_mask: str = "FFFFFFFF"
    qe_attributes: str = "11000000000000000000000000000000"
    qe_attributes_mask: str = "FBFFFFFFFFFFFFFF0000000000000000"
    qe_mrsigner: bytes = QE_MRSIGNER
    qe_isvprodid: int = 1
    pck_revoked: tuple[int, ...] = ()
    root_revoked: tuple[int, ...] = ()
    with_crls: bool = True
    platform_crl: bool = False  # PCK CRL from a different CA than the PCK leaf's
    # quote
    debug: bool = False
    qe_misc_select: int = 0
    qe_flags: int = 0x15
    qe_isv_svn: int = 8
    auth_data: bytes = AUTH_DATA
    report_data_tail: bytes = bytes(32)
    pck_svns: tuple[int, ...] = PCK_SVNS
    pck_pcesvn: int = PCK_PCESVN
    pck_fmspc: bytes = FMSPC
    chain: str = "leaf,ca,root"
    leaf_cn: str = "Test SGX PCK Certificate"
    leaf_extension: bool = True
    leaf_signer: int = 12  # seed of the key that signs the PCK leaf (12 = the PCK CA's)
    tamper_quote_signature: bool = False
    tamper_qe_signature: bool = False
    tamper_tcb_signature: bool = False
    report_data: bytes = field(default=b"confnode".ljust(64, b"\0"))
    #: Expiry overrides by item: certificates "root", "ca", "tcb", "leaf", plus "crl_ca" / "qe_tcb"
    #: (a re-issue, same key and name, used only in the PCK CRL / QE Identity issuer chain), and
    #: nextUpdate of "tcb_info", "qe_identity", "root_ca_crl", "pck_crl".
    expires: tuple[tuple[str, datetime], ...] = ()
    #: "root_ca_crl" / "pck_crl" -> the member that CRL lacks (see :func:`crl_without`).
    crl_omits: tuple[tuple[str, str], ...] = ()
    root_crl_this_update: datetime = ISSUE
    leaf_not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    # TDX: a v4 (TD 1.0) or v5 (TD 1.5) quote; TCB Info members tdxModule and
    # tdxModuleIdentities (JSON objects) when not None.
    tdx: bool = False
    td15: bool = False
    tee_tcb_svn: bytes = bytes(16)
    tee_tcb_svn2: bytes = bytes(16)
    mr_signer_seam: bytes = bytes(48)
    seam_attributes: bytes = bytes(8)
    td_attributes: bytes = bytes.fromhex("0000001000000000")  # SEPT_VE_DISABLE, as real TDs
    mr_servicetd: bytes = bytes(48)
    tdx_module: dict[str, Any] | None = None
    tdx_module_identities: tuple[dict[str, Any], ...] | None = None

    def replace(self, **changes: Any) -> Scenario:
        return replace(self, **changes)

    def build(self) -> tuple[bytes, Collateral, bytes]:
        root_k, ca_k, other_ca_k, pck_k, tcb_k, att_k = (key(i) for i in (11, 12, 13, 14, 15, 16))
        expires = dict(self.expires)
        far = datetime(2040, 1, 1, tzinfo=UTC)
        root = cert(
            "Test SGX Root CA",
            root_k,
            "Test SGX Root CA",
            root_k,
            serial=1,
            ca=True,
            pathlen=1,
            not_after=expires.get("root", far),
        )

        def processor_ca(not_after: datetime) -> x509.Certificate:
            return cert(
                "Test SGX PCK Processor CA",
                ca_k,
                "Test SGX Root CA",
                root_k,
                serial=2,
                ca=True,
                pathlen=0,
                not_after=not_after,
            )

        def tcb_signing(not_after: datetime) -> x509.Certificate:
            return cert(
                "Test SGX TCB Signing",
                tcb_k,
                "Test SGX Root CA",
                root_k,
                serial=4,
                ca=False,
                not_after=not_after,
            )

        ca = processor_ca(expires.get("ca", far))
        other_ca = cert(
            "Test SGX PCK Platform CA",
            other_ca_k,
            "Test SGX Root CA",
            root_k,
            serial=3,
            ca=True,
            pathlen=0,
        )
        tcb = tcb_signing(expires.get("tcb", far))
        qe_tcb = tcb_signing(expires["qe_tcb"]) if "qe_tcb" in expires else tcb
        extension = PckExtension(
            ppid=bytes(16),
            tcb=PckTcb(
                comp_svns=self.pck_svns, pcesvn=self.pck_pcesvn, cpusvn=bytes(self.pck_svns)
            ),
            pce_id=b"\x00\x00",
            fmspc=self.pck_fmspc,
            sgx_type=0,
        )
        leaf = cert(
            self.leaf_cn,
            pck_k,
            "Test SGX PCK Processor CA",
            key(self.leaf_signer),
            serial=0x1234,
            ca=False,
            extension=encode_pck_extension(extension) if self.leaf_extension else None,
            not_after=expires.get("leaf", far),
            not_before=self.leaf_not_before,
        )
        parts = {"leaf": leaf, "ca": ca, "root": root}
        chain_pem = pem(*(parts[p] for p in self.chain.split(",")))

        info = {
            "id": self.tcb_id,
            "version": 3,
            "issueDate": _iso(self.tcb_issue),
            "nextUpdate": _iso(expires.get("tcb_info", self.tcb_next)),
            "fmspc": self.tcb_fmspc.hex(),
            "pceId": self.tcb_pce_id.hex(),
            "tcbType": self.tcb_type,
            "tcbEvaluationDataNumber": 17,
            "tcbLevels": list(self.levels),
        }
        if self.tdx_module is not None:
            info["tdxModule"] = self.tdx_module
        if self.tdx_module_identities is not None:
            info["tdxModuleIdentities"] = list(self.tdx_module_identities)
        identity = {
            "id": self.qe_id,
            "version": 2,
            "issueDate": _iso(ISSUE),
            "nextUpdate": _iso(expires.get("qe_identity", NEXT)),
            "tcbEvaluationDataNumber": 17,
            "miscselect": self.miscselect,
            "miscselectMask": self.miscselect_mask,
            "attributes": self.qe_attributes,
            "attributesMask": self.qe_attributes_mask,
            "mrsigner": self.qe_mrsigner.hex().upper(),
            "isvprodid": self.qe_isvprodid,
            "tcbLevels": list(self.qe_levels),
        }
        tcb_body = json.dumps(info, separators=(",", ":"))
        qe_body = json.dumps(identity, separators=(",", ":"))
        tcb_sig = raw_sign(tcb_k, tcb_body.encode())
        if self.tamper_tcb_signature:
            tcb_sig = tcb_sig[:-1] + bytes([tcb_sig[-1] ^ 1])
        crl_ca, crl_ca_k, crl_ca_name = (
            (other_ca, other_ca_k, "Test SGX PCK Platform CA")
            if self.platform_crl
            else (ca, ca_k, "Test SGX PCK Processor CA")
        )
        if "crl_ca" in expires and not self.platform_crl:
            crl_ca = processor_ca(expires["crl_ca"])
        omits = dict(self.crl_omits)
        collateral = Collateral.from_parts(
            tcb_info=SignedTcbInfo.from_parts(tcb_body, tcb_sig),
            tcb_info_issuer_chain=pem(tcb, root),
            qe_identity=SignedQeIdentity.from_parts(qe_body, raw_sign(tcb_k, qe_body.encode())),
            qe_identity_issuer_chain=pem(qe_tcb, root),
            pck_crl=(
                (
                    crl_without(omits["pck_crl"], crl_ca_name, crl_ca_k)
                    if "pck_crl" in omits
                    else crl(
                        crl_ca_name,
                        crl_ca_k,
                        self.pck_revoked,
                        next_update=expires.get("pck_crl", NEXT),
                    )
                )
                if self.with_crls
                else None
            ),
            pck_crl_issuer_chain=pem(crl_ca, root),
            root_ca_crl=(
                (
                    crl_without(omits["root_ca_crl"], "Test SGX Root CA", root_k)
                    if "root_ca_crl" in omits
                    else crl(
                        "Test SGX Root CA",
                        root_k,
                        self.root_revoked,
                        this_update=self.root_crl_this_update,
                        next_update=expires.get("root_ca_crl", NEXT),
                    )
                )
                if self.with_crls
                else None
            ),
        )

        att_point = raw_point(att_k)
        qe_report = EnclaveReportBody(
            misc_select=self.qe_misc_select,
            attributes=Attributes(flags=self.qe_flags, xfrm=0xE7),
            mr_signer=QE_MRSIGNER,
            isv_prod_id=1,
            isv_svn=self.qe_isv_svn,
            report_data=hashlib.sha256(att_point + self.auth_data).digest() + self.report_data_tail,
        )
        qe_bytes = qe_report.to_bytes()
        qe_sig = raw_sign(pck_k, qe_bytes)
        if self.tamper_qe_signature:
            qe_sig = bytes([qe_sig[0] ^ 1]) + qe_sig[1:]
        certification = CertificationData(5, chain_pem.encode() + b"\0")
        if self.tdx:
            return (
                self._td_quote(att_k, att_point, qe_report, qe_sig, certification),
                collateral,
                der(root),
            )
        header = QuoteHeader(
            version=3,
            att_key_type=2,
            tee_type=0,
            qe_svn=8,
            pce_svn=13,
            vendor_id=INTEL_QE_VENDOR_ID,
            user_data=bytes(20),
        )
        body = EnclaveReportBody(
            attributes=Attributes(flags=0x07 if self.debug else 0x05, xfrm=0xE7),
            mr_enclave=bytes(range(32)),
            mr_signer=bytes(range(32, 64)),
            isv_prod_id=3,
            isv_svn=4,
            report_data=self.report_data,
        )
        signature = raw_sign(att_k, quote_signed_region(header, body))
        if self.tamper_quote_signature:
            signature = signature[:-1] + bytes([signature[-1] ^ 0x80])
        quote = Quote(
            header,
            body,
            EcdsaSigData(
                signature=signature,
                attest_pub_key=att_point,
                qe_report=qe_report,
                qe_report_signature=qe_sig,
                qe_auth_data=self.auth_data,
                certification=certification,
            ),
        )
        return quote.raw, collateral, der(root)

    def _td_quote(
        self,
        att_k: ec.EllipticCurvePrivateKey,
        att_point: bytes,
        qe_report: EnclaveReportBody,
        qe_sig: bytes,
        certification: CertificationData,
    ) -> bytes:
        header = QuoteHeader(
            version=5 if self.td15 else 4,
            att_key_type=2,
            tee_type=0x81,
            vendor_id=INTEL_QE_VENDOR_ID,
        )
        body = TdReportBody(
            tee_tcb_svn=self.tee_tcb_svn,
            mr_seam=bytes([0xAA]) * 48,
            mrsigner_seam=self.mr_signer_seam,
            seam_attributes=self.seam_attributes,
            td_attributes=self.td_attributes,
            xfam=bytes.fromhex("e718060000000000"),
            mr_td=bytes([0x4D]) * 48,
            rt_mr=tuple(bytes([i]) * 48 for i in range(4)),  # type: ignore[arg-type]
            report_data=self.report_data,
            tee_tcb_svn2=self.tee_tcb_svn2 if self.td15 else None,
            mr_servicetd=self.mr_servicetd if self.td15 else None,
        )
        signature = raw_sign(att_k, quote_signed_region(header, body))
        if self.tamper_quote_signature:
            signature = signature[:-1] + bytes([signature[-1] ^ 0x80])
        signature_data = EcdsaSigDataV4(
            signature=signature,
            attest_pub_key=att_point,
            qe_report_certification=QeReportCertificationData(
                qe_report=qe_report,
                qe_report_signature=qe_sig,
                qe_auth_data=self.auth_data,
                certification=certification,
            ),
        )
        return Quote(header, body, signature_data).raw


ROOT_SERIAL, CA_SERIAL, PLATFORM_CA_SERIAL, TCB_SERIAL, LEAF_SERIAL = 1, 2, 3, 4, 0x1234
ONE_SECOND = timedelta(seconds=1)


# ------------------------------------------------------------------------------------------ TDX

TDX_MODULE = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
#: TEE TCB SVN of the baseline TD: module SVN 5, module version 1, microcode 7.
TEE_TCB_SVN = bytes([5, 1, 7]) + bytes(13)
TDX_UP = (5, 0, 7) + (0,) * 13
TDX_LOW = (3, 0, 5) + (0,) * 13


def module_identity(
    ident: str, *levels: dict[str, Any], mrsigner: str = "00" * 48
) -> dict[str, Any]:
    return {**TDX_MODULE, "mrsigner": mrsigner, "id": ident, "tcbLevels": list(levels)}


DEFAULT_MODULE_IDENTITIES = (
    module_identity("TDX_03", qe_level(3, "UpToDate")),
    module_identity(
        "TDX_01", qe_level(4, "UpToDate"), qe_level(2, "OutOfDate", ("INTEL-SA-01036",))
    ),
)
TDX_LEVELS = (
    tcb_level(PCK_SVNS, PCK_PCESVN, "UpToDate", "2024-03-13", tdx=TDX_UP),
    tcb_level(PCK_SVNS, PCK_PCESVN, "OutOfDate", "2023-08-09", ("INTEL-SA-00837",), TDX_LOW),
    tcb_level(LOW_SVNS, 5, "OutOfDate", "2018-01-04", ("INTEL-SA-00001",), TDX_LOW),
)
#: A TD 1.0 on an up-to-date platform, with TDX collateral (TCB Info id TDX, TD_QE).
TDX = Scenario(
    tdx=True,
    tcb_id="TDX",
    qe_id="TD_QE",
    levels=TDX_LEVELS,
    tdx_module=TDX_MODULE,
    tdx_module_identities=DEFAULT_MODULE_IDENTITIES,
    tee_tcb_svn=TEE_TCB_SVN,
    qe_levels=(qe_level(8, "UpToDate"), qe_level(6, "OutOfDate")),
)
#: A TD 1.5 launched on an out-of-date TDX module (TDX_01 SVN 3) now running the newest one:
#: Intel advises relaunching it (TDRelaunchAdvised).
TDX_RELAUNCH = TDX.replace(
    td15=True, tee_tcb_svn=bytes([3, 1, 7]) + bytes(13), tee_tcb_svn2=TEE_TCB_SVN
)
