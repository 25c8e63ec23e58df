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
    parse_sysfs_bytes,
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
    "LABEL_KEYS",
    "NFD_FEATURES_FILE",
    "CpuFeatures",
    "CpuidSource",
    "CpuidUnavailable",
    "DevCpuid",
    "DriverFlavour",
    "EpcSection",
    "FakeCpuid",
    "Finding",
    "HostDataError",
    "HostRoots",
    "NativeCpuid",
    "Registers",
    "SgxPlatform",
    "Status",
    "cpuid_source_for",
    "detect",
    "format_bytes",
    "nfd_features",
    "node_labels",
    "parse_auxv",
    "parse_cpuinfo_flags",
    "parse_kernel_config",
    "parse_sysfs_bytes",
    "validate_label",
    "write_nfd_features",
]
