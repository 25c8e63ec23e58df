"""A simulated TDX platform: TD quotes v4/v5 and TDX collateral, on the simulated SGX PKI.

A TDX host is an SGX platform whose TD Quoting Enclave signs TD reports, so the simulated TDX
platform reuses a :class:`~confnode.sim.SimPlatform`'s seed and CA hierarchy (same root, same
PCK Platform CA, same TCB Signing key) and adds what differs: its own PCK leaf (TDX hosts have
their own FMSPC and Platform-CA certificates), a TD QE (``TD_QE`` identity, ISVPRODID 2) with its
own attestation key, and TCB Info v3 with ``id`` TDX, ``tdxtcbcomponents``, ``tdxModule`` and
``tdxModuleIdentities``. Every TD QE artefact is derived from the seed, so the same platform and
options always give byte-identical certificates, quotes and collateral.

Status selection mirrors the SGX simulator: each level of :data:`TDX_TCB_LEVELS` is reachable by
copying its SGX components and PCESVN into the PCK certificate and its TDX components into the
TD's TEE_TCB_SVN. Two levels differ only by the "TDX late microcode" component (TEE_TCB_SVN[2]),
so TDX components take part in matching; the TDX module's own SVN (TEE_TCB_SVN[0]) selects a
``TDX_01`` module identity level, whose status verifiers merge into the platform's.

TEE_TCB_SVN[1] (the module's major version) is 1, and every level's first two TDX components are
below the simulated TD's: Intel's QVL skips those two components for module versions > 0 while
dcap-qvl compares all sixteen, so both verifiers select the same level.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from confnode.errors import InvalidInput
from confnode.sgx import (
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_TDX,
    CertificationData,
    CertificationDataType,
    EcdsaSigDataV4,
    PckExtension,
    PckTcb,
    PlatformConfiguration,
    QeReportCertificationData,
    QuoteHeader,
    TdReportBody,
    encode_pck_extension,
)
from confnode.sim._derive import expand, private_key
from confnode.sim.enclave import SimEnclaveIdentity
from confnode.sim.platform import (
    SIM_QE_ATTRIBUTES,
    SimCollateralSource,
    SimPcsResponses,
    SimPlatform,
    pck_crl_der,
)
from confnode.sim.qe import QE_AUTH_DATA, raw_public_key, raw_signature
from confnode.sim.tcb import (
    TCB_LEVEL_NOT_FOUND,
    SimQeLevel,
    identity_levels,
    level_entry,
    qe_identity_body,
    sign_raw,
    svn_components,
    tcb_info_text,
)

#: FMSPC of the simulated TDX platform family ("SIMTDX"): never a real Intel FMSPC.
DEFAULT_TDX_FMSPC = "53494D544458"

#: Identity of the simulated TD QE and TDX module: plainly not Intel's values.
SIM_TD_QE_MRSIGNER = hashlib.sha256(b"confnode SIMULATED TD QE signer").digest()
SIM_TD_QE_MRENCLAVE = hashlib.sha256(b"confnode SIMULATED TD QE enclave").digest()
SIM_TDX_MODULE_MRSIGNER = hashlib.sha384(b"confnode SIMULATED TDX module signer").digest()
SIM_TDX_MODULE_MRSEAM = hashlib.sha384(b"confnode SIMULATED TDX module").digest()
TD_QE_ISVPRODID = 2

#: Defaults of a simulated TD: plainly simulated measurements.
DEFAULT_MR_TD = hashlib.sha384(b"confnode SIMULATED TD image").digest()
DEFAULT_RTMRS: tuple[bytes, bytes, bytes, bytes] = (
    hashlib.sha384(b"confnode SIMULATED RTMR0 (firmware)").digest(),
    hashlib.sha384(b"confnode SIMULATED RTMR1 (kernel)").digest(),
    hashlib.sha384(b"confnode SIMULATED RTMR2 (kernel command line, initrd)").digest(),
    bytes(48),
)
#: TDATTRIBUTES with only SEPT_VE_DISABLE (bit 28) set, as production TDs run (dcap-qvl requires
#: it); bit 0 is TUD.DEBUG.
TD_ATTRIBUTES = (1 << 28).to_bytes(8, "little")
TD_DEBUG = 0x01
#: XFAM of a typical production TD (x87, SSE, AVX, AVX-512, PKRU, CET, AMX).
TD_XFAM = bytes.fromhex("e718060000000000")

#: TEE_TCB_SVN[1]: the module's major version, which names its identity (``TDX_01``).
MODULE_VERSION = 1
#: The TD QE's ISVSVN and the TDX module's ISVSVN that verify UpToDate.
DEFAULT_TD_QE_SVN = 4
DEFAULT_MODULE_SVN = 6


@dataclass(frozen=True, slots=True)
class SimTdxTcbLevel:
    status: str
    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...]
    tcb_date: str
    advisory_ids: tuple[str, ...] = ()


def _sgx(first: int, config: int) -> tuple[int, ...]:
    # As in the SGX table: components 0/1 stand for microcode, component 6 for configuration.
    return (first, first, 2, 2, 3, 1, config, 5, 0, 0, 0, 0, 0, 0, 0, 0)


def _tdx(microcode: int) -> tuple[int, ...]:
    # Module ISVSVN and major version first (kept low, see module docstring), then late microcode.
    return (2, 0, microcode, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


_SA_CONFIG = "INTEL-SA-00289"
_SA_HARDENING = "INTEL-SA-00615"
_SA_TDX = ("INTEL-SA-01036", "INTEL-SA-01099")
_SA_REVOKED = "INTEL-SA-00837"

#: The simulated TDX FMSPC's TCB levels, in Intel's order (SGX comps, PCESVN, TDX comps; highest
#: first).
TDX_TCB_LEVELS: tuple[SimTdxTcbLevel, ...] = (
    SimTdxTcbLevel("UpToDate", _sgx(4, 1), 13, _tdx(3), "2024-11-13T00:00:00Z"),
    SimTdxTcbLevel("OutOfDate", _sgx(4, 1), 13, _tdx(2), "2024-03-13T00:00:00Z", _SA_TDX),
    SimTdxTcbLevel(
        "ConfigurationNeeded", _sgx(4, 0), 13, _tdx(3), "2024-11-13T00:00:00Z", (_SA_CONFIG,)
    ),
    SimTdxTcbLevel(
        "OutOfDateConfigurationNeeded",
        _sgx(4, 0),
        13,
        _tdx(2),
        "2024-03-13T00:00:00Z",
        (_SA_CONFIG, *_SA_TDX),
    ),
    SimTdxTcbLevel(
        "SWHardeningNeeded", _sgx(3, 1), 11, _tdx(3), "2023-08-09T00:00:00Z", (_SA_HARDENING,)
    ),
    SimTdxTcbLevel(
        "ConfigurationAndSWHardeningNeeded",
        _sgx(3, 0),
        11,
        _tdx(3),
        "2023-08-09T00:00:00Z",
        (_SA_CONFIG, _SA_HARDENING),
    ),
    SimTdxTcbLevel(
        "Revoked", _sgx(2, 1), 5, _tdx(3), "2018-01-04T00:00:00Z", (_SA_REVOKED, _SA_HARDENING)
    ),
)
#: Below every level: the verifier finds no matching TCB level.
_NOT_FOUND = (_sgx(1, 1), 5, _tdx(3))

#: Statuses a simulated TDX platform can be configured at (the SGX simulator's names).
TDX_PLATFORM_STATUSES: tuple[str, ...] = (
    *(lvl.status for lvl in TDX_TCB_LEVELS),
    TCB_LEVEL_NOT_FOUND,
)


@dataclass(frozen=True, slots=True)
class SimModuleLevel(SimQeLevel):
    """A TDX module (or TD QE) identity level: the same fields as a QE identity level."""


#: ``TDX_01`` module identity levels (highest first); module levels know only these statuses.
TDX_MODULE_LEVELS: tuple[SimModuleLevel, ...] = (
    SimModuleLevel(6, "UpToDate", "2024-11-13T00:00:00Z"),
    SimModuleLevel(4, "OutOfDate", "2024-03-13T00:00:00Z", _SA_TDX),
    SimModuleLevel(3, "Revoked", "2023-02-15T00:00:00Z", ("INTEL-SA-00960",)),
)

#: TD QE identity levels (highest first). A TD QE at ISVSVN 4 is UpToDate.
TD_QE_LEVELS: tuple[SimModuleLevel, ...] = (
    SimModuleLevel(4, "UpToDate", "2024-03-13T00:00:00Z"),
    SimModuleLevel(2, "OutOfDate", "2023-08-09T00:00:00Z", (_SA_HARDENING,)),
)


def tdx_platform_tcb(status: str) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """(SGX component SVNs, PCESVN, TDX component SVNs) that verify to ``status``."""
    for level in TDX_TCB_LEVELS:
        if level.status == status:
            return level.sgx_components, level.pcesvn, level.tdx_components
    if status == TCB_LEVEL_NOT_FOUND:
        return _NOT_FOUND
    raise InvalidInput(
        f"unknown simulated TDX TCB status {status!r}; expected one of "
        f"{', '.join(TDX_PLATFORM_STATUSES)}"
    )


def tdx_tcb_info_body(
    *,
    fmspc: bytes,
    pce_id: bytes,
    issue_date: datetime,
    next_update: datetime,
    tcb_evaluation_data_number: int,
) -> str:
    """The exact compact ``"tcbInfo"`` text of TDX TCB Info v3 (key order as Intel's PCS).

    ``tcbType`` is 0, as in every TDX TCB Info Intel's PCS has served (the only type defined).
    """
    module_signer = SIM_TDX_MODULE_MRSIGNER.hex().upper()
    no_attributes = {"attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"}
    levels = [
        level_entry(
            {
                "sgxtcbcomponents": svn_components(level.sgx_components),
                "pcesvn": level.pcesvn,
                "tdxtcbcomponents": svn_components(level.tdx_components),
            },
            level,
        )
        for level in TDX_TCB_LEVELS
    ]
    module = {
        "tdxModule": {"mrsigner": module_signer, **no_attributes},
        "tdxModuleIdentities": [
            {
                "id": f"TDX_{MODULE_VERSION:02X}",
                "mrsigner": module_signer,
                **no_attributes,
                "tcbLevels": identity_levels(TDX_MODULE_LEVELS),
            }
        ],
    }
    return tcb_info_text(
        "TDX",
        levels,
        fmspc=fmspc,
        pce_id=pce_id,
        issue_date=issue_date,
        next_update=next_update,
        tcb_evaluation_data_number=tcb_evaluation_data_number,
        extra=module,
    )


def td_qe_identity_body(
    *, issue_date: datetime, next_update: datetime, tcb_evaluation_data_number: int
) -> str:
    """The exact compact ``"enclaveIdentity"`` text of the simulated TD QE (``id`` TD_QE)."""
    return qe_identity_body(
        mrsigner=SIM_TD_QE_MRSIGNER,
        issue_date=issue_date,
        next_update=next_update,
        tcb_evaluation_data_number=tcb_evaluation_data_number,
        identity_id="TD_QE",
        isvprodid=TD_QE_ISVPRODID,
        levels=TD_QE_LEVELS,
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _bytes(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise InvalidInput(f"{what} must be {size} bytes")
    return value


class SimTdxPlatform(SimCollateralSource):
    """A simulated TDX host next to a simulated SGX platform (same seed and CA hierarchy).

    ``tcb`` and ``revoked_pck`` default to the SGX platform's, so ``confnode sim init --tcb X``
    makes SGX and TD quotes verify to the same status.
    """

    def __init__(
        self,
        platform: SimPlatform,
        *,
        tcb: str | None = None,
        module_svn: int = DEFAULT_MODULE_SVN,
        qe_svn: int = DEFAULT_TD_QE_SVN,
        fmspc: str = DEFAULT_TDX_FMSPC,
        revoked_pck: bool | None = None,
    ) -> None:
        cfg = platform.config
        self._platform = platform
        self._tcb = cfg.tcb if tcb is None else str(tcb)
        self._sgx, self._pcesvn, self._tdx = tdx_platform_tcb(self._tcb)
        for name, value in (("module_svn", module_svn), ("qe_svn", qe_svn)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise InvalidInput(f"{name} {value!r} is not an 8-bit SVN")
        try:
            fmspc_bytes = bytes.fromhex(fmspc)
        except ValueError:
            fmspc_bytes = b""
        if len(fmspc_bytes) != 6:
            raise InvalidInput(f"fmspc {fmspc!r}: expected 12 hex digits")
        self._fmspc = fmspc_bytes
        self._module_svn = module_svn
        self._revoked = cfg.revoked_pck if revoked_pck is None else revoked_pck
        seed = cfg.seed_bytes
        pki = platform.pki
        pck_key = private_key(seed, "tdx-pck")
        extension = PckExtension(
            ppid=expand(seed, "tdx-ppid", 16),
            tcb=PckTcb(comp_svns=self._sgx, pcesvn=self._pcesvn, cpusvn=bytes(self._sgx)),
            pce_id=cfg.pce_id_bytes,
            fmspc=fmspc_bytes,
            sgx_type=1,  # Scalable: TDX hosts are Xeon Scalable parts with Platform-CA PCKs
            platform_instance_id=expand(seed, "tdx-platform-instance-id", 16),
            configuration=PlatformConfiguration(
                dynamic_platform=False, cached_keys=True, smt_enabled=True
            ),
        )
        self._pck_cert = pki.issue_pck(
            "platform",
            pck_key.public_key(),
            encode_pck_extension(extension),
            f"tdx/platform/{self._tcb}/{fmspc_bytes.hex().upper()}/{cfg.pce_id}",
        )
        _, intermediate = pki.intermediate("platform")
        self._pck_chain_pem = _pem(self._pck_cert) + _pem(intermediate) + _pem(pki.root_cert)
        self._attestation_key = private_key(seed, "td-qe-attestation")
        attest_pub = raw_public_key(self._attestation_key.public_key())
        qe = SimEnclaveIdentity(
            mr_enclave=SIM_TD_QE_MRENCLAVE,
            mr_signer=SIM_TD_QE_MRSIGNER,
            isv_prod_id=TD_QE_ISVPRODID,
            isv_svn=qe_svn,
            attributes=SIM_QE_ATTRIBUTES,
        )
        qe_report = qe.report_body(
            bytes(self._sgx), hashlib.sha256(attest_pub + QE_AUTH_DATA).digest() + bytes(32)
        )
        certification = QeReportCertificationData(
            qe_report=qe_report,
            qe_report_signature=raw_signature(pck_key, qe_report.to_bytes()),
            qe_auth_data=QE_AUTH_DATA,
            certification=CertificationData(
                CertificationDataType.PCK_CERT_CHAIN, self._pck_chain_pem.encode() + b"\0"
            ),
        )
        self._qe_id = expand(seed, "td-qe-id", 16)
        # Everything but the report and its signature is fixed: a TD quote costs one signature.
        self._headers = {
            version: QuoteHeader(
                version=version,
                tee_type=TEE_TYPE_TDX,
                vendor_id=INTEL_QE_VENDOR_ID,
                user_data=self._qe_id + bytes(4),
            ).to_bytes()
            for version in (4, 5)
        }
        self._sig_tail = EcdsaSigDataV4(bytes(64), attest_pub, certification).to_bytes()[64:]
        self._responses = lru_cache(maxsize=8)(self._make_responses)
        # TDX hosts are Platform-CA parts; collateral is re-issued on the SGX platform's terms.
        self._bundle_ca = "platform"
        self._validity_days = platform.config.collateral_validity_days

    # -- identity -------------------------------------------------------------------------------

    @property
    def platform(self) -> SimPlatform:
        return self._platform

    @property
    def tcb_status(self) -> str:
        return self._tcb

    @property
    def fmspc(self) -> bytes:
        return self._fmspc

    @property
    def qe_id(self) -> bytes:
        return self._qe_id

    @property
    def pck_certificate(self) -> x509.Certificate:
        return self._pck_cert

    @property
    def pck_chain_pem(self) -> str:
        return self._pck_chain_pem

    def root_certificate(self) -> bytes:
        """The simulated root CA certificate (DER), shared with the SGX platform."""
        return self._platform.root_certificate()

    @property
    def tee_tcb_svn(self) -> bytes:
        """The TD's TEE_TCB_SVN: module ISVSVN, module version, then the level's TDX SVNs."""
        return bytes((self._module_svn, MODULE_VERSION, *self._tdx[2:]))

    # -- TD reports and quotes ------------------------------------------------------------------

    def td_report(
        self,
        report_data: bytes = b"",
        *,
        mr_td: bytes = DEFAULT_MR_TD,
        rtmrs: tuple[bytes, bytes, bytes, bytes] = DEFAULT_RTMRS,
        mr_config_id: bytes = bytes(48),
        mr_owner: bytes = bytes(48),
        mr_owner_config: bytes = bytes(48),
        debug: bool = False,
        td15: bool = False,
        launch_module_svn: int | None = None,
    ) -> TdReportBody:
        """A TD report (1.0, or 1.5 with ``td15``) as the simulated TDX module would produce.

        ``report_data`` (at most 64 bytes) is zero-padded like TDG.MR.REPORT's REPORTDATA.
        ``launch_module_svn`` (TD 1.5 only) models a TD-preserving module update: the TD was
        launched under that module ISVSVN (its TEE_TCB_SVN) and the platform's module runs now
        (TEE_TCB_SVN2). Intel's QVL then advises a relaunch when only the TD's module is old.
        """
        if not isinstance(report_data, bytes) or len(report_data) > 64:
            raise InvalidInput("report_data must be at most 64 bytes")
        if not isinstance(rtmrs, tuple) or len(rtmrs) != 4:
            raise InvalidInput("rtmrs must be a tuple of 4 measurements")
        launched = self.tee_tcb_svn
        if launch_module_svn is not None:
            if not td15 or not 0 <= launch_module_svn <= 255:
                raise InvalidInput("launch_module_svn needs td15 and must be an 8-bit SVN")
            launched = bytes((launch_module_svn, *self.tee_tcb_svn[1:]))
        attributes = bytearray(TD_ATTRIBUTES)
        if debug:
            attributes[0] |= TD_DEBUG
        return TdReportBody(
            tee_tcb_svn=launched,
            mr_seam=SIM_TDX_MODULE_MRSEAM,
            mrsigner_seam=SIM_TDX_MODULE_MRSIGNER,
            seam_attributes=bytes(8),
            td_attributes=bytes(attributes),
            xfam=TD_XFAM,
            mr_td=_bytes(mr_td, 48, "mr_td"),
            mr_config_id=_bytes(mr_config_id, 48, "mr_config_id"),
            mr_owner=_bytes(mr_owner, 48, "mr_owner"),
            mr_owner_config=_bytes(mr_owner_config, 48, "mr_owner_config"),
            rt_mr=(
                _bytes(rtmrs[0], 48, "rtmr0"),
                _bytes(rtmrs[1], 48, "rtmr1"),
                _bytes(rtmrs[2], 48, "rtmr2"),
                _bytes(rtmrs[3], 48, "rtmr3"),
            ),
            report_data=report_data.ljust(64, b"\0"),
            tee_tcb_svn2=self.tee_tcb_svn if td15 else None,
            mr_servicetd=bytes(48) if td15 else None,
        )

    def quote(self, report: TdReportBody, *, version: int | None = None) -> bytes:
        """Quote a TD report: v4 for TD 1.0, v5 for TD 1.5 (or ``version=5`` for TD 1.0 too)."""
        if not isinstance(report, TdReportBody):
            raise InvalidInput("expected a TdReportBody (see SimTdxPlatform.td_report)")
        chosen = (5 if report.is_td15 else 4) if version is None else version
        if chosen not in (4, 5) or (chosen == 4 and report.is_td15):
            raise InvalidInput(
                f"cannot quote a TD {'1.5' if report.is_td15 else '1.0'} report as v{chosen}"
            )
        body = report.to_bytes()
        signed = self._headers[chosen]
        if chosen == 5:  # body type (2: TD 1.0, 3: TD 1.5) and size
            signed += struct.pack("<HI", 3 if report.is_td15 else 2, len(body))
        signed += body
        sig_data = raw_signature(self._attestation_key, signed) + self._sig_tail
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    # -- collateral -----------------------------------------------------------------------------

    def _make_responses(self, issued: datetime, expires: datetime) -> SimPcsResponses:
        cfg = self._platform.config
        pki = self._platform.pki
        # The SGX platform's responses carry the same root CRL, chains and PCK CRLs; only the
        # PCK CRL for the TDX leaf's CA differs when that leaf is revoked.
        sgx = self._platform.pcs_responses(issue_date=issued, next_update=expires)
        crls = dict(sgx.pck_crls)
        if self._revoked:
            crls["platform"] = pck_crl_der(
                self._platform, "platform", issued, expires, (self._pck_cert.serial_number,)
            )
        tcb_body = tdx_tcb_info_body(
            fmspc=self._fmspc,
            pce_id=cfg.pce_id_bytes,
            issue_date=issued,
            next_update=expires,
            tcb_evaluation_data_number=cfg.tcb_evaluation_data_number,
        )
        qe_body = td_qe_identity_body(
            issue_date=issued,
            next_update=expires,
            tcb_evaluation_data_number=cfg.tcb_evaluation_data_number,
        )
        return replace(
            sgx,
            tcb_info_body=tcb_body,
            tcb_info_signature=sign_raw(pki.tcb_signing_key, tcb_body.encode()),
            qe_identity_body=qe_body,
            qe_identity_signature=sign_raw(pki.tcb_signing_key, qe_body.encode()),
            pck_crls=crls,
        )
