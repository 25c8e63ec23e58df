"""An AESM client that shares nothing with the helper: its own protoc run, its own framing.

``messages.proto`` is compiled by protoc (grpc_tools) into a descriptor set in a temporary
directory and loaded into a private descriptor pool, so the message classes come from the
``.proto`` text alone — not from the helper's checked-in ``messages_pb2`` (which lives in the
default pool; a second module with the same message names cannot share that pool).
"""

from __future__ import annotations

import socket
import struct
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

PROTO = (
    Path(__file__).resolve().parents[2] / "src" / "confnode" / "_proto" / "aesm" / "messages.proto"
)

#: The default ECDSA P-256 key id, typed in from node-and-aesm.md §1.9 (not imported).
DEFAULT_KEY_ID = (
    bytes.fromhex("000000002000")
    + bytes.fromhex("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff")
    + bytes(16)
    + (1).to_bytes(4, "little")
    + bytes(16 + 64 + 16)
    + (2).to_bytes(4, "little")
    + bytes(98)
)
assert len(DEFAULT_KEY_ID) == 256


@dataclass(frozen=True)
class AesmProto:
    Request: Any
    Response: Any


def compile_proto() -> AesmProto:
    with tempfile.TemporaryDirectory(prefix="aesm-proto-") as tmp:
        out = Path(tmp) / "aesm.desc"
        well_known = resources.files("grpc_tools") / "_proto"
        code = protoc.main(
            [
                "protoc",
                f"-I{PROTO.parent}",
                f"-I{well_known}",
                f"--descriptor_set_out={out}",
                PROTO.name,
            ]
        )
        assert code == 0, f"protoc failed with {code}"
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:
        pool.Add(file_proto)
    return AesmProto(
        Request=message_factory.GetMessageClass(pool.FindMessageTypeByName("aesm.message.Request")),
        Response=message_factory.GetMessageClass(
            pool.FindMessageTypeByName("aesm.message.Response")
        ),
    )


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def _recv(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def transact_raw(path: str | Path, raw: bytes, *, timeout: float = 15.0) -> bytes | None:
    """Send ``raw`` bytes, return the reply frame (prefix included) or ``None`` if closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))  # blocking: waits out a full listen backlog
        sock.settimeout(timeout)
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            return None  # closed before the request was read (e.g. refused as over the limit)
        try:
            prefix = _recv(sock, 4)
        except ConnectionResetError:
            return None
        if prefix is None:
            return None
        (length,) = struct.unpack("<I", prefix)
        body = _recv(sock, length)
        assert body is not None, "reply truncated"
        assert sock.recv(1) == b"", "server must close after one reply"
        return prefix + body


def call(proto: AesmProto, path: str | Path, request: Any) -> Any:
    """One request, one reply; returns the parsed Response (asserting it was sent)."""
    reply = transact_raw(path, frame(request.SerializeToString()))
    assert reply is not None, "daemon closed without a reply"
    response = proto.Response()
    response.ParseFromString(reply[4:])
    return response
