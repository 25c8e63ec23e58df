"""``confnode.client.QuoteClient``: calls, trimming, and AESM codes turned into exceptions."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from qh_harness import RunningHelper

from confnode._proto.aesm import messages_pb2 as pb
from confnode.client import (
    AesmCode,
    AesmError,
    AesmParameterError,
    AesmProtocolError,
    AesmServiceUnavailable,
    AesmTimeout,
    AttestationKeyError,
    InvalidReportError,
    QuoteClient,
    UnsupportedAttKeyIdError,
    error_for_code,
    quote_length,
)
from confnode.errors import InfrastructureError, InvalidInput
from confnode.sgx import DEFAULT_ECDSA_P256_ATT_KEY_ID
from confnode.sim import SimPlatform


@pytest.mark.parametrize(
    ("code", "cls", "kind"),
    [
        (1, AesmProtocolError, InfrastructureError),
        (3, AesmParameterError, InvalidInput),
        (17, AesmServiceUnavailable, InfrastructureError),
        (18, AesmTimeout, InfrastructureError),
        (30, AesmServiceUnavailable, InfrastructureError),
        (38, UnsupportedAttKeyIdError, InvalidInput),
        (42, AttestationKeyError, InfrastructureError),
        (44, AttestationKeyError, InfrastructureError),
        (45, InvalidReportError, InvalidInput),
        (47, InvalidReportError, InvalidInput),
        (48, AesmServiceUnavailable, InfrastructureError),
        (49, AesmProtocolError, InfrastructureError),
        (999, AesmProtocolError, InfrastructureError),
    ],
)
def test_error_for_code(code: int, cls: type[AesmError], kind: type[Exception]) -> None:
    error = error_for_code(code, "GetQuoteEx")
    assert type(error) is cls and isinstance(error, kind)
    assert error.code == code and error.operation == "GetQuoteEx"
    assert str(code) in error.message and "expected 0" in error.message


def test_client_calls(helper: RunningHelper, platform: SimPlatform) -> None:
    client = QuoteClient(helper.socket_path)
    qe = platform.quoting_enclave
    assert client.supported_att_key_id_num() == 1
    assert client.supported_att_key_ids() == (DEFAULT_ECDSA_P256_ATT_KEY_ID,)
    assert client.select_att_key_id() == DEFAULT_ECDSA_P256_ATT_KEY_ID
    assert client.select_att_key_id([DEFAULT_ECDSA_P256_ATT_KEY_ID]) == (
        DEFAULT_ECDSA_P256_ATT_KEY_ID
    )
    assert client.target_info() == qe.target_info()
    assert client.pub_key_id() == qe.pub_key_id
    assert client.quote_size() == qe.quote_size()
    app = platform.enclave()
    report = app.report(client.target_info(), b"client")
    padded = client.quote(report, buf_size=8192)
    assert len(padded) == quote_length(padded) == client.quote(report).__len__()
    nonce = bytes(16)
    quote, info = client.quote_with_qe_report(report, nonce + app.target_info() + bytes(432))
    assert info[528 + 320 : 528 + 352] == hashlib.sha256(nonce + quote).digest()


def test_client_errors_from_the_daemon(helper: RunningHelper, platform: SimPlatform) -> None:
    client = QuoteClient(helper.socket_path)
    wrong = platform.enclave().report(platform.enclave().target_info())
    with pytest.raises(InvalidReportError) as info:
        client.quote(wrong)
    assert info.value.code == AesmCode.INVALID_REPORT
    other_key = bytes([5]) + DEFAULT_ECDSA_P256_ATT_KEY_ID[1:]
    with pytest.raises(UnsupportedAttKeyIdError):
        QuoteClient(helper.socket_path, att_key_id=other_key).target_info()
    with pytest.raises(AesmParameterError):
        client.quote(platform.enclave().report(client.target_info()), buf_size=100)
    with pytest.raises(InvalidInput, match="432"):
        client.quote(bytes(100))
    with pytest.raises(InvalidInput, match="att_key_id"):
        QuoteClient(helper.socket_path, att_key_id=bytes(10))


@pytest.fixture
def fake_server(short_dir: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], Path]]:
    """A one-connection-at-a-time server whose behaviour the test supplies."""
    stops: list[Callable[[], None]] = []

    def start(behaviour: Callable[[socket.socket], None]) -> Path:
        path = short_dir / f"fake{len(stops)}.socket"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(4)
        listener.settimeout(0.1)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    behaviour(conn)
            listener.close()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(5)

        stops.append(halt)
        return path

    yield start
    for halt in stops:
        halt()


def _read_request(conn: socket.socket) -> bytes:
    (length,) = struct.unpack("<I", conn.recv(4, socket.MSG_WAITALL))
    return conn.recv(length, socket.MSG_WAITALL)


def _reply(conn: socket.socket, response: pb.Response) -> None:
    body = response.SerializePartialToString()
    conn.sendall(struct.pack("<I", len(body)) + body)


def test_transport_failures(
    fake_server: Callable[[Callable[[socket.socket], None]], Path],
) -> None:
    closes = fake_server(lambda conn: _read_request(conn) and None)
    with pytest.raises(AesmProtocolError, match="closed after 0 of 4"):
        QuoteClient(closes).target_info()

    silent_done = threading.Event()
    silent = fake_server(lambda conn: silent_done.wait(2) and None)
    with pytest.raises(AesmTimeout, match=r"within 0\.3 s"):
        QuoteClient(silent, timeout=0.3).target_info()
    silent_done.set()

    def wrong_type(conn: socket.socket) -> None:
        _read_request(conn)
        response = pb.Response()
        response.getQuoteSizeExRes.errorCode = 0
        _reply(conn, response)

    with pytest.raises(AesmProtocolError, match="lacks initQuoteExRes"):
        QuoteClient(fake_server(wrong_type)).target_info()

    def no_error_code(conn: socket.socket) -> None:
        _read_request(conn)
        response = pb.Response()
        response.initQuoteExRes.target_info = bytes(512)
        _reply(conn, response)

    with pytest.raises(AesmProtocolError, match="no errorCode"):
        QuoteClient(fake_server(no_error_code)).target_info()

    def short_target(conn: socket.socket) -> None:
        _read_request(conn)
        response = pb.Response()
        response.initQuoteExRes.errorCode = 0
        response.initQuoteExRes.target_info = bytes(100)
        _reply(conn, response)

    with pytest.raises(AesmProtocolError, match="100 bytes"):
        QuoteClient(fake_server(short_target)).target_info()

    def huge(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(struct.pack("<I", 0xFFFF_FFFF))

    with pytest.raises(AesmProtocolError, match="exceeds"):
        QuoteClient(fake_server(huge)).target_info()


def test_quote_length() -> None:
    quote = bytes(432) + struct.pack("<I", 10) + bytes(10)
    assert quote_length(quote + bytes(50)) == 446
    with pytest.raises(InvalidInput, match="at least 436"):
        quote_length(bytes(400))
    with pytest.raises(InvalidInput, match="signature_data_len=10"):
        quote_length(quote[:-1])


def test_full_listen_backlog_times_out(short_dir: Path) -> None:
    path = short_dir / "full.socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)  # never accepts
    fillers: list[socket.socket] = []
    try:
        while len(fillers) < 64:
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect(str(path))
            except BlockingIOError:
                filler.close()
                break
            fillers.append(filler)
        with pytest.raises(AesmTimeout, match="backlog full"):
            QuoteClient(path, timeout=0.3).target_info()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_connect_failures_are_service_unavailable(tmp_path: Path) -> None:
    """Every failed connect is AesmServiceUnavailable, never a bare OSError."""
    too_long = tmp_path / ("x" * 120)
    with pytest.raises(AesmServiceUnavailable, match="cannot connect"):
        QuoteClient(too_long).target_info()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(AesmServiceUnavailable, match="cannot connect"):
        QuoteClient(not_a_dir / "aesm.socket").target_info()


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_client_rejects_non_positive_timeout(timeout: float) -> None:
    with pytest.raises(InvalidInput, match="timeout must be a positive"):
        QuoteClient("/nonexistent/aesm.socket", timeout=timeout)


def test_out_of_range_buf_size_is_invalid_input() -> None:
    """Checked before any I/O: protobuf would raise a bare ValueError on assignment."""
    client = QuoteClient("/nonexistent/aesm.socket")
    with pytest.raises(InvalidInput, match="uint32"):
        client.get_quote_ex(bytes(432), buf_size=2**32)
    with pytest.raises(InvalidInput, match="uint64"):
        client.init_quote_ex(b_pub_key_id=True, buf_size=-1)
