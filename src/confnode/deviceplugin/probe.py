"""``plugin probe``: talk to any device plugin the way the kubelet does, for debugging nodes.

Sequence: GetDevicePluginOptions, the first ListAndWatch message (its exact wire size against
the kubelet's 4 MiB limit: the probe itself accepts up to 64 MiB so oversize lists are measured,
not just refused), GetPreferredAllocation when offered, and one sample Allocate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from confnode._proto.deviceplugin.v1beta1 import api_pb2
from confnode.deviceplugin.errors import ProbeError
from confnode.deviceplugin.model import HEALTHY, KUBELET_MAX_MESSAGE_BYTES

__all__ = ["ProbeResult", "probe_plugin"]

_PROBE_MAX_RECEIVE = 64 * 1024 * 1024
_SERVICE = "/v1beta1.DevicePlugin/"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    socket: str
    pre_start_required: bool
    get_preferred_allocation_available: bool
    device_count: int
    healthy: int
    numa_nodes: tuple[int, ...]
    devices_with_topology: int
    message_bytes: int
    preferred: tuple[str, ...] | None
    allocate_ids: tuple[str, ...]
    allocate_response: dict[str, Any] | None
    allocate_error: str | None

    @property
    def unhealthy(self) -> int:
        return self.device_count - self.healthy

    @property
    def message_percent(self) -> float:
        return 100.0 * self.message_bytes / KUBELET_MAX_MESSAGE_BYTES

    @property
    def fits_kubelet_limit(self) -> bool:
        return self.message_bytes <= KUBELET_MAX_MESSAGE_BYTES

    def to_dict(self) -> dict[str, Any]:
        return {
            "socket": self.socket,
            "options": {
                "pre_start_required": self.pre_start_required,
                "get_preferred_allocation_available": self.get_preferred_allocation_available,
            },
            "devices": {
                "count": self.device_count,
                "healthy": self.healthy,
                "unhealthy": self.unhealthy,
                "numa_nodes": list(self.numa_nodes),
                "with_topology": self.devices_with_topology,
            },
            "list_and_watch": {
                "message_bytes": self.message_bytes,
                "limit_bytes": KUBELET_MAX_MESSAGE_BYTES,
                "percent_of_limit": round(self.message_percent, 3),
                "fits": self.fits_kubelet_limit,
            },
            "preferred_allocation": None if self.preferred is None else list(self.preferred),
            "allocate": {
                "device_ids": list(self.allocate_ids),
                "response": self.allocate_response,
                "error": self.allocate_error,
            },
        }


def _rpc_error(what: str, error: grpc.aio.AioRpcError) -> ProbeError:
    return ProbeError(f"{what} failed: {error.code().name} {error.details()}")


async def probe_plugin(
    socket_path: Path, *, allocate_count: int = 1, timeout: float = 5.0
) -> ProbeResult:
    """Probe the plugin on ``socket_path``; raise :class:`ProbeError` when it cannot be reached."""
    if not socket_path.exists():
        raise ProbeError(f"no device plugin socket at {socket_path}")
    options = [("grpc.max_receive_message_length", _PROBE_MAX_RECEIVE)]
    async with grpc.aio.insecure_channel(f"unix:{socket_path}", options=options) as channel:
        get_options = channel.unary_unary(
            _SERVICE + "GetDevicePluginOptions",
            request_serializer=api_pb2.Empty.SerializeToString,
            response_deserializer=api_pb2.DevicePluginOptions.FromString,
        )
        try:
            plugin_options = await get_options(api_pb2.Empty(), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise _rpc_error("GetDevicePluginOptions", error) from error

        list_and_watch = channel.unary_stream(
            _SERVICE + "ListAndWatch",
            request_serializer=api_pb2.Empty.SerializeToString,
            response_deserializer=bytes,
        )
        call = list_and_watch(api_pb2.Empty())
        try:
            raw = await asyncio.wait_for(call.read(), timeout)
        except grpc.aio.AioRpcError as error:
            raise _rpc_error("ListAndWatch", error) from error
        except TimeoutError as error:
            raise ProbeError(f"ListAndWatch sent nothing within {timeout} s") from error
        finally:
            call.cancel()
        if raw is grpc.aio.EOF:
            raise ProbeError("ListAndWatch ended without sending a device list")
        listing = api_pb2.ListAndWatchResponse.FromString(raw)
        healthy_ids = [d.ID for d in listing.devices if d.health == HEALTHY]
        numa = sorted({n.ID for d in listing.devices for n in d.topology.nodes})
        with_topology = sum(1 for d in listing.devices if d.HasField("topology"))

        wanted = min(allocate_count, len(healthy_ids)) if healthy_ids else 0
        sample = healthy_ids[:wanted]
        preferred: tuple[str, ...] | None = None
        if plugin_options.get_preferred_allocation_available and wanted:
            get_preferred = channel.unary_unary(
                _SERVICE + "GetPreferredAllocation",
                request_serializer=api_pb2.PreferredAllocationRequest.SerializeToString,
                response_deserializer=api_pb2.PreferredAllocationResponse.FromString,
            )
            request = api_pb2.PreferredAllocationRequest()
            request.container_requests.add(available_deviceIDs=healthy_ids, allocation_size=wanted)
            try:
                answer = await get_preferred(request, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                raise _rpc_error("GetPreferredAllocation", error) from error
            if answer.container_responses:
                preferred = tuple(answer.container_responses[0].deviceIDs)
                sample = list(preferred) or sample

        allocate_response: dict[str, Any] | None = None
        allocate_error: str | None = None
        if sample:
            allocate = channel.unary_unary(
                _SERVICE + "Allocate",
                request_serializer=api_pb2.AllocateRequest.SerializeToString,
                response_deserializer=api_pb2.AllocateResponse.FromString,
            )
            alloc_request = api_pb2.AllocateRequest()
            alloc_request.container_requests.add(devices_ids=sample)
            try:
                response = await allocate(alloc_request, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                allocate_error = f"{error.code().name} {error.details()}"
            else:
                allocate_response = MessageToDict(response, preserving_proto_field_name=True)
        else:
            allocate_error = "no healthy device to allocate"

    return ProbeResult(
        socket=str(socket_path),
        pre_start_required=plugin_options.pre_start_required,
        get_preferred_allocation_available=plugin_options.get_preferred_allocation_available,
        device_count=len(listing.devices),
        healthy=len(healthy_ids),
        numa_nodes=tuple(numa),
        devices_with_topology=with_topology,
        message_bytes=len(raw),
        preferred=preferred,
        allocate_ids=tuple(sample),
        allocate_response=allocate_response,
        allocate_error=allocate_error,
    )
