"""The data :func:`confnode.platform.detect` returns: host roots, CPU features, findings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from confnode.platform.cpuid import EpcSection

__all__ = [
    "DEFAULT_AESM_SOCKET",
    "ENCLAVE_DEVICE_PATHS",
    "GIB",
    "MIB",
    "PROVISION_DEVICE_PATHS",
    "VEPC_DEVICE_PATH",
    "CpuFeatures",
    "DriverFlavour",
    "Finding",
    "HostRoots",
    "SgxPlatform",
    "Status",
    "format_bytes",
]

DEFAULT_AESM_SOCKET = "/var/run/aesmd/aesm.socket"

#: Enclave device nodes in the order the SGX SDK's urts probes them (``edmm_utility.cpp``).
ENCLAVE_DEVICE_PATHS = ("/dev/sgx/enclave", "/dev/sgx_enclave", "/dev/isgx", "/dev/sgx")
#: Provisioning device nodes in ``enclave_common``'s probe order.
PROVISION_DEVICE_PATHS = ("/dev/sgx/provision", "/dev/sgx_provision", "/dev/sgx_prv")
#: KVM's virtual EPC device: for VMMs only, never handed to pods.
VEPC_DEVICE_PATH = "/dev/sgx_vepc"

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class HostRoots:
    """Where the host's ``/dev``, ``/sys``, ``/proc`` and ``/boot`` are mounted.

    A containerised agent typically sees them under ``/host/...``. Device paths reported by
    :func:`detect` are always the host's own (``/dev/sgx_enclave``), because those are what the
    kubelet must be told; :meth:`dev_path` maps such a path back to where this process sees it.
    """

    dev: str | os.PathLike[str] = "/dev"
    sys: str | os.PathLike[str] = "/sys"
    proc: str | os.PathLike[str] = "/proc"
    boot: str | os.PathLike[str] = "/boot"

    @property
    def is_live(self) -> bool:
        """True when every root is the running system's own."""
        return (Path(self.dev), Path(self.sys), Path(self.proc), Path(self.boot)) == (
            Path("/dev"),
            Path("/sys"),
            Path("/proc"),
            Path("/boot"),
        )

    def dev_path(self, host_path: str) -> Path:
        """Where this process sees the host device path ``host_path`` (``/dev/...``)."""
        relative = PurePosixPath(host_path).relative_to("/dev")
        return Path(self.dev, relative)

    def sys_path(self, *parts: str) -> Path:
        return Path(self.sys, *parts)

    def proc_path(self, *parts: str) -> Path:
        return Path(self.proc, *parts)


class DriverFlavour(StrEnum):
    """Which SGX driver generation created the device nodes."""

    IN_KERNEL = "in-kernel"  # Linux 5.11+ /dev/sgx_enclave, /dev/sgx_provision
    DCAP = "dcap"  # out-of-tree DCAP driver: /dev/sgx/enclave (or /dev/sgx on <= v1.22)
    LEGACY_ISGX = "legacy-isgx"  # out-of-tree isgx: /dev/isgx, works without FLC
    NONE = "none"


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One row of ``confnode doctor``: a capability, what was found, and how to fix it."""

    capability: str
    found: str
    status: Status
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "capability": self.capability,
            "found": self.found,
            "status": str(self.status),
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    """CPU-side SGX features. ``None`` means the sources at hand cannot tell.

    ``sgx`` and ``fsgsbase_cpu`` are what the CPU reports; ``sgx_enabled`` is the cpuinfo ``sgx``
    flag, which the kernel clears when the BIOS disabled SGX; ``flc`` prefers cpuinfo ``sgx_lc``
    (cleared when launch control is locked) over CPUID.
    """

    sgx: bool | None
    sgx_enabled: bool | None
    sgx1: bool | None
    sgx2: bool | None
    flc: bool | None
    kss: bool | None
    aex_notify: bool | None
    edeccssa: bool | None
    fsgsbase_cpu: bool | None
    cpuid_source: str | None = None
    misc_select: int | None = None
    max_enclave_size_64: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sgx": self.sgx,
            "sgx_enabled": self.sgx_enabled,
            "sgx1": self.sgx1,
            "sgx2": self.sgx2,
            "flc": self.flc,
            "kss": self.kss,
            "aex_notify": self.aex_notify,
            "edeccssa": self.edeccssa,
            "fsgsbase_cpu": self.fsgsbase_cpu,
            "cpuid_source": self.cpuid_source,
            "misc_select": self.misc_select,
            "max_enclave_size_64": self.max_enclave_size_64,
        }


@dataclass(frozen=True, slots=True)
class SgxPlatform:
    """Everything :func:`detect` learned about one node."""

    cpu: CpuFeatures
    fsgsbase_kernel: bool | None
    driver: DriverFlavour
    enclave_devices: tuple[str, ...]  # host paths that exist, urts probe order
    provision_devices: tuple[str, ...]  # host paths that exist, enclave_common probe order
    vepc_device: bool
    epc_sections: tuple[EpcSection, ...]
    epc_by_numa: Mapping[int, int]  # bytes per NUMA node, only nodes with EPC
    epc_source: str  # "sysfs", "cpuid" or "none"
    aesm_socket: str | None  # the socket path when it exists
    kernel_release: str | None
    kernel_sgx_config: str | None  # value of CONFIG_X86_SGX ("y", "n") when the config is readable
    can_run_enclaves: bool
    findings: tuple[Finding, ...] = field(default=())

    @property
    def epc_total(self) -> int:
        return sum(self.epc_by_numa.values())

    @property
    def numa_nodes(self) -> tuple[int, ...]:
        return tuple(sorted(self.epc_by_numa))

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status is not Status.OK)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view; sizes in bytes, NUMA node numbers as string keys."""
        return {
            "can_run_enclaves": self.can_run_enclaves,
            "capabilities": [f.to_dict() for f in self.findings],
            "cpu": self.cpu.to_dict(),
            "fsgsbase_kernel": self.fsgsbase_kernel,
            "driver": str(self.driver),
            "enclave_devices": list(self.enclave_devices),
            "provision_devices": list(self.provision_devices),
            "vepc_device": self.vepc_device,
            "epc": {
                "total_bytes": self.epc_total,
                "source": self.epc_source,
                "by_numa": {str(node): size for node, size in sorted(self.epc_by_numa.items())},
                "sections": [
                    {
                        "base": f"{s.base:#x}",
                        "size": s.size,
                        "property": s.property,
                        "numa_node": s.numa_node,
                    }
                    for s in self.epc_sections
                ],
            },
            "aesm_socket": self.aesm_socket,
            "kernel_release": self.kernel_release,
            "kernel_sgx_config": self.kernel_sgx_config,
        }


def format_bytes(size: int) -> str:
    """Human EPC sizes: GiB when whole, else MiB with one decimal where needed."""
    if size >= GIB and size % GIB == 0:
        return f"{size // GIB} GiB"
    mib = size / MIB
    return f"{mib:.0f} MiB" if size % MIB == 0 else f"{mib:.1f} MiB"
