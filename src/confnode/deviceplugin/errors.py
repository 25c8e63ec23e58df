"""Errors of the device plugin, under the three kinds of :mod:`confnode.errors`."""

from __future__ import annotations

from confnode.errors import InfrastructureError, InvalidInput

__all__ = [
    "DevicePluginError",
    "NodeStatusPatchError",
    "PluginSocketInUse",
    "ProbeError",
    "UnknownDeviceError",
]


class DevicePluginError(InfrastructureError):
    """The plugin cannot serve: no SGX device, no kubelet, a socket that cannot be bound."""


class PluginSocketInUse(DevicePluginError):
    """Another live process already serves the plugin socket."""

    hint = (
        "stop the other device plugin instance (one per node) or pick another --device-plugin-dir"
    )


class NodeStatusPatchError(InfrastructureError):
    """The API server refused or failed the node-status capacity patch."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ProbeError(InfrastructureError):
    """``plugin probe`` could not talk to the device plugin."""


class UnknownDeviceError(InvalidInput):
    """The kubelet named a device ID the plugin never advertised."""
