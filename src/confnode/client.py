"""``QuoteClient``: a pure-Python AESM client, and the AESM wire vocabulary.

Enclave-aware Python programs (and ``confnode node probe``) get ECDSA quotes from whatever serves
``/var/run/aesmd/aesm.socket`` — Intel's aesmd or ``confnode quote-helper`` — without loading
``libsgx_quote_ex``. The wire is Intel's: a 4-byte little-endian length, then one
``aesm.message.Request``; one request per connection; the reply is the matching response
sub-message, whose ``errorCode`` this module turns into a specific exception.

The AESM status codes and the framing helpers live here because the daemon
(:mod:`confnode.quotehelper`) speaks the same wire and must agree with the client byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from confnode._proto.aesm import messages_pb2 as pb
from confnode.errors import ConfnodeError, InfrastructureError, InvalidInput
from confnode.sgx.structs import (
    ATT_KEY_ID_BASE_SIZE,
    ATT_KEY_ID_SIZE,
    DEFAULT_ECDSA_P256_ATT_KEY_ID,
    QE_REPORT_INFO_SIZE,
    REPORT_SIZE,
    TARGET_INFO_SIZE,
)

__all__ = [
    "ATT_KEY_ID_BASE_SIZE",
    "ATT_KEY_ID_SIZE",
    "DEFAULT_SOCKET",
    "IPC_LATENCY_MS",
    "PUB_KEY_ID_SIZE",
    "QE_REPORT_INFO_SIZE",
    "REPORT_SIZE",
    "TARGET_INFO_SIZE",
    "AesmCode",
    "AesmError",
    "AesmParameterError",
    "AesmProtocolError",
    "AesmServiceUnavailable",
    "AesmTimeout",
    "AttestationKeyError",
    "InitQuoteExResult",
    "InvalidReportError",
    "QuoteClient",
    "UnsupportedAttKeyIdError",
    "code_name",
    "encode_frame",
    "error_for_code",
    "quote_length",
]

#: The path Intel compiles into aesmd and ``libsgx_quote_ex``; no environment variable moves it.
DEFAULT_SOCKET = "/var/run/aesmd/aesm.socket"

#: ECDSA_ID = SHA-256(attestation public key ‖ authentication data); always 32 bytes.
PUB_KEY_ID_SIZE = 32
#: ``libsgx_quote_ex`` writes IPC_LATENCY (15 s) into every request's ``timeout`` field.
IPC_LATENCY_MS = 15_000

_PREFIX = struct.Struct("<I")
#: Largest reply the client accepts. AESM may pad a quote to the caller's ``buf_size``.
_MAX_REPLY = 16 * 1024 * 1024
#: A v3 ECDSA quote's fixed part: header 48 + report body 384 + ``signature_data_len`` u32.
_QUOTE_FIXED = 436


class AesmCode(IntEnum):
    """``aesm_error_t`` from linux-sgx ``aesm_error.h`` (wire ``errorCode`` values)."""

    SUCCESS = 0
    UNEXPECTED_ERROR = 1
    NO_DEVICE_ERROR = 2
    PARAMETER_ERROR = 3
    EPIDBLOB_ERROR = 4
    EPID_REVOKED_ERROR = 5
    GET_LICENSETOKEN_ERROR = 6
    SESSION_INVALID = 7
    MAX_NUM_SESSION_REACHED = 8
    PSDA_UNAVAILABLE = 9
    EPH_SESSION_FAILED = 10
    LONG_TERM_PAIRING_FAILED = 11
    NETWORK_ERROR = 12
    NETWORK_BUSY_ERROR = 13
    PROXY_SETTING_ASSIST = 14
    FILE_ACCESS_ERROR = 15
    SGX_PROVISION_FAILED = 16
    SERVICE_STOPPED = 17
    BUSY = 18
    BACKEND_SERVER_BUSY = 19
    UPDATE_AVAILABLE = 20
    OUT_OF_MEMORY_ERROR = 21
    MSG_ERROR = 22
    THREAD_ERROR = 23
    SGX_DEVICE_NOT_AVAILABLE = 24
    ENABLE_SGX_DEVICE_FAILED = 25
    PLATFORM_INFO_BLOB_INVALID_SIG = 26
    KDF_MISMATCH = 28
    OUT_OF_EPC = 29
    SERVICE_UNAVAILABLE = 30
    UNRECOGNIZED_PLATFORM = 31
    ECDSA_ID_MISMATCH = 32
    PATHNAME_BUFFER_OVERFLOW_ERROR = 33
    ERROR_STORED_KEY = 34
    PUB_KEY_ID_MISMATCH = 35
    INVALID_PCE_SIG_SCHEME = 36
    ATT_KEY_BLOB_ERROR = 37
    UNSUPPORTED_ATT_KEY_ID = 38
    UNSUPPORTED_LOADING_POLICY = 39
    INTERFACE_UNAVAILABLE = 40
    PLATFORM_LIB_UNAVAILABLE = 41
    ATT_KEY_NOT_INITIALIZED = 42
    ATT_KEY_CERT_DATA_INVALID = 43
    NO_PLATFORM_CERT_DATA = 44
    ERROR_REPORT = 45
    ENCLAVE_LOST = 46
    INVALID_REPORT = 47
    ENCLAVE_LOAD_ERROR = 48
    UNABLE_TO_GENERATE_QE_REPORT = 49
    KEY_CERTIFICATION_ERROR = 50
    CONFIG_UNSUPPORTED = 51


def code_name(code: int) -> str:
    """``AESM_<NAME>`` for a known code, ``AESM code <n>`` otherwise."""
    try:
        return f"AESM_{AesmCode(code).name}"
    except ValueError:
        return f"AESM code {code}"


# --- exceptions ---------------------------------------------------------------------------------


class AesmError(ConfnodeError):
    """An AESM-speaking service answered with a non-zero ``errorCode`` (or could not be reached).

    ``code`` is the wire ``errorCode`` (``None`` for transport failures); ``operation`` names the
    request, e.g. ``"GetQuoteEx"``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        operation: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.operation = operation


class AesmServiceUnavailable(AesmError, InfrastructureError):
    """Nothing serves the socket, or the service says its quoting component is unavailable."""

    hint = "start aesmd or `confnode quote-helper`, and mount the directory /var/run/aesmd"


class AesmTimeout(AesmError, InfrastructureError):
    """The service did not answer in time, or said it is busy."""

    hint = "the quoting service is overloaded or stuck; retry, then check its logs"


class AesmProtocolError(AesmError, InfrastructureError):
    """The peer closed without a reply or sent something that is not an AESM response, or it
    answered a code no narrower class covers (1 UNEXPECTED_ERROR, 21, 49, ...; see ``code``)."""


class AttestationKeyError(AesmError, InfrastructureError):
    """The platform's attestation key or its certification data is not usable (codes 42–44, 50)."""

    hint = "the node's PCK certificate could not be obtained: check the PCCS/QCNL configuration"


class AesmParameterError(AesmError, InvalidInput):
    """The service rejected a parameter (AESM_PARAMETER_ERROR)."""


class UnsupportedAttKeyIdError(AesmError, InvalidInput):
    """The attestation key id is not one the service offers (AESM_UNSUPPORTED_ATT_KEY_ID)."""


class InvalidReportError(AesmError, InvalidInput):
    """The QE could not verify the REPORT (MAC mismatch: it was not targeted at this QE)."""

    hint = "create the REPORT against the target info returned by InitQuoteEx on this node"


_UNAVAILABLE = {
    AesmCode.NO_DEVICE_ERROR,
    AesmCode.SERVICE_STOPPED,
    AesmCode.SERVICE_UNAVAILABLE,
    AesmCode.ENCLAVE_LOST,
    AesmCode.ENCLAVE_LOAD_ERROR,
    AesmCode.INTERFACE_UNAVAILABLE,
    AesmCode.PLATFORM_LIB_UNAVAILABLE,
    AesmCode.SGX_DEVICE_NOT_AVAILABLE,
    AesmCode.OUT_OF_EPC,
}
_BUSY = {AesmCode.BUSY, AesmCode.BACKEND_SERVER_BUSY}
_ATT_KEY = {
    AesmCode.ATT_KEY_NOT_INITIALIZED,
    AesmCode.ATT_KEY_CERT_DATA_INVALID,
    AesmCode.NO_PLATFORM_CERT_DATA,
    AesmCode.KEY_CERTIFICATION_ERROR,
    AesmCode.NETWORK_ERROR,
    AesmCode.NETWORK_BUSY_ERROR,
    AesmCode.PROXY_SETTING_ASSIST,
}


def error_for_code(code: int, operation: str) -> AesmError:
    """The exception a non-zero ``errorCode`` in the reply to ``operation`` stands for."""
    message = f"{operation} failed: the service answered {code_name(code)} ({code}), expected 0"
    cls: type[AesmError]
    if code in _UNAVAILABLE:
        cls = AesmServiceUnavailable
    elif code in _BUSY:
        cls = AesmTimeout
    elif code in _ATT_KEY:
        cls = AttestationKeyError
    elif code == AesmCode.PARAMETER_ERROR:
        cls = AesmParameterError
    elif code == AesmCode.UNSUPPORTED_ATT_KEY_ID:
        cls = UnsupportedAttKeyIdError
    elif code in (AesmCode.ERROR_REPORT, AesmCode.INVALID_REPORT):
        cls = InvalidReportError
    else:
        cls = AesmProtocolError
    return cls(message, code=code, operation=operation)


# --- framing ------------------------------------------------------------------------------------


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length as a native (little-endian) ``uint32``, as AESM does."""
    return _PREFIX.pack(len(body)) + body


def quote_length(quote: bytes) -> int:
    """The real length of a v3+ quote: 436 + ``signature_data_len`` (u32 at offset 432).

    Replies may be zero-padded to the caller's ``buf_size``; this is how every AESM client trims.
    """
    if len(quote) < _QUOTE_FIXED:
        raise InvalidInput(
            f"quote is {len(quote)} bytes, expected at least {_QUOTE_FIXED} "
            "(header, report body and signature_data_len)"
        )
    sig_len = int.from_bytes(quote[432:436], "little")
    total = _QUOTE_FIXED + sig_len
    if total > len(quote):
        raise InvalidInput(
            f"quote says signature_data_len={sig_len} (total {total} bytes) "
            f"but only {len(quote)} bytes were returned"
        )
    return total


@dataclass(frozen=True, slots=True)
class InitQuoteExResult:
    """What InitQuoteEx returns: the QE's target info and, when asked, its ECDSA key id."""

    target_info: bytes
    pub_key_id_size: int
    pub_key_id: bytes | None


class QuoteClient:
    """Blocking AESM client over a unix socket; one connection per call, like ``libsgx_quote_ex``.

    ``timeout`` bounds each whole call (connect, send, receive), mirroring the 15 s IPC_LATENCY.
    """

    def __init__(
        self,
        socket_path: str | Path = DEFAULT_SOCKET,
        *,
        timeout: float = IPC_LATENCY_MS / 1000,
        att_key_id: bytes = DEFAULT_ECDSA_P256_ATT_KEY_ID,
    ) -> None:
        if len(att_key_id) != ATT_KEY_ID_SIZE:
            raise InvalidInput(
                f"att_key_id is {len(att_key_id)} bytes, expected {ATT_KEY_ID_SIZE} "
                "(sgx_att_key_id_ext_t)"
            )
        if not timeout > 0:
            raise InvalidInput(f"timeout must be a positive number of seconds, got {timeout}")
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.att_key_id = att_key_id

    # -- high-level calls ------------------------------------------------------------------------

    def target_info(self) -> bytes:
        """The QE's 512-byte ``sgx_target_info_t``: create the enclave REPORT against it."""
        return self.init_quote_ex(b_pub_key_id=False).target_info

    def pub_key_id(self) -> bytes:
        """The 32-byte ECDSA_ID of the platform's attestation key."""
        result = self.init_quote_ex(b_pub_key_id=True, buf_size=PUB_KEY_ID_SIZE)
        if result.pub_key_id is None or len(result.pub_key_id) != result.pub_key_id_size:
            raise AesmProtocolError(
                "InitQuoteEx returned no pub_key_id of pub_key_id_size bytes "
                f"(got {None if result.pub_key_id is None else len(result.pub_key_id)}, "
                f"size {result.pub_key_id_size})",
                operation="InitQuoteEx",
            )
        return result.pub_key_id

    def quote(self, report: bytes, *, buf_size: int | None = None) -> bytes:
        """Quote a 432-byte REPORT; returns the quote trimmed to its real length."""
        quote, _ = self.get_quote_ex(report, buf_size=buf_size)
        return quote

    def quote_with_qe_report(self, report: bytes, qe_report_info: bytes) -> tuple[bytes, bytes]:
        """Quote and also get the QE's REPORT to the app enclave (binds nonce and quote)."""
        quote, info = self.get_quote_ex(report, qe_report_info=qe_report_info)
        if info is None or len(info) != QE_REPORT_INFO_SIZE:
            raise AesmProtocolError(
                f"GetQuoteEx returned qe_report_info of "
                f"{None if info is None else len(info)} bytes, expected {QE_REPORT_INFO_SIZE}",
                operation="GetQuoteEx",
            )
        return quote, info

    # -- one method per wire request -------------------------------------------------------------

    def init_quote_ex(
        self, *, b_pub_key_id: bool, buf_size: int | None = None
    ) -> InitQuoteExResult:
        req = pb.Request()
        sub = req.initQuoteExReq
        sub.att_key_id = self.att_key_id
        sub.b_pub_key_id = b_pub_key_id
        if buf_size is not None:
            if not 0 <= buf_size < 2**64:
                raise InvalidInput(f"buf_size {buf_size} does not fit InitQuoteEx's uint64 field")
            sub.buf_size = buf_size
        sub.timeout = IPC_LATENCY_MS
        res = self._call(req, "initQuoteExRes", "InitQuoteEx")
        if len(res.target_info) != TARGET_INFO_SIZE:
            raise AesmProtocolError(
                f"InitQuoteEx returned target_info of {len(res.target_info)} bytes, "
                f"expected {TARGET_INFO_SIZE}",
                operation="InitQuoteEx",
            )
        pub = res.pub_key_id if res.HasField("pub_key_id") else None
        return InitQuoteExResult(bytes(res.target_info), int(res.pub_key_id_size), pub)

    def quote_size(self) -> int:
        req = pb.Request()
        req.getQuoteSizeExReq.att_key_id = self.att_key_id
        req.getQuoteSizeExReq.timeout = IPC_LATENCY_MS
        res = self._call(req, "getQuoteSizeExRes", "GetQuoteSizeEx")
        return int(res.quote_size)

    def get_quote_ex(
        self,
        report: bytes,
        *,
        qe_report_info: bytes | None = None,
        buf_size: int | None = None,
    ) -> tuple[bytes, bytes | None]:
        """GetQuoteEx; ``buf_size`` defaults to GetQuoteSizeEx's answer (the DCAP sequence)."""
        if len(report) != REPORT_SIZE:
            raise InvalidInput(f"REPORT is {len(report)} bytes, expected {REPORT_SIZE}")
        if qe_report_info is not None and len(qe_report_info) != QE_REPORT_INFO_SIZE:
            raise InvalidInput(
                f"qe_report_info is {len(qe_report_info)} bytes, expected {QE_REPORT_INFO_SIZE}"
            )
        size = self.quote_size() if buf_size is None else buf_size
        if not 0 <= size <= 0xFFFF_FFFF:
            raise InvalidInput(f"buf_size {size} does not fit GetQuoteEx's uint32 field")
        req = pb.Request()
        sub = req.getQuoteExReq
        sub.report = report
        sub.att_key_id = self.att_key_id
        if qe_report_info is not None:
            sub.qe_report_info = qe_report_info
        sub.buf_size = size
        sub.timeout = IPC_LATENCY_MS
        res = self._call(req, "getQuoteExRes", "GetQuoteEx")
        if len(res.quote) > size:
            raise AesmProtocolError(
                f"GetQuoteEx returned {len(res.quote)} bytes, more than buf_size {size}",
                operation="GetQuoteEx",
            )
        try:
            quote = res.quote[: quote_length(res.quote)]
        except InvalidInput as exc:
            raise AesmProtocolError(f"GetQuoteEx: {exc.message}", operation="GetQuoteEx") from exc
        info = res.qe_report_info if res.HasField("qe_report_info") else None
        return quote, info

    def supported_att_key_id_num(self) -> int:
        req = pb.Request()
        req.getSupportedAttKeyIDNumReq.timeout = IPC_LATENCY_MS
        res = self._call(req, "getSupportedAttKeyIDNumRes", "GetSupportedAttKeyIDNum")
        return int(res.att_key_id_num)

    def supported_att_key_ids(self) -> tuple[bytes, ...]:
        """The 256-byte key ids the service offers (GetSupportedAttKeyIDNum, then ...IDs)."""
        num = self.supported_att_key_id_num()
        req = pb.Request()
        req.getSupportedAttKeyIDsReq.buf_size = num * ATT_KEY_ID_SIZE
        req.getSupportedAttKeyIDsReq.timeout = IPC_LATENCY_MS
        res = self._call(req, "getSupportedAttKeyIDsRes", "GetSupportedAttKeyIDs")
        blob = bytes(res.att_key_ids)
        if len(blob) != num * ATT_KEY_ID_SIZE:
            raise AesmProtocolError(
                f"GetSupportedAttKeyIDs returned {len(blob)} bytes, "
                f"expected {num} × {ATT_KEY_ID_SIZE}",
                operation="GetSupportedAttKeyIDs",
            )
        return tuple(blob[i : i + ATT_KEY_ID_SIZE] for i in range(0, len(blob), ATT_KEY_ID_SIZE))

    def select_att_key_id(self, candidates: Sequence[bytes] | None = None) -> bytes:
        """SelectAttKeyID over ``candidates`` (256-byte entries), or over all keys when ``None``."""
        req = pb.Request()
        sub = req.selectAttKeyIDReq
        if candidates is not None:
            if not 1 <= len(candidates) <= 10 or any(len(c) != ATT_KEY_ID_SIZE for c in candidates):
                raise InvalidInput(
                    f"SelectAttKeyID takes 1 to 10 entries of {ATT_KEY_ID_SIZE} bytes, "
                    f"got {[len(c) for c in candidates]}"
                )
            sub.att_key_id_list = struct.pack("<HHI", 0, 0, len(candidates)) + b"".join(candidates)
        sub.timeout = IPC_LATENCY_MS
        res = self._call(req, "selectAttKeyIDRes", "SelectAttKeyID")
        return bytes(res.selected_att_key_id)

    # -- transport -------------------------------------------------------------------------------

    def _call(self, request: pb.Request, response_field: str, operation: str) -> Any:
        reply = self._transact(request.SerializeToString(), operation)
        response = pb.Response()
        try:
            response.ParseFromString(reply)
        except DecodeError as exc:
            raise AesmProtocolError(
                f"{operation}: reply of {len(reply)} bytes is not an aesm.message.Response",
                operation=operation,
            ) from exc
        if not response.HasField(response_field):
            raise AesmProtocolError(
                f"{operation}: reply lacks {response_field} "
                f"(has {[f.name for f, _ in response.ListFields()]})",
                operation=operation,
            )
        sub = getattr(response, response_field)
        if not sub.HasField("errorCode"):
            raise AesmProtocolError(
                f"{operation}: reply has no errorCode on the wire", operation=operation
            )
        if sub.errorCode != AesmCode.SUCCESS:
            raise error_for_code(sub.errorCode, operation)
        return sub

    def _connect(self, sock: socket.socket, deadline: float, operation: str) -> None:
        """Connect, waiting while the listen backlog is full (unix sockets then fail with EAGAIN
        instead of blocking)."""
        while True:
            try:
                sock.connect(self.socket_path)
                return
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise AesmServiceUnavailable(
                    f"{operation}: nothing serves {self.socket_path} ({exc.strerror})",
                    operation=operation,
                ) from exc
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise AesmTimeout(
                        f"{operation}: {self.socket_path} accepted no connection within "
                        f"{self.timeout:g} s (listen backlog full)",
                        operation=operation,
                    ) from exc
                time.sleep(0.005)
            except OSError as exc:
                # EACCES, ENOTDIR, a path too long for sun_path...: libsgx_quote_ex reports any
                # failed connect as SGX_ERROR_SERVICE_UNAVAILABLE.
                raise AesmServiceUnavailable(
                    f"{operation}: cannot connect to {self.socket_path}: {exc}",
                    operation=operation,
                ) from exc

    def _transact(self, body: bytes, operation: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            self._connect(sock, deadline, operation)
            try:
                sock.sendall(encode_frame(body))
                (length,) = _PREFIX.unpack(_recv_exactly(sock, 4, deadline, operation))
                if length > _MAX_REPLY:
                    raise AesmProtocolError(
                        f"{operation}: reply length prefix {length} exceeds {_MAX_REPLY}",
                        operation=operation,
                    )
                return _recv_exactly(sock, length, deadline, operation)
            except TimeoutError as exc:
                raise AesmTimeout(
                    f"{operation}: no reply from {self.socket_path} within {self.timeout:g} s",
                    operation=operation,
                ) from exc
            except OSError as exc:
                raise AesmProtocolError(
                    f"{operation}: transport error on {self.socket_path}: {exc}",
                    operation=operation,
                ) from exc
        finally:
            with contextlib.suppress(OSError):
                sock.close()


def _recv_exactly(sock: socket.socket, n: int, deadline: float, operation: str) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(min(n - got, 65536))
        if not chunk:
            raise AesmProtocolError(
                f"{operation}: connection closed after {got} of {n} bytes (the service "
                "closes without a reply when it does not recognise the request)",
                operation=operation,
            )
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
