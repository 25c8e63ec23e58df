"""From :mod:`confnode.platform` detection to the plugin's :class:`SgxNode`, plus driver health."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from confnode.deviceplugin.errors import DevicePluginError
from confnode.deviceplugin.model import MIB, SgxNode
from confnode.deviceplugin.nodestatus import SIMULATED_LABEL
from confnode.platform import HostRoots, SgxPlatform, cpuid_source_for, detect, node_labels

__all__ = [
    "AESM_LABEL",
    "AlwaysPresent",
    "DetectedNode",
    "DevicePathsProbe",
    "DriverProbe",
    "detect_node",
    "node_from_platform",
    "simulated_node_labels",
]


class DriverProbe(Protocol):
    """Answers "are the SGX device nodes still there?"; polled to drive device health."""

    def present(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class DevicePathsProbe:
    """Healthy while any of the host's enclave device nodes exists (seen through ``roots``)."""

    roots: HostRoots
    paths: tuple[str, ...]

    def present(self) -> bool:
        return any(os.path.exists(self.roots.dev_path(path)) for path in self.paths)


@dataclass(frozen=True, slots=True)
class AlwaysPresent:
    """Simulation has no driver that could disappear."""

    def present(self) -> bool:
        return True


def node_from_platform(platform: SgxPlatform) -> SgxNode:
    """The plugin's view of a detected host; refuses hosts that cannot run enclaves."""
    if not platform.enclave_devices:
        raise DevicePluginError(
            f"no SGX enclave device node found (driver: {platform.driver})",
            hint="run `confnode doctor` on the node, or use --sim-epc for a simulated node",
        )
    if platform.epc_total <= 0:
        raise DevicePluginError(
            "SGX device nodes exist but no EPC was found in sysfs or CPUID leaf 0x12",
            hint="run `confnode doctor`; SGX may be disabled in the BIOS/hypervisor",
        )
    return SgxNode.from_numa_map(
        platform.epc_by_numa or {0: platform.epc_total},
        platform.enclave_devices,
        platform.provision_devices,
    )


class DetectedNode(NamedTuple):
    node: SgxNode
    driver: DriverProbe
    #: The ``confnode.io/`` node labels of the detected host (``docs/node-labels.md``).
    labels: dict[str, str]


AESM_LABEL = "confnode.io/sgx.aesm"


def detect_node(
    roots: HostRoots, cpuid_mode: str = "auto", aesm_socket: Path | None = None
) -> DetectedNode:
    """Detect the live (or mounted) host and pair it with a probe of its device nodes.

    ``cpuid_mode`` as ``confnode doctor --cpuid``: ``auto``, ``native``, ``driver`` or ``none``.
    ``aesm_socket`` is the quote-helper socket as this process sees it; without it the
    ``confnode.io/sgx.aesm`` label is left out (unknown), never guessed ``false``.
    """
    native = {"auto": None, "native": True, "driver": False}.get(cpuid_mode)
    cpuid = None if cpuid_mode == "none" else cpuid_source_for(roots, native=native)
    platform = detect(roots, cpuid, aesm_socket=aesm_socket)
    node = node_from_platform(platform)
    labels = node_labels(platform)
    if aesm_socket is None:
        labels.pop(AESM_LABEL, None)
    return DetectedNode(node, DevicePathsProbe(roots, node.enclave_devices), labels)


def simulated_node_labels(node: SgxNode) -> dict[str, str]:
    """Labels for a simulated node: SGX pods may land on it, and it says it is simulated."""
    return {
        "confnode.io/sgx": "true",
        SIMULATED_LABEL: "true",
        "confnode.io/sgx.epc-mib": str(node.epc_total // MIB),
        "confnode.io/sgx.epc-numa-nodes": str(len(node.epc_by_numa)),
    }
