"""EPC allocated per container, from the kubelet PodResources API v1 ``List``.

The device IDs the kubelet reports are the IDs this plugin advertised, so per-unit EPC devices
translate straight into bytes per pod/container.

A busy devices-mode node makes ``List`` large: the kubelet reports every device in its own
``ContainerDevices`` entry (resource name, one ID, NUMA topology), ≈ 52 bytes per MiB of EPC, so
5.3 MB at 100 GiB fully allocated. Decoding that into protobuf messages and Python tuples cost
+69 MiB RSS and 0.23 s of CPU on the event loop, so the agent keeps the response as bytes and
:func:`epc_allocations` walks the wire format once, counting device IDs of the EPC resources
per container, in a worker thread (``benchmarks/device_plugin.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from confnode._proto.podresources.v1 import api_pb2
from confnode.errors import InfrastructureError, InvalidInput

__all__ = [
    "DEFAULT_POD_RESOURCES_SOCKET",
    "EpcAllocation",
    "GrpcPodResourcesClient",
    "PodResourcesSource",
    "epc_allocations",
]

DEFAULT_POD_RESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
#: The kubelet e2e convention; gRPC's own 4 MiB default is too small for busy nodes.
_MAX_RECEIVE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EpcAllocation:
    namespace: str
    pod: str
    container: str
    resource: str
    bytes: int


class PodResourcesSource(Protocol):
    """Returns the kubelet's serialized ``ListPodResourcesResponse``."""

    async def list_response(self) -> bytes: ...


# Single-byte tags (field << 3 | wire type) of the fields the walk reads; everything else is
# skipped by wire type, as protobuf parsers skip unknown fields.
_LEN = 2
_TAG_POD = 0x0A  # ListPodResourcesResponse.pod_resources = 1
_TAG_NAME = 0x0A  # PodResources.name, ContainerResources.name, ContainerDevices.resource_name
_TAG_NAMESPACE = 0x12  # PodResources.namespace = 2
_TAG_CONTAINER = 0x1A  # PodResources.containers = 3
_TAG_DEVICES = 0x12  # ContainerResources.devices = 2
_TAG_DEVICE_ID = 0x12  # ContainerDevices.device_ids = 2


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 64:
            break
    raise InvalidInput(f"PodResources List response: bad varint before byte {pos}")


def _overrun(stop: int, end: int) -> InvalidInput:
    return InvalidInput(
        f"PodResources List response: field ends at byte {stop}, past its message at {end}"
    )


def _field(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """One field at ``pos``: ``(tag, value_start, value_end)``; the next field starts at
    ``value_end``. For a length-delimited field the value is ``data[value_start:value_end]``,
    for the others it is skipped."""
    tag = data[pos]
    if tag < 0x80:
        pos += 1
    else:
        tag, pos = _varint(data, pos, end)
    wire = tag & 7
    if tag >> 3 == 0:
        raise InvalidInput(f"PodResources List response: field number 0 before byte {pos}")
    if wire == _LEN:
        length = data[pos] if pos < end else 0x80
        if length < 0x80:
            pos += 1
        else:
            length, pos = _varint(data, pos, end)
        stop = pos + length
    elif wire == 0:
        _, stop = _varint(data, pos, end)
    elif wire == 1:
        stop = pos + 8
    elif wire == 5:
        stop = pos + 4
    else:
        raise InvalidInput(f"PodResources List response: wire type {wire} at byte {pos}")
    if stop > end:
        raise _overrun(stop, end)
    return tag, pos, stop


def _text(data: bytes, start: int, stop: int) -> str:
    try:
        return data[start:stop].decode()
    except UnicodeDecodeError as error:
        raise InvalidInput(f"PodResources List response: a name is not UTF-8 ({error})") from error


def _container(
    data: bytes, pos: int, end: int, units: list[tuple[bytes, int]]
) -> tuple[str, dict[str, int]]:
    """A ``ContainerResources``: its name and the EPC bytes per resource it holds."""
    name = ""
    counts = [0] * len(units)
    while pos < end:
        if data[pos] == _TAG_DEVICES and pos + 1 < end and data[pos + 1] < 0x80:
            tag, start, stop = _TAG_DEVICES, pos + 2, pos + 2 + data[pos + 1]
            if stop > end:
                raise _overrun(stop, end)
        else:
            tag, start, stop = _field(data, pos, end)
        pos = stop
        if tag == _TAG_NAME:
            name = _text(data, start, stop)
        elif tag == _TAG_DEVICES:
            # ContainerDevices, one per device on a real kubelet: count the device IDs and match
            # the resource name in place. Short string fields (all of them, in practice) are read
            # inline; anything else goes through _field.
            resource = -1
            ids = 0
            inner = start
            while inner < stop:
                tag = data[inner]
                if (
                    (tag == _TAG_DEVICE_ID or tag == _TAG_NAME)
                    and inner + 1 < stop
                    and data[inner + 1] < 0x80
                ):
                    value, inner = inner + 2, inner + 2 + data[inner + 1]
                    if inner > stop:
                        raise _overrun(inner, stop)
                else:
                    tag, value, inner = _field(data, inner, stop)
                if tag == _TAG_DEVICE_ID:
                    ids += 1
                elif tag == _TAG_NAME:
                    resource = -1
                    for index, (wanted, _) in enumerate(units):
                        if inner - value == len(wanted) and data.startswith(wanted, value):
                            resource = index
            if resource >= 0:
                counts[resource] += ids
    return name, {
        units[i][0].decode(): count * units[i][1] for i, count in enumerate(counts) if count
    }


def epc_allocations(data: bytes, unit_bytes: Mapping[str, int]) -> list[EpcAllocation]:
    """EPC bytes per container for the resources in ``unit_bytes`` (resource → bytes per device),
    from a serialized ``ListPodResourcesResponse``, sorted.

    The kubelet reports each device of a container once, so IDs are counted, not deduplicated.
    Raises :class:`InvalidInput` for bytes that are not a well-formed response.
    """
    units = [(name.encode(), unit) for name, unit in sorted(unit_bytes.items())]
    totals: dict[tuple[str, str, str, str], int] = {}
    pos, end = 0, len(data)
    while pos < end:
        tag, start, stop = _field(data, pos, end)
        pos = stop
        if tag != _TAG_POD:
            continue
        pod = namespace = ""
        containers: list[tuple[str, dict[str, int]]] = []
        inner = start
        while inner < stop:  # fields may come in any order: names are known at the end
            tag, value, inner = _field(data, inner, stop)
            if tag == _TAG_NAME:
                pod = _text(data, value, inner)
            elif tag == _TAG_NAMESPACE:
                namespace = _text(data, value, inner)
            elif tag == _TAG_CONTAINER:
                containers.append(_container(data, value, inner, units))
        for container, by_resource in containers:
            for resource, size in by_resource.items():
                key = (namespace, pod, container, resource)
                totals[key] = totals.get(key, 0) + size
    return [EpcAllocation(*key, bytes=value) for key, value in sorted(totals.items())]


class GrpcPodResourcesClient:
    """Plain gRPC over the kubelet's pod-resources unix socket (no TLS, file permissions only)."""

    def __init__(self, socket_path: Path = DEFAULT_POD_RESOURCES_SOCKET, *, timeout: float = 10.0):
        self.socket_path = socket_path
        self._timeout = timeout

    async def list_response(self) -> bytes:
        """The response as received: no deserializer, so no message objects are built."""
        options = [("grpc.max_receive_message_length", _MAX_RECEIVE)]
        async with grpc.aio.insecure_channel(f"unix:{self.socket_path}", options=options) as ch:
            call = ch.unary_unary(
                "/v1.PodResourcesLister/List",
                request_serializer=api_pb2.ListPodResourcesRequest.SerializeToString,
            )
            try:
                response = await call(api_pb2.ListPodResourcesRequest(), timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                raise InfrastructureError(
                    f"kubelet PodResources List on {self.socket_path} failed: "
                    f"{error.code().name} {error.details()}"
                ) from error
        return bytes(response)
