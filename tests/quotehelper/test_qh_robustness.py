"""Whatever arrives on the socket, the daemon answers or closes, keeps serving, leaks nothing."""

from __future__ import annotations

import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qh_harness import RunningHelper, start_helper
from qh_independent import DEFAULT_KEY_ID, AesmProto, call, frame, transact_raw

from confnode.client import QuoteClient
from confnode.errors import InfrastructureError
from confnode.quotehelper import AesmHandler, QuoteHelperServer, ServerConfig, SimBackend
from confnode.quotehelper import server as server_module
from confnode.sim import SimPlatform

_SUITE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _healthy(aesm: AesmProto, helper: RunningHelper) -> None:
    req = aesm.Request()
    req.getSupportedAttKeyIDNumReq.timeout = 15000
    res = call(aesm, helper.socket_path, req)
    assert res.getSupportedAttKeyIDNumRes.errorCode == 0


def _check_reply_matches(aesm: AesmProto, body: bytes, reply: bytes) -> None:
    """A reply, if any, is one Response whose only sub-message has the request's number."""
    request = aesm.Request()
    request.ParseFromString(body)  # the daemon only replies to parseable requests
    numbers = sorted(f.number for f, _ in request.ListFields())
    response = aesm.Response()
    response.ParseFromString(reply[4:])
    assert struct.unpack("<I", reply[:4])[0] == len(reply) - 4
    fields = response.ListFields()
    assert len(fields) == 1 and fields[0][0].number == numbers[0]
    assert fields[0][1].HasField("errorCode")


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@_SUITE
@given(body=st.binary(max_size=600))
def test_random_bodies_get_reply_or_close(
    aesm: AesmProto, helper: RunningHelper, body: bytes
) -> None:
    reply = transact_raw(helper.socket_path, frame(body), timeout=10)
    if reply is not None:
        _check_reply_matches(aesm, body, reply)
    _healthy(aesm, helper)


@st.composite
def _mutated_requests(draw: st.DrawFn) -> bytes:
    """Valid requests with bytes flipped, dropped or appended: close to what parsers choke on."""
    req_kind = draw(st.sampled_from(["init", "size", "quote", "select", "ids"]))
    body = {
        "init": bytes.fromhex("7a8a020a8002") + DEFAULT_KEY_ID + bytes.fromhex("18012020489875"),
        "size": bytes.fromhex("820186020a8002") + DEFAULT_KEY_ID + bytes.fromhex("489875"),
        "quote": bytes.fromhex("8a01bc050ab003")
        + bytes(432)
        + bytes.fromhex("128002")
        + DEFAULT_KEY_ID
        + bytes.fromhex("208827489875"),
        "select": bytes.fromhex("9a010410001001"),
        "ids": bytes.fromhex("b20106088002489875"),
    }[req_kind]
    data = bytearray(body)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=20))
    return bytes(data[:cut]) + tail if draw(st.booleans()) else bytes(data)


@_SUITE
@given(body=_mutated_requests())
def test_mutated_requests_get_reply_or_close(
    aesm: AesmProto, helper: RunningHelper, body: bytes
) -> None:
    reply = transact_raw(helper.socket_path, frame(body), timeout=10)
    if reply is not None:
        _check_reply_matches(aesm, body, reply)
    _healthy(aesm, helper)


@_SUITE
@given(data=st.data())
def test_truncated_frames_are_closed(
    aesm: AesmProto, helper: RunningHelper, data: st.DataObject
) -> None:
    declared = data.draw(st.integers(1, 4000))
    sent = data.draw(st.binary(max_size=declared - 1))
    raw = data.draw(
        st.sampled_from([struct.pack("<I", declared) + sent, struct.pack("<I", declared)[:3]])
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(helper.socket_path))
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""
    _healthy(aesm, helper)


def test_oversized_prefix_is_closed_without_reading(aesm: AesmProto, helper: RunningHelper) -> None:
    assert transact_raw(helper.socket_path, struct.pack("<I", 64 * 1024 + 1)) is None
    assert transact_raw(helper.socket_path, b"\xff\xff\xff\xff" + bytes(100)) is None
    assert helper.metrics.dropped.labels("oversized")._value.get() == 2
    _healthy(aesm, helper)


def test_slow_client_is_cut_off(
    aesm: AesmProto, platform: SimPlatform, make_helper: Callable[..., RunningHelper]
) -> None:
    helper = make_helper(SimBackend(platform.quoting_enclave), read_timeout=0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(helper.socket_path))
        sock.sendall(b"\x10\x00")  # half a prefix, then silence
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert time.monotonic() - started < 4
    assert helper.metrics.dropped.labels("read-timeout")._value.get() == 1
    _healthy(aesm, helper)


def test_no_fd_leak_after_1000_malformed_connections(
    aesm: AesmProto, helper: RunningHelper
) -> None:
    _healthy(aesm, helper)
    before = _fd_count()
    junk = [
        b"",
        b"\x01",
        struct.pack("<I", 5) + b"\xff" * 5,
        struct.pack("<I", 70000),
        struct.pack("<I", 3) + b"\x7a\x01\x08",
        struct.pack("<I", 100) + b"x",
    ]
    for i in range(1000):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(helper.socket_path))
            sock.sendall(junk[i % len(junk)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not helper.server._tasks and _fd_count() == before:
            break
        time.sleep(0.05)
    assert _fd_count() == before
    _healthy(aesm, helper)


def test_fifty_concurrent_clients(helper: RunningHelper, platform: SimPlatform) -> None:
    enclave = platform.enclave()
    barrier = threading.Barrier(50)

    def one(i: int) -> bytes:
        client = QuoteClient(helper.socket_path)
        barrier.wait(10)
        target = client.target_info()
        return client.quote(enclave.report(target, i.to_bytes(4, "little")))

    with ThreadPoolExecutor(50) as pool:
        quotes = list(pool.map(one, range(50)))
    assert len({q[368:372] for q in quotes}) == 50
    assert helper.metrics.quotes._value.get() == 50


class _SlowBackend(SimBackend):
    def __init__(self, platform: SimPlatform, delay: float) -> None:
        super().__init__(platform.quoting_enclave)
        self.delay = delay
        self.slow = False

    def quote_size(self) -> int:
        if self.slow:
            time.sleep(self.delay)
        return super().quote_size()


def test_backend_timeout_answers_busy_then_recovers(
    aesm: AesmProto, platform: SimPlatform, make_helper: Callable[..., RunningHelper]
) -> None:
    backend = _SlowBackend(platform, delay=0.8)
    helper = make_helper(backend, request_timeout=0.3)
    backend.slow = True
    req = aesm.Request()
    req.getQuoteSizeExReq.att_key_id = DEFAULT_KEY_ID
    started = time.monotonic()
    assert call(aesm, helper.socket_path, req).getQuoteSizeExRes.errorCode == 18
    assert time.monotonic() - started < 0.8
    backend.slow = False
    time.sleep(0.8)  # the stuck call drains from the quoting thread
    assert call(aesm, helper.socket_path, req).getQuoteSizeExRes.errorCode == 0


class _BrokenBackend(SimBackend):
    def quote_size(self) -> int:
        raise RuntimeError("backend bug")


def test_backend_crash_is_unexpected_error(
    aesm: AesmProto, platform: SimPlatform, make_helper: Callable[..., RunningHelper]
) -> None:
    backend = _BrokenBackend(platform.quoting_enclave)
    backend.quote_size = SimBackend(platform.quoting_enclave).quote_size  # type: ignore[method-assign]
    helper = make_helper(backend)  # warm-up needs a working quote_size
    del backend.quote_size
    req = aesm.Request()
    req.getQuoteSizeExReq.att_key_id = DEFAULT_KEY_ID
    assert call(aesm, helper.socket_path, req).getQuoteSizeExRes.errorCode == 1
    assert helper.metrics.errors.labels("GetQuoteSizeEx", "AESM_UNEXPECTED_ERROR")._value.get() == 1
    _healthy(aesm, helper)


# --- socket file handling and shutdown ----------------------------------------------------------


def test_socket_mode_and_group(
    platform: SimPlatform, make_helper: Callable[..., RunningHelper]
) -> None:
    gid = os.getgid()
    helper = make_helper(
        SimBackend(platform.quoting_enclave), socket_mode=0o660, socket_group=str(gid)
    )
    st_ = helper.socket_path.stat()
    assert stat.S_ISSOCK(st_.st_mode)
    assert stat.S_IMODE(st_.st_mode) == 0o660
    assert st_.st_gid == gid


def test_unknown_group_is_a_clear_error(platform: SimPlatform, short_dir: Path) -> None:
    with pytest.raises(InfrastructureError, match="no-such-group-qh"):
        start_helper(
            SimBackend(platform.quoting_enclave), short_dir, socket_group="no-such-group-qh"
        )
    assert not (short_dir / "aesm.socket").exists()


def test_refuses_live_socket_and_regular_file_but_replaces_stale(
    aesm: AesmProto, platform: SimPlatform, short_dir: Path, helper: RunningHelper
) -> None:
    backend = SimBackend(platform.quoting_enclave)
    with pytest.raises(InfrastructureError, match="already served"):
        start_helper(backend, helper.socket_path.parent)
    _healthy(aesm, helper)  # the live one was left alone

    regular = short_dir / "file"
    regular.mkdir()
    (regular / "aesm.socket").write_text("not a socket")
    with pytest.raises(InfrastructureError, match="not a socket"):
        start_helper(backend, regular)
    assert (regular / "aesm.socket").read_text() == "not a socket"

    stale_dir = short_dir / "stale"
    stale_dir.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_dir / "aesm.socket"))
    stale.close()  # bound, never listening: a crashed daemon's leftover
    replaced = start_helper(backend, stale_dir)
    try:
        _healthy(aesm, replaced)
    finally:
        replaced.stop()


def test_stop_finishes_in_flight_request_and_removes_socket(
    aesm: AesmProto, platform: SimPlatform, make_helper: Callable[..., RunningHelper]
) -> None:
    backend = _SlowBackend(platform, delay=0.5)
    helper = make_helper(backend)
    backend.slow = True
    req = aesm.Request()
    req.getQuoteSizeExReq.att_key_id = DEFAULT_KEY_ID
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call, aesm, helper.socket_path, req)
        time.sleep(0.2)
        helper.stop()
        assert pending.result(5).getQuoteSizeExRes.errorCode == 0
    assert not helper.socket_path.exists()


def test_connections_over_the_limit_are_closed(
    aesm: AesmProto, platform: SimPlatform, make_helper: Callable[..., RunningHelper]
) -> None:
    helper = make_helper(SimBackend(platform.quoting_enclave), max_connections=2, read_timeout=1.0)
    idle = []
    for _ in range(2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(helper.socket_path))
        idle.append(sock)
    deadline = time.monotonic() + 5
    while len(helper.server._tasks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert transact_raw(helper.socket_path, frame(b"\xaa\x01\x00")) is None
    assert helper.metrics.dropped.labels("overload")._value.get() == 1
    for sock in idle:
        sock.close()
    deadline = time.monotonic() + 5
    while helper.server._tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    _healthy(aesm, helper)


def test_live_socket_with_full_backlog_is_not_replaced(
    platform: SimPlatform, short_dir: Path
) -> None:
    """A busy server (connect fails with EAGAIN) is live: its socket must not be unlinked."""
    path = short_dir / "aesm.socket"
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
        inode = path.stat().st_ino
        with pytest.raises(InfrastructureError, match="already served"):
            start_helper(SimBackend(platform.quoting_enclave), short_dir)
        assert path.stat().st_ino == inode
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_socket_path_in_unusable_directory_is_a_clear_error(
    platform: SimPlatform, short_dir: Path
) -> None:
    (short_dir / "file").write_text("")
    config = ServerConfig(socket_path=short_dir / "file" / "aesm.socket")
    server = QuoteHelperServer(AesmHandler(SimBackend(platform.quoting_enclave)), config)
    with pytest.raises(InfrastructureError, match="cannot serve"):
        server._bind()


def test_failed_bind_leaves_a_racing_servers_socket(
    platform: SimPlatform, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another server binding the path between our stale check and our bind keeps its file."""
    path = short_dir / "aesm.socket"
    racer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    real_socket = socket.socket

    class Raced(real_socket):
        def bind(self, address: object) -> None:
            racer.bind(address)
            racer.listen()
            super().bind(address)  # EADDRINUSE

    monkeypatch.setattr(server_module.socket, "socket", Raced)
    config = ServerConfig(socket_path=path)
    server = QuoteHelperServer(AesmHandler(SimBackend(platform.quoting_enclave)), config)
    try:
        with pytest.raises(InfrastructureError, match="cannot serve"):
            server._bind()
        monkeypatch.undo()
        assert stat.S_ISSOCK(path.lstat().st_mode)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))  # still the racer's live socket
    finally:
        racer.close()
