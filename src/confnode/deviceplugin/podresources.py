"""EPC allocated per container, from the kubelet PodResources API v1 ``List``.

The device IDs the kubelet reports are the IDs this plugin advertised, so per-unit EPC devices
translate straight into bytes per pod/container (the metric an EPC-based HPA needs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from confnode._proto.podresources.v1 import api_pb2
from confnode.errors import InfrastructureError

__all__ = [
    "DEFAULT_POD_RESOURCES_SOCKET",
    "ContainerAssignment",
    "EpcAllocation",
    "GrpcPodResourcesClient",
    "PodResourcesSource",
    "assignments_from_response",
    "epc_allocations",
]

DEFAULT_POD_RESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
#: The kubelet e2e convention; gRPC's own 4 MiB default is too small for busy nodes.
_MAX_RECEIVE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ContainerAssignment:
    namespace: str
    pod: str
    container: str
    resource: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EpcAllocation:
    namespace: str
    pod: str
    container: str
    resource: str
    bytes: int


class PodResourcesSource(Protocol):
    """Lists which devices each container holds."""

    async def list_assignments(self) -> Sequence[ContainerAssignment]: ...


def assignments_from_response(
    response: api_pb2.ListPodResourcesResponse,
) -> list[ContainerAssignment]:
    return [
        ContainerAssignment(
            pod.namespace,
            pod.name,
            container.name,
            devices.resource_name,
            tuple(devices.device_ids),
        )
        for pod in response.pod_resources
        for container in pod.containers
        for devices in container.devices
    ]


def epc_allocations(
    assignments: Sequence[ContainerAssignment], unit_bytes: Mapping[str, int]
) -> list[EpcAllocation]:
    """Bytes per container for the resources in ``unit_bytes`` (resource → bytes per device)."""
    totals: dict[tuple[str, str, str, str], int] = {}
    for item in assignments:
        unit = unit_bytes.get(item.resource)
        if unit is None:
            continue
        key = (item.namespace, item.pod, item.container, item.resource)
        totals[key] = totals.get(key, 0) + len(set(item.device_ids)) * unit
    return [EpcAllocation(*key, bytes=value) for key, value in sorted(totals.items())]


class GrpcPodResourcesClient:
    """Plain gRPC over the kubelet's pod-resources unix socket (no TLS, file permissions only)."""

    def __init__(self, socket_path: Path = DEFAULT_POD_RESOURCES_SOCKET, *, timeout: float = 10.0):
        self.socket_path = socket_path
        self._timeout = timeout

    async def list_assignments(self) -> list[ContainerAssignment]:
        options = [("grpc.max_receive_message_length", _MAX_RECEIVE)]
        async with grpc.aio.insecure_channel(f"unix:{self.socket_path}", options=options) as ch:
            call = ch.unary_unary(
                "/v1.PodResourcesLister/List",
                request_serializer=api_pb2.ListPodResourcesRequest.SerializeToString,
                response_deserializer=api_pb2.ListPodResourcesResponse.FromString,
            )
            try:
                response = await call(api_pb2.ListPodResourcesRequest(), timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                raise InfrastructureError(
                    f"kubelet PodResources List on {self.socket_path} failed: "
                    f"{error.code().name} {error.details()}"
                ) from error
        return assignments_from_response(response)
