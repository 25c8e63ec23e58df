"""One device-plugin endpoint: a ``v1beta1.DevicePlugin`` gRPC server on a unix socket.

The kubelet talks to each resource on its own socket, so the agent runs one
:class:`PluginEndpoint` per resource. An endpoint serves first and registers afterwards (the
kubelet dials back during ``Register``), and can be torn down and served again when the kubelet
restarts and wipes the socket directory.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from confnode._proto.deviceplugin.v1beta1 import api_pb2
from confnode.deviceplugin.errors import (
    DevicePluginError,
    PluginSocketInUse,
    UnknownDeviceError,
)
from confnode.deviceplugin.model import API_VERSION, DeviceResource, socket_name

__all__ = ["PluginEndpoint", "register_with_kubelet", "socket_is_live"]


class _DevicePluginServicer:
    """Async servicer; all decisions are delegated to the pure :class:`DeviceResource`."""

    def __init__(self, endpoint: PluginEndpoint) -> None:
        self._endpoint = endpoint

    async def GetDevicePluginOptions(  # noqa: N802 (gRPC method name)
        self, request: api_pb2.Empty, context: Any
    ) -> api_pb2.DevicePluginOptions:
        return self._endpoint.resource.options()

    async def ListAndWatch(  # noqa: N802 (gRPC method name)
        self, request: api_pb2.Empty, context: Any
    ) -> AsyncIterator[bytes]:
        sent = -1
        while True:
            version, response = await self._endpoint.wait_for_change(sent)
            sent = version
            yield response

    async def GetPreferredAllocation(  # noqa: N802 (gRPC method name)
        self, request: api_pb2.PreferredAllocationRequest, context: Any
    ) -> api_pb2.PreferredAllocationResponse:
        resource = self._endpoint.resource
        response = api_pb2.PreferredAllocationResponse()
        try:
            for container in request.container_requests:
                chosen = resource.preferred(
                    container.available_deviceIDs,
                    container.must_include_deviceIDs,
                    container.allocation_size,
                )
                response.container_responses.add(deviceIDs=chosen)
        except UnknownDeviceError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        return response

    async def Allocate(  # noqa: N802 (gRPC method name)
        self, request: api_pb2.AllocateRequest, context: Any
    ) -> api_pb2.AllocateResponse:
        endpoint = self._endpoint
        if not endpoint.healthy:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{endpoint.resource.name}: devices are Unhealthy ({endpoint.unhealthy_reason})",
            )
        response = api_pb2.AllocateResponse()
        try:
            for container in request.container_requests:
                response.container_responses.append(
                    endpoint.resource.allocate(container.devices_ids)
                )
        except UnknownDeviceError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        return response

    async def PreStartContainer(  # noqa: N802 (gRPC method name)
        self, request: api_pb2.PreStartContainerRequest, context: Any
    ) -> api_pb2.PreStartContainerResponse:
        return api_pb2.PreStartContainerResponse()


class PluginEndpoint:
    """Serves one resource on ``<plugin_dir>/<socket_name>`` and tracks its device health."""

    def __init__(self, resource: DeviceResource, plugin_dir: Path) -> None:
        self.resource = resource
        self.socket_path = plugin_dir / socket_name(resource.name)
        self._server: Any = None
        self._healthy = True
        self.unhealthy_reason = ""
        self._version = 0
        self._cache: dict[bool, bytes] = {}
        self._changed = asyncio.Condition()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def serving(self) -> bool:
        return self._server is not None

    def list_bytes(self) -> bytes:
        """The current full list, serialized; only the current health state is kept."""
        cached = self._cache.get(self._healthy)
        if cached is None:
            cached = self.resource.list_bytes(healthy=self._healthy)
            self._cache = {self._healthy: cached}
        return cached

    async def wait_for_change(self, seen: int) -> tuple[int, bytes]:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version != seen)
            return self._version, self.list_bytes()

    async def set_healthy(self, healthy: bool, reason: str = "") -> bool:
        """Update health; every open ListAndWatch stream gets a new full list. True if changed."""
        self.unhealthy_reason = reason
        if healthy == self._healthy:
            return False
        async with self._changed:
            self._healthy = healthy
            self._version += 1
            self._changed.notify_all()
        return True

    def socket_present(self) -> bool:
        return self.socket_path.exists()

    async def serve(self) -> None:
        """Bind the socket and start serving; a stale socket file is removed first."""
        await self.stop()
        _remove_stale_socket(self.socket_path)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_handlers(_DevicePluginServicer(self)),))
        try:
            server.add_insecure_port(f"unix:{self.socket_path}")
            await server.start()
        except (RuntimeError, OSError) as error:
            raise DevicePluginError(f"cannot serve on {self.socket_path}: {error}") from error
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(None)

    def register_request(self) -> api_pb2.RegisterRequest:
        return api_pb2.RegisterRequest(
            version=API_VERSION,
            endpoint=self.socket_path.name,
            resource_name=self.resource.name,
            options=self.resource.options(),
        )


def _handlers(servicer: _DevicePluginServicer) -> Any:
    """The ``v1beta1.DevicePlugin`` method table (what the generated ``add_…_to_server`` builds),
    except that ListAndWatch sends bytes the plugin serialized once per health change."""
    empty = api_pb2.Empty.FromString
    methods = {
        "GetDevicePluginOptions": grpc.unary_unary_rpc_method_handler(
            servicer.GetDevicePluginOptions,
            request_deserializer=empty,
            response_serializer=api_pb2.DevicePluginOptions.SerializeToString,
        ),
        "ListAndWatch": grpc.unary_stream_rpc_method_handler(
            servicer.ListAndWatch, request_deserializer=empty, response_serializer=bytes
        ),
        "GetPreferredAllocation": grpc.unary_unary_rpc_method_handler(
            servicer.GetPreferredAllocation,
            request_deserializer=api_pb2.PreferredAllocationRequest.FromString,
            response_serializer=api_pb2.PreferredAllocationResponse.SerializeToString,
        ),
        "Allocate": grpc.unary_unary_rpc_method_handler(
            servicer.Allocate,
            request_deserializer=api_pb2.AllocateRequest.FromString,
            response_serializer=api_pb2.AllocateResponse.SerializeToString,
        ),
        "PreStartContainer": grpc.unary_unary_rpc_method_handler(
            servicer.PreStartContainer,
            request_deserializer=api_pb2.PreStartContainerRequest.FromString,
            response_serializer=api_pb2.PreStartContainerResponse.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler("v1beta1.DevicePlugin", methods)


def socket_is_live(path: Path, timeout: float = 0.2) -> bool:
    """True when a process accepts connections on the unix socket ``path`` (nothing is sent)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(timeout)
        probe.connect(os.fspath(path))
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


def _remove_stale_socket(path: Path) -> None:
    """Remove a leftover socket, but refuse to steal one a live process still answers on."""
    if not path.exists() and not path.is_symlink():
        return
    if socket_is_live(path):
        raise PluginSocketInUse(f"{path} is already served by a live process")
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:  # a directory or a read-only mount: say so instead of a traceback
        raise DevicePluginError(f"cannot remove the stale socket {path}: {error}") from error


async def register_with_kubelet(
    kubelet_socket: Path, request: api_pb2.RegisterRequest, *, timeout: float
) -> None:
    """Call ``v1beta1.Registration/Register`` once; raise :class:`DevicePluginError` on failure."""
    async with grpc.aio.insecure_channel(f"unix:{kubelet_socket}") as channel:
        register = channel.unary_unary(
            "/v1beta1.Registration/Register",
            request_serializer=api_pb2.RegisterRequest.SerializeToString,
            response_deserializer=api_pb2.Empty.FromString,
        )
        try:
            await register(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise DevicePluginError(
                f"kubelet refused registration of {request.resource_name}: "
                f"{error.code().name} {error.details()}"
            ) from error
