"""``dcap`` backend: Intel's in-process DCAP quote library through ctypes.

``libsgx_dcap_ql.so.1`` exports three calls the daemon needs (``sgx_qe_get_target_info``,
``sgx_qe_get_quote_size``, ``sgx_qe_get_quote``); each returns a ``quote3_error_t`` that is turned
into the AESM code aesmd's own ECDSA bundle would send (``node-and-aesm.md`` §1.14).

Two limits of that public API, both documented in ADR 0006:

* it has no call for the attestation key's ECDSA_ID, so :meth:`DcapBackend.pub_key_id` is
  learnt from the first quote (the QE report's ``report_data`` carries it) and is ``None`` until
  then — the daemon then omits ``pub_key_id``, which every known client tolerates;
* it cannot fill a ``qe_report_info``, so requests carrying one get
  AESM_UNABLE_TO_GENERATE_QE_REPORT (49).
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confnode.client import AesmCode
from confnode.errors import InfrastructureError
from confnode.quotehelper.backend import BackendError
from confnode.sgx.structs import REPORT_SIZE, TARGET_INFO_SIZE

__all__ = [
    "DCAP_LIBRARY",
    "QUOTE3_TO_AESM",
    "DcapBackend",
    "DcapUnavailable",
    "aesm_code_for_quote3_error",
]

#: The soname Intel's packages install (libsgx-dcap-ql).
DCAP_LIBRARY = "libsgx_dcap_ql.so.1"

#: ``quote3_error_to_aesm_error`` of aesmd's ECDSA bundle; anything else maps to 1.
QUOTE3_TO_AESM: dict[int, int] = {
    0x0000: AesmCode.SUCCESS,
    0xE001: AesmCode.UNEXPECTED_ERROR,
    0xE002: AesmCode.PARAMETER_ERROR,
    0xE003: AesmCode.OUT_OF_MEMORY_ERROR,
    0xE004: AesmCode.ECDSA_ID_MISMATCH,
    0xE005: AesmCode.PATHNAME_BUFFER_OVERFLOW_ERROR,
    0xE006: AesmCode.FILE_ACCESS_ERROR,
    0xE007: AesmCode.ERROR_STORED_KEY,
    0xE008: AesmCode.PUB_KEY_ID_MISMATCH,
    0xE009: AesmCode.INVALID_PCE_SIG_SCHEME,
    0xE00A: AesmCode.ATT_KEY_BLOB_ERROR,
    0xE00B: AesmCode.UNSUPPORTED_ATT_KEY_ID,
    0xE00C: AesmCode.UNSUPPORTED_LOADING_POLICY,
    0xE00D: AesmCode.INTERFACE_UNAVAILABLE,
    0xE00E: AesmCode.PLATFORM_LIB_UNAVAILABLE,
    0xE00F: AesmCode.ATT_KEY_NOT_INITIALIZED,
    0xE010: AesmCode.ATT_KEY_CERT_DATA_INVALID,
    0xE011: AesmCode.NO_PLATFORM_CERT_DATA,
    0xE012: AesmCode.OUT_OF_EPC,
    0xE013: AesmCode.ERROR_REPORT,
    0xE014: AesmCode.ENCLAVE_LOST,
    0xE015: AesmCode.INVALID_REPORT,
    0xE016: AesmCode.ENCLAVE_LOAD_ERROR,
    0xE017: AesmCode.UNABLE_TO_GENERATE_QE_REPORT,
    0xE018: AesmCode.KEY_CERTIFICATION_ERROR,
    0xE019: AesmCode.NETWORK_ERROR,
    0xE01A: AesmCode.MSG_ERROR,
}

# Quote v3 offsets (sgx-dcap.md §1): QE report body inside the ECDSA signature data.
_SIG_DATA = 436
_QE_REPORT_DATA = _SIG_DATA + 64 + 64 + 320


def aesm_code_for_quote3_error(error: int) -> int:
    return QUOTE3_TO_AESM.get(error, AesmCode.UNEXPECTED_ERROR)


class DcapUnavailable(InfrastructureError):
    """The DCAP quote library cannot be loaded or used on this host."""

    hint = (
        "install libsgx-dcap-ql (and the QPL), or run `confnode quote-helper --backend sim` "
        "on machines without SGX"
    )


class DcapBackend:
    """Quotes through ``libsgx_dcap_ql.so.1`` loaded in this process (in-process mode)."""

    name = "dcap"

    def __init__(
        self,
        library: str | Path = DCAP_LIBRARY,
        *,
        loader: Callable[[str], Any] = ctypes.CDLL,
    ) -> None:
        if "SGX_AESM_ADDR" in os.environ:
            # The library would switch to out-of-process mode and call the AESM socket — possibly
            # this very daemon.
            raise DcapUnavailable(
                "SGX_AESM_ADDR is set, which puts libsgx_dcap_ql into out-of-process mode; "
                "the quote helper needs in-process mode",
                hint="unset SGX_AESM_ADDR in the quote helper's environment",
            )
        try:
            lib = loader(str(library))
        except OSError as exc:
            raise DcapUnavailable(f"cannot load the DCAP quote library {library}: {exc}") from exc
        try:
            self._get_target_info = lib.sgx_qe_get_target_info
            self._get_quote_size = lib.sgx_qe_get_quote_size
            self._get_quote = lib.sgx_qe_get_quote
        except AttributeError as exc:
            raise DcapUnavailable(f"{library} lacks a DCAP quote-library export: {exc}") from exc
        self._get_target_info.argtypes = [ctypes.POINTER(ctypes.c_uint8)]
        self._get_target_info.restype = ctypes.c_uint32
        self._get_quote_size.argtypes = [ctypes.POINTER(ctypes.c_uint32)]
        self._get_quote_size.restype = ctypes.c_uint32
        self._get_quote.argtypes = [
            ctypes.POINTER(ctypes.c_uint8),
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_uint8),
        ]
        self._get_quote.restype = ctypes.c_uint32
        self.library = str(library)
        self._pub_key_id: bytes | None = None
        self._lock = threading.Lock()

    def target_info(self) -> bytes:
        buf = (ctypes.c_uint8 * TARGET_INFO_SIZE)()
        self._check(self._get_target_info(buf), "sgx_qe_get_target_info")
        return bytes(buf)

    def pub_key_id(self) -> bytes | None:
        return self._pub_key_id

    def quote_size(self) -> int:
        size = ctypes.c_uint32(0)
        self._check(self._get_quote_size(ctypes.byref(size)), "sgx_qe_get_quote_size")
        return size.value

    def quote(self, report: bytes, qe_report_info: bytes | None) -> tuple[bytes, bytes | None]:
        if qe_report_info is not None:
            raise BackendError(
                "the DCAP quote library's public API cannot produce a QE report for qe_report_info",
                aesm_code=AesmCode.UNABLE_TO_GENERATE_QE_REPORT,
            )
        if len(report) != REPORT_SIZE:
            raise BackendError(
                f"REPORT is {len(report)} bytes, expected {REPORT_SIZE}",
                aesm_code=AesmCode.PARAMETER_ERROR,
            )
        size = self.quote_size()
        report_buf = (ctypes.c_uint8 * REPORT_SIZE).from_buffer_copy(report)
        quote_buf = (ctypes.c_uint8 * size)()
        with self._lock:
            rc = self._get_quote(report_buf, size, quote_buf)
        self._check(rc, "sgx_qe_get_quote")
        quote = bytes(quote_buf)
        if len(quote) >= _SIG_DATA:
            (sig_len,) = struct.unpack_from("<I", quote, _SIG_DATA - 4)
            quote = quote[: min(len(quote), _SIG_DATA + sig_len)]
        if len(quote) >= _QE_REPORT_DATA + 32:
            # QE3 puts ECDSA_ID = SHA-256(attestation key ‖ auth data) in its report_data.
            self._pub_key_id = quote[_QE_REPORT_DATA : _QE_REPORT_DATA + 32]
        return quote, None

    @staticmethod
    def _check(error: int, function: str) -> None:
        if error != 0:
            code = aesm_code_for_quote3_error(error)
            raise BackendError(
                f"{function} returned quote3_error_t 0x{error:04X} (AESM code {code})",
                aesm_code=code,
            )
