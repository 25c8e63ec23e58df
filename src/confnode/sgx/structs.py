"""Fixed-size SGX structures: report body, REPORT, TARGETINFO, QE report info, attestation key id.

Layouts follow intel/linux-sgx ``sgx_report.h``/``sgx_quote.h`` and DCAP ``sgx_ql_quote.h``
(see ``sgx-dcap.md`` §1.2 and ``node-and-aesm.md`` §1.9). Reserved bytes are kept as fields,
so ``to_bytes()`` reproduces any parsed structure byte for byte, including non-zero reserved
areas; when building from fields they default to zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confnode.sgx._wire import check_bytes, check_exact, check_type, check_uint, le

__all__ = [
    "ATTRIBUTE_AEX_NOTIFY",
    "ATTRIBUTE_DEBUG",
    "ATTRIBUTE_EINITTOKEN_KEY",
    "ATTRIBUTE_INIT",
    "ATTRIBUTE_KSS",
    "ATTRIBUTE_MODE64BIT",
    "ATTRIBUTE_PROVISION_KEY",
    "ATT_KEY_ID_BASE_SIZE",
    "ATT_KEY_ID_SIZE",
    "DEFAULT_ECDSA_P256_ATT_KEY_ID",
    "ECDSA_P256_ALGORITHM_ID",
    "INTEL_QE3_MRSIGNER",
    "INTEL_QE_VENDOR_ID",
    "QE_REPORT_INFO_SIZE",
    "REPORT_BODY_SIZE",
    "REPORT_SIZE",
    "TARGET_INFO_SIZE",
    "AttKeyId",
    "Attributes",
    "EnclaveReportBody",
    "QeReportInfo",
    "Report",
    "TargetInfo",
]

REPORT_BODY_SIZE = 384
REPORT_SIZE = 432
TARGET_INFO_SIZE = 512
QE_REPORT_INFO_SIZE = 960
ATT_KEY_ID_SIZE = 256
ATT_KEY_ID_BASE_SIZE = 158

#: QVL ``INTEL_QE_VENDOR_ID``: the vendor id in the header of every quote made by Intel's QE.
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
#: MRSIGNER of Intel's production QE3 (and of its TDX quoting enclave).
INTEL_QE3_MRSIGNER = bytes.fromhex(
    "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"
)
#: ``sgx_ql_attestation_algorithm_id_t`` ECDSA_P256.
ECDSA_P256_ALGORITHM_ID = 2

ATTRIBUTE_INIT = 0x01
ATTRIBUTE_DEBUG = 0x02
ATTRIBUTE_MODE64BIT = 0x04
ATTRIBUTE_PROVISION_KEY = 0x10
ATTRIBUTE_EINITTOKEN_KEY = 0x20
ATTRIBUTE_KSS = 0x80
ATTRIBUTE_AEX_NOTIFY = 0x400

_Z16 = bytes(16)
_Z32 = bytes(32)
_Z64 = bytes(64)


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "little")


@dataclass(frozen=True, slots=True)
class Attributes:
    """``sgx_attributes_t``: 64-bit flags and 64-bit XFRM, both little-endian."""

    flags: int = 0
    xfrm: int = 0

    SIZE = 16

    def __post_init__(self) -> None:
        check_uint(self.flags, 64, "attributes.flags")
        check_uint(self.xfrm, 64, "attributes.xfrm")

    @classmethod
    def parse(cls, data: bytes, *, field: str = "attributes", offset: int = 0) -> Attributes:
        check_exact(data, cls.SIZE, field, offset)
        return cls(_u64(data, 0), _u64(data, 8))

    def to_bytes(self) -> bytes:
        return le(self.flags, 8) + le(self.xfrm, 8)

    @property
    def init(self) -> bool:
        return bool(self.flags & ATTRIBUTE_INIT)

    @property
    def debug(self) -> bool:
        """Enclave memory is readable by a debugger: never trust its secrets."""
        return bool(self.flags & ATTRIBUTE_DEBUG)

    @property
    def mode64bit(self) -> bool:
        return bool(self.flags & ATTRIBUTE_MODE64BIT)

    @property
    def provision_key(self) -> bool:
        return bool(self.flags & ATTRIBUTE_PROVISION_KEY)

    @property
    def einittoken_key(self) -> bool:
        return bool(self.flags & ATTRIBUTE_EINITTOKEN_KEY)

    @property
    def kss(self) -> bool:
        return bool(self.flags & ATTRIBUTE_KSS)

    @property
    def aex_notify(self) -> bool:
        return bool(self.flags & ATTRIBUTE_AEX_NOTIFY)

    def flag_names(self) -> tuple[str, ...]:
        """Names of the set flag bits Intel defines, in bit order (for display)."""
        names = (
            (ATTRIBUTE_INIT, "INIT"),
            (ATTRIBUTE_DEBUG, "DEBUG"),
            (ATTRIBUTE_MODE64BIT, "MODE64BIT"),
            (ATTRIBUTE_PROVISION_KEY, "PROVISIONKEY"),
            (ATTRIBUTE_EINITTOKEN_KEY, "EINITTOKENKEY"),
            (ATTRIBUTE_KSS, "KSS"),
            (ATTRIBUTE_AEX_NOTIFY, "AEXNOTIFY"),
        )
        return tuple(name for bit, name in names if self.flags & bit)


@dataclass(frozen=True, slots=True)
class EnclaveReportBody:
    """``sgx_report_body_t`` (384 bytes): the enclave identity an SGX quote or REPORT carries."""

    cpu_svn: bytes = _Z16
    misc_select: int = 0
    reserved1: bytes = bytes(12)
    isv_ext_prod_id: bytes = _Z16
    attributes: Attributes = field(default_factory=Attributes)
    mr_enclave: bytes = _Z32
    reserved2: bytes = _Z32
    mr_signer: bytes = _Z32
    reserved3: bytes = _Z32
    config_id: bytes = _Z64
    isv_prod_id: int = 0
    isv_svn: int = 0
    config_svn: int = 0
    reserved4: bytes = bytes(42)
    isv_family_id: bytes = _Z16
    report_data: bytes = _Z64

    SIZE = REPORT_BODY_SIZE

    def __post_init__(self) -> None:
        check_bytes(self.cpu_svn, 16, "report_body.cpu_svn")
        check_uint(self.misc_select, 32, "report_body.misc_select")
        check_bytes(self.reserved1, 12, "report_body.reserved1")
        check_bytes(self.isv_ext_prod_id, 16, "report_body.isv_ext_prod_id")
        check_type(self.attributes, Attributes, "report_body.attributes")
        check_bytes(self.mr_enclave, 32, "report_body.mr_enclave")
        check_bytes(self.reserved2, 32, "report_body.reserved2")
        check_bytes(self.mr_signer, 32, "report_body.mr_signer")
        check_bytes(self.reserved3, 32, "report_body.reserved3")
        check_bytes(self.config_id, 64, "report_body.config_id")
        check_uint(self.isv_prod_id, 16, "report_body.isv_prod_id")
        check_uint(self.isv_svn, 16, "report_body.isv_svn")
        check_uint(self.config_svn, 16, "report_body.config_svn")
        check_bytes(self.reserved4, 42, "report_body.reserved4")
        check_bytes(self.isv_family_id, 16, "report_body.isv_family_id")
        check_bytes(self.report_data, 64, "report_body.report_data")

    @classmethod
    def parse(
        cls, data: bytes, *, field: str = "report_body", offset: int = 0
    ) -> EnclaveReportBody:
        check_exact(data, cls.SIZE, field, offset)
        d = bytes(data)
        return cls(
            cpu_svn=d[0:16],
            misc_select=_u32(d, 16),
            reserved1=d[20:32],
            isv_ext_prod_id=d[32:48],
            attributes=Attributes(_u64(d, 48), _u64(d, 56)),
            mr_enclave=d[64:96],
            reserved2=d[96:128],
            mr_signer=d[128:160],
            reserved3=d[160:192],
            config_id=d[192:256],
            isv_prod_id=_u16(d, 256),
            isv_svn=_u16(d, 258),
            config_svn=_u16(d, 260),
            reserved4=d[262:304],
            isv_family_id=d[304:320],
            report_data=d[320:384],
        )

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.cpu_svn,
                le(self.misc_select, 4),
                self.reserved1,
                self.isv_ext_prod_id,
                self.attributes.to_bytes(),
                self.mr_enclave,
                self.reserved2,
                self.mr_signer,
                self.reserved3,
                self.config_id,
                le(self.isv_prod_id, 2),
                le(self.isv_svn, 2),
                le(self.config_svn, 2),
                self.reserved4,
                self.isv_family_id,
                self.report_data,
            )
        )


@dataclass(frozen=True, slots=True)
class Report:
    """``sgx_report_t`` (432 bytes): an EREPORT, MACed for the target enclave."""

    body: EnclaveReportBody = field(default_factory=EnclaveReportBody)
    key_id: bytes = _Z32
    mac: bytes = _Z16

    SIZE = REPORT_SIZE

    def __post_init__(self) -> None:
        check_type(self.body, EnclaveReportBody, "report.body")
        check_bytes(self.key_id, 32, "report.key_id")
        check_bytes(self.mac, 16, "report.mac")

    @classmethod
    def parse(cls, data: bytes, *, field: str = "report", offset: int = 0) -> Report:
        check_exact(data, cls.SIZE, field, offset)
        d = bytes(data)
        return cls(
            body=EnclaveReportBody.parse(d[:384], field=f"{field}.body", offset=offset),
            key_id=d[384:416],
            mac=d[416:432],
        )

    @property
    def mac_input(self) -> bytes:
        """The bytes the CPU MACs (AES-CMAC with the report key): the body alone."""
        return self.body.to_bytes()

    def to_bytes(self) -> bytes:
        return self.body.to_bytes() + self.key_id + self.mac


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """``sgx_target_info_t`` (512 bytes): identifies the enclave a REPORT is made for."""

    mr_enclave: bytes = _Z32
    attributes: Attributes = field(default_factory=Attributes)
    reserved1: bytes = bytes(2)
    config_svn: int = 0
    misc_select: int = 0
    reserved2: bytes = bytes(8)
    config_id: bytes = _Z64
    reserved3: bytes = bytes(384)

    SIZE = TARGET_INFO_SIZE

    def __post_init__(self) -> None:
        check_bytes(self.mr_enclave, 32, "target_info.mr_enclave")
        check_type(self.attributes, Attributes, "target_info.attributes")
        check_bytes(self.reserved1, 2, "target_info.reserved1")
        check_uint(self.config_svn, 16, "target_info.config_svn")
        check_uint(self.misc_select, 32, "target_info.misc_select")
        check_bytes(self.reserved2, 8, "target_info.reserved2")
        check_bytes(self.config_id, 64, "target_info.config_id")
        check_bytes(self.reserved3, 384, "target_info.reserved3")

    @classmethod
    def parse(cls, data: bytes, *, field: str = "target_info", offset: int = 0) -> TargetInfo:
        check_exact(data, cls.SIZE, field, offset)
        d = bytes(data)
        return cls(
            mr_enclave=d[0:32],
            attributes=Attributes(_u64(d, 32), _u64(d, 40)),
            reserved1=d[48:50],
            config_svn=_u16(d, 50),
            misc_select=_u32(d, 52),
            reserved2=d[56:64],
            config_id=d[64:128],
            reserved3=d[128:512],
        )

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.mr_enclave,
                self.attributes.to_bytes(),
                self.reserved1,
                le(self.config_svn, 2),
                le(self.misc_select, 4),
                self.reserved2,
                self.config_id,
                self.reserved3,
            )
        )


@dataclass(frozen=True, slots=True)
class QeReportInfo:
    """``sgx_ql_qe_report_info_t`` (960 bytes): lets an app enclave check the QE's own REPORT."""

    nonce: bytes = _Z16
    app_enclave_target_info: TargetInfo = field(default_factory=TargetInfo)
    qe_report: Report = field(default_factory=Report)

    SIZE = QE_REPORT_INFO_SIZE

    def __post_init__(self) -> None:
        check_bytes(self.nonce, 16, "qe_report_info.nonce")
        check_type(
            self.app_enclave_target_info, TargetInfo, "qe_report_info.app_enclave_target_info"
        )
        check_type(self.qe_report, Report, "qe_report_info.qe_report")

    @classmethod
    def parse(cls, data: bytes, *, field: str = "qe_report_info", offset: int = 0) -> QeReportInfo:
        check_exact(data, cls.SIZE, field, offset)
        d = bytes(data)
        return cls(
            nonce=d[0:16],
            app_enclave_target_info=TargetInfo.parse(
                d[16:528], field=f"{field}.app_enclave_target_info", offset=offset + 16
            ),
            qe_report=Report.parse(d[528:960], field=f"{field}.qe_report", offset=offset + 528),
        )

    def to_bytes(self) -> bytes:
        return self.nonce + self.app_enclave_target_info.to_bytes() + self.qe_report.to_bytes()


@dataclass(frozen=True, slots=True)
class AttKeyId:
    """``sgx_att_key_id_ext_t`` (256 bytes) whose first 158 bytes are ``sgx_ql_att_key_id_t``.

    AESM compares key ids on the 158-byte ``base`` only; the tail (``spid``, ``att_key_type``,
    ``reserved``) is zero for ECDSA.
    """

    id: int = 0
    version: int = 0
    mrsigner_length: int = 32
    mrsigner: bytes = bytes(48)
    prod_id: int = 0
    extended_prod_id: bytes = _Z16
    config_id: bytes = _Z64
    family_id: bytes = _Z16
    algorithm_id: int = ECDSA_P256_ALGORITHM_ID
    spid: bytes = _Z16
    att_key_type: int = 0
    reserved: bytes = bytes(80)

    SIZE = ATT_KEY_ID_SIZE

    def __post_init__(self) -> None:
        check_uint(self.id, 16, "att_key_id.id")
        check_uint(self.version, 16, "att_key_id.version")
        check_uint(self.mrsigner_length, 16, "att_key_id.mrsigner_length")
        check_bytes(self.mrsigner, 48, "att_key_id.mrsigner")
        check_uint(self.prod_id, 32, "att_key_id.prod_id")
        check_bytes(self.extended_prod_id, 16, "att_key_id.extended_prod_id")
        check_bytes(self.config_id, 64, "att_key_id.config_id")
        check_bytes(self.family_id, 16, "att_key_id.family_id")
        check_uint(self.algorithm_id, 32, "att_key_id.algorithm_id")
        check_bytes(self.spid, 16, "att_key_id.spid")
        check_uint(self.att_key_type, 16, "att_key_id.att_key_type")
        check_bytes(self.reserved, 80, "att_key_id.reserved")

    @classmethod
    def parse(cls, data: bytes, *, field: str = "att_key_id", offset: int = 0) -> AttKeyId:
        check_exact(data, cls.SIZE, field, offset)
        d = bytes(data)
        return cls(
            id=_u16(d, 0),
            version=_u16(d, 2),
            mrsigner_length=_u16(d, 4),
            mrsigner=d[6:54],
            prod_id=_u32(d, 54),
            extended_prod_id=d[58:74],
            config_id=d[74:138],
            family_id=d[138:154],
            algorithm_id=_u32(d, 154),
            spid=d[158:174],
            att_key_type=_u16(d, 174),
            reserved=d[176:256],
        )

    @property
    def base(self) -> bytes:
        """The 158-byte ``sgx_ql_att_key_id_t``: what AESM matches supported key ids on."""
        return b"".join(
            (
                le(self.id, 2),
                le(self.version, 2),
                le(self.mrsigner_length, 2),
                self.mrsigner,
                le(self.prod_id, 4),
                self.extended_prod_id,
                self.config_id,
                self.family_id,
                le(self.algorithm_id, 4),
            )
        )

    def to_bytes(self) -> bytes:
        return self.base + self.spid + le(self.att_key_type, 2) + self.reserved


#: ``g_default_ecdsa_p256_att_key_id`` of DCAP's QE3 wrapper, as the 256-byte ext struct.
DEFAULT_ECDSA_P256_ATT_KEY_ID = AttKeyId(
    mrsigner_length=32,
    mrsigner=INTEL_QE3_MRSIGNER + _Z16,
    prod_id=1,
    algorithm_id=ECDSA_P256_ALGORITHM_ID,
).to_bytes()
