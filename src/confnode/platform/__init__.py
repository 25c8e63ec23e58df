"""SGX platform detection: CPU features, driver, EPC per NUMA node, node labels.

Everything is read through :class:`HostRoots` and a :class:`CpuidSource`, so the same code runs on
a node, in a container with the host mounted under ``/host`` and against fake trees in tests.
"""

from __future__ import annotations

from confnode.platform._errors import CpuidUnavailable, HostDataError
from confnode.platform._parse import (
    parse_auxv,
    parse_cpuinfo_flags,
    parse_kernel_config,
    parse_status_ids,
    parse_sysfs_bytes,
)
from confnode.platform.access import (
    Access,
    DeviceAccess,
    DeviceNode,
    ProcessIdentity,
    access_fix,
    appraise_access,
)
from confnode.platform.cpuid import (
    CpuidSource,
    DevCpuid,
    EpcSection,
    FakeCpuid,
    NativeCpuid,
    Registers,
)
from confnode.platform.detect import cpuid_source_for, detect
from confnode.platform.hostids import device_access, device_node, process_identity, socket_peer
from confnode.platform.labels import (
    LABEL_KEYS,
    NFD_FEATURES_FILE,
    nfd_features,
    node_labels,
    validate_label,
    write_nfd_features,
)
from confnode.platform.model import (
    DEFAULT_AESM_SOCKET,
    ENCLAVE_DEVICE_PATHS,
    PROVISION_DEVICE_PATHS,
    CpuFeatures,
    DriverFlavour,
    Finding,
    HostRoots,
    SgxPlatform,
    Status,
    format_bytes,
)

__all__ = [
    "DEFAULT_AESM_SOCKET",
    "ENCLAVE_DEVICE_PATHS",
    "LABEL_KEYS",
    "NFD_FEATURES_FILE",
    "PROVISION_DEVICE_PATHS",
    "Access",
    "CpuFeatures",
    "CpuidSource",
    "CpuidUnavailable",
    "DevCpuid",
    "DeviceAccess",
    "DeviceNode",
    "DriverFlavour",
    "EpcSection",
    "FakeCpuid",
    "Finding",
    "HostDataError",
    "HostRoots",
    "NativeCpuid",
    "ProcessIdentity",
    "Registers",
    "SgxPlatform",
    "Status",
    "access_fix",
    "appraise_access",
    "cpuid_source_for",
    "detect",
    "device_access",
    "device_node",
    "format_bytes",
    "nfd_features",
    "node_labels",
    "parse_auxv",
    "parse_cpuinfo_flags",
    "parse_kernel_config",
    "parse_status_ids",
    "parse_sysfs_bytes",
    "process_identity",
    "socket_peer",
    "validate_label",
    "write_nfd_features",
]
