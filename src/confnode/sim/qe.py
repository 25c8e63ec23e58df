"""The simulated Quoting Enclave (QE3): attestation key, QE report, SGX quote v3 (cert type 5).

Shaped like Intel's QE3: the attestation key is certified by a QE report whose report_data is
SHA-256(attest_pub ‖ auth_data) ‖ 32 zero bytes and whose body the PCK key signs; quotes carry
the PCK leaf ‖ intermediate ‖ root PEM chain NUL-terminated (as recent Intel quotes do). The QE
checks every incoming REPORT's MAC with its own report key and refuses forgeries with AESM's
INVALID_REPORT code (47), which ``libsgx_quote_ex`` maps to SGX_ERROR_MAC_MISMATCH.

Everything per quote except the header ‖ body signature is fixed, so the tail of the signature
data is assembled once: a quote costs one CMAC check and one ECDSA signature.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from confnode.errors import ConfnodeError, InvalidInput
from confnode.sgx import (
    INTEL_QE_VENDOR_ID,
    QE_REPORT_INFO_SIZE,
    REPORT_BODY_SIZE,
    REPORT_SIZE,
    QeReportInfo,
    Report,
)
from confnode.sim.enclave import SimCpu, SimEnclave, SimEnclaveIdentity

#: AESM ``aesm_error_t`` codes the simulated QE reports (node-and-aesm.md §1.14).
AESM_PARAMETER_ERROR = 3
AESM_INVALID_REPORT = 47

#: Intel QE3's authentication data: the 32 bytes 00 01 … 1F.
QE_AUTH_DATA = bytes(range(32))

CERT_TYPE_PCK_CERT_CHAIN = 5

# RFC 6979 signatures cost the same as random ones here and make quotes reproducible.
_SHA256_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class QuotingError(ConfnodeError):
    """The quoting enclave refused a request; ``aesm_code`` is the AESM error code to send."""

    def __init__(self, aesm_code: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.aesm_code = aesm_code


class QuoteParameterError(QuotingError, InvalidInput):
    """A REPORT or QE report info of the wrong size (AESM PARAMETER_ERROR)."""

    def __init__(self, message: str) -> None:
        super().__init__(AESM_PARAMETER_ERROR, message)


class InvalidReportError(QuotingError, InvalidInput):
    """A REPORT whose MAC does not verify for the QE (AESM INVALID_REPORT)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            AESM_INVALID_REPORT,
            message,
            hint="make the REPORT with the QE's target info on the same platform",
        )


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, _SHA256_ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """The quote's 64-byte x‖y form of a P-256 public key."""
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


class SimQuotingEnclave:
    """A QE3 look-alike bound to one simulated platform (CPU secret, PCK key and chain)."""

    def __init__(
        self,
        *,
        cpu: SimCpu,
        identity: SimEnclaveIdentity,
        attestation_key: ec.EllipticCurvePrivateKey,
        pck_key: ec.EllipticCurvePrivateKey,
        pck_chain_pem: bytes,
        pce_svn: int,
        qe_id: bytes,
    ) -> None:
        if len(qe_id) != 16:
            raise InvalidInput(f"qe_id is {len(qe_id)} bytes, expected 16")
        self._enclave = SimEnclave(identity, cpu)
        self._cpu = cpu
        self._qe_target = identity.target_info()
        self._attestation_key = attestation_key
        attest_pub = raw_public_key(attestation_key.public_key())
        self._pub_key_id = hashlib.sha256(attest_pub + QE_AUTH_DATA).digest()
        # The QE report certifying the attestation key. On hardware it targets the PCE; only its
        # body travels in the quote, signed by the PCK key.
        qe_report_body = identity.report_body(cpu.cpu_svn, self._pub_key_id + bytes(32)).to_bytes()
        cert_data = pck_chain_pem.rstrip(b"\0") + b"\0"
        self._tail = b"".join(
            (
                attest_pub,
                qe_report_body,
                raw_signature(pck_key, qe_report_body),
                struct.pack("<H", len(QE_AUTH_DATA)),
                QE_AUTH_DATA,
                struct.pack("<HI", CERT_TYPE_PCK_CERT_CHAIN, len(cert_data)),
                cert_data,
            )
        )
        self._header = (
            struct.pack("<HHIHH", 3, 2, 0, identity.isv_svn, pce_svn)
            + INTEL_QE_VENDOR_ID
            + qe_id
            + bytes(4)
        )
        self._sig_data_len = struct.pack("<I", 64 + len(self._tail))

    @property
    def identity(self) -> SimEnclaveIdentity:
        return self._enclave.identity

    @property
    def pub_key_id(self) -> bytes:
        """ECDSA_ID: SHA-256(attestation public key ‖ auth data), 32 bytes, as QE3 reports it."""
        return self._pub_key_id

    def target_info(self) -> bytes:
        """The QE's TARGETINFO (512 bytes): application enclaves make their REPORT for it."""
        return self._enclave.target_info()

    def quote_size(self) -> int:
        return len(self._header) + REPORT_BODY_SIZE + 4 + 64 + len(self._tail)

    def quote(
        self, report: bytes, qe_report_info: bytes | None = None
    ) -> tuple[bytes, bytes | None]:
        """Turn a REPORT made for this QE into a quote v3.

        With ``qe_report_info`` (960 bytes) also return it with ``qe_report`` filled in: a
        REPORT from the QE for the app enclave's target info whose report_data is
        SHA-256(nonce ‖ quote) ‖ 32 zero bytes, so the app enclave can trust the quote it got.
        """
        report = bytes(report)  # callers may hand over bytearray/memoryview buffers
        if len(report) != REPORT_SIZE:
            raise QuoteParameterError(f"REPORT is {len(report)} bytes, expected {REPORT_SIZE}")
        info: QeReportInfo | None = None
        if qe_report_info is not None:
            if len(qe_report_info) != QE_REPORT_INFO_SIZE:
                raise QuoteParameterError(
                    f"qe_report_info is {len(qe_report_info)} bytes, expected {QE_REPORT_INFO_SIZE}"
                )
            info = QeReportInfo.parse(qe_report_info)
        if not self._cpu.check_report(self._qe_target, report):
            raise InvalidReportError(
                "REPORT MAC does not verify under the QE's report key: the REPORT was not made "
                "for this quoting enclave on this platform"
            )
        signed = self._header + report[:REPORT_BODY_SIZE]
        quote = (
            signed + self._sig_data_len + raw_signature(self._attestation_key, signed) + self._tail
        )
        if info is None:
            return quote, None
        qe_report = self._enclave.report(
            info.app_enclave_target_info.to_bytes(),
            hashlib.sha256(info.nonce + quote).digest() + bytes(32),
        )
        filled = QeReportInfo(
            nonce=info.nonce,
            app_enclave_target_info=info.app_enclave_target_info,
            qe_report=Report.parse(qe_report),
        )
        return quote, filled.to_bytes()
