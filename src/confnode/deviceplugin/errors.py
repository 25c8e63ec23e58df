"""Errors of the device plugin, under the three kinds of :mod:`confnode.errors`."""

from __future__ import annotations

from confnode.errors import InfrastructureError, InvalidInput

__all__ = [
    "DevicePluginError",
    "NodeStatusPatchError",
    "PluginSocketInUse",
    "ProbeError",
    "ResourceServedElsewhere",
    "UnknownDeviceError",
]


class DevicePluginError(InfrastructureError):
    """The plugin cannot serve: no SGX device, no kubelet, a socket that cannot be bound."""


class PluginSocketInUse(DevicePluginError):
    """Another live process already serves the plugin socket."""

    hint = (
        "stop the other device plugin instance (one per node) or pick another --device-plugin-dir"
    )


class ResourceServedElsewhere(DevicePluginError):
    """Another device plugin on this node serves a resource name confnode would register."""

    hint = (
        "run one SGX device plugin per node: remove the other one (Intel's intel-sgx-plugin "
        "DaemonSet, AKS's confcom add-on) from confnode's nodes, or give confnode other names "
        "(--resource-name, --enclave-resource, --provision-resource)"
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
