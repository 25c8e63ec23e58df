"""The rows of ``confnode doctor``: one :class:`Finding` per capability, with a fix."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from confnode.platform._parse import parse_kernel_version
from confnode.platform.access import Access, DeviceAccess, ProcessIdentity, access_fix
from confnode.platform.cpuid import EpcSection
from confnode.platform.model import (
    ENCLAVE_DEVICE_PATHS,
    VEPC_DEVICE_PATH,
    CpuFeatures,
    DriverFlavour,
    Finding,
    Status,
    format_bytes,
)


@dataclass(slots=True)
class CpuidView:
    """What the CPUID source said; ``None`` where it could not tell."""

    source: str | None = None
    error: str | None = None
    sgx: bool | None = None
    flc: bool | None = None
    fsgsbase: bool | None = None
    sgx1: bool | None = None
    sgx2: bool | None = None
    edeccssa: bool | None = None
    kss: bool | None = None
    aex_notify: bool | None = None
    misc_select: int | None = None
    max_enclave_size_64: int | None = None
    sections: tuple[EpcSection, ...] = ()


def _yes(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[flag]


_FIX_SGX_CPU = (
    "run on an SGX-capable Intel Xeon host or VM size (Azure DCsv2/DCsv3/DCdsv3); "
    "for development use `confnode sim` instead"
)
_FIX_SGX_BIOS = (
    "enable SGX in the firmware (SGX 'Enabled', not 'Software Controlled'), set PRMRR/EPC size, "
    "and boot Linux >= 5.11 with CONFIG_X86_SGX=y"
)
_FIX_FLC = (
    "set 'SGX Launch Control' to unlocked in the firmware; DCAP and the in-kernel driver need it"
)


def build_findings(
    *,
    cpu: CpuFeatures,
    view: CpuidView,
    fsgsbase_kernel: bool | None,
    driver: DriverFlavour,
    enclave_devices: tuple[str, ...],
    provision_devices: tuple[str, ...],
    vepc: bool,
    epc_by_numa: Mapping[int, int],
    epc_source: str,
    cpuid_epc_total: int,
    release: str | None,
    kernel_sgx: str | None,
    aesm_path: str | None,
    aesm_found: str | None,
    can_run: bool,
    own_access: tuple[DeviceAccess, ...] = (),
    helper: ProcessIdentity | None = None,
    helper_access: tuple[DeviceAccess, ...] = (),
) -> list[Finding]:
    out: list[Finding] = []
    has_sgx = cpu.sgx is not False

    if view.source is not None:
        out.append(Finding("CPUID", f"read through {view.source}", Status.OK))
    else:
        why = view.error or "no CPUID source"
        out.append(
            Finding(
                "CPUID",
                f"{why}; /proc/cpuinfo only (SGX1/SGX2/KSS/EPC sections unknown)",
                Status.WARN,
                "modprobe cpuid and run as root so /dev/cpu/0/cpuid is readable",
            )
        )

    if cpu.sgx is True:
        out.append(Finding("SGX (CPU)", "supported", Status.OK))
    elif cpu.sgx is False and view.source is None:
        out.append(
            Finding(
                "SGX (CPU)",
                "no 'sgx' flag in /proc/cpuinfo (no SGX, or disabled in the firmware)",
                Status.FAIL,
                f"{_FIX_SGX_CPU}; on SGX hardware: {_FIX_SGX_BIOS}",
            )
        )
    elif cpu.sgx is False:
        out.append(Finding("SGX (CPU)", "not supported by this CPU", Status.FAIL, _FIX_SGX_CPU))
    else:
        out.append(
            Finding(
                "SGX (CPU)",
                "unknown (no CPUID, no /proc/cpuinfo)",
                Status.WARN,
                "mount the host's /proc",
            )
        )

    if has_sgx:
        if cpu.sgx_enabled is True:
            out.append(Finding("SGX enabled (BIOS/kernel)", "cpuinfo flag 'sgx'", Status.OK))
        elif cpu.sgx_enabled is False:
            out.append(
                Finding(
                    "SGX enabled (BIOS/kernel)",
                    "cpuinfo has no 'sgx' flag",
                    Status.FAIL,
                    _FIX_SGX_BIOS,
                )
            )
        else:
            out.append(
                Finding("SGX enabled (BIOS/kernel)", "unknown", Status.WARN, "mount host /proc")
            )

        out.append(_feature("SGX1", cpu.sgx1, Status.FAIL, _FIX_SGX_BIOS))
        out.append(
            _feature(
                "SGX2 (EDMM)",
                cpu.sgx2,
                Status.WARN,
                "needs an Ice Lake or newer Xeon; without it enclaves cannot grow at run time",
            )
        )
        if cpu.flc is True:
            out.append(Finding("Flexible launch control", "available (sgx_lc)", Status.OK))
        elif cpu.flc is False:
            legacy = driver is DriverFlavour.LEGACY_ISGX
            out.append(
                Finding(
                    "Flexible launch control",
                    "not available"
                    + (
                        " (legacy isgx driver launches through AESM's launch enclave)"
                        if legacy
                        else ""
                    ),
                    Status.WARN if legacy else Status.FAIL,
                    _FIX_FLC if not legacy else _FIX_FLC + "; DCAP ECDSA attestation requires FLC",
                )
            )
        else:
            out.append(
                Finding("Flexible launch control", "unknown", Status.WARN, "mount host /proc")
            )
        out.append(
            _feature(
                "KSS",
                cpu.kss,
                Status.WARN,
                "key separation and sharing is absent; only KSS-enabled enclaves need it",
            )
        )
        aex = _yes(cpu.aex_notify)
        if cpu.edeccssa is not None:
            aex += f" (EDECCSSA {_yes(cpu.edeccssa)})"
        out.append(
            Finding(
                "AEX-Notify",
                aex,
                Status.OK if cpu.aex_notify else Status.WARN,
                None
                if cpu.aex_notify
                else "needs a CPU/microcode with EDECCSSA and Linux >= 6.2; hardens enclaves "
                "against single-stepping",
            )
        )

        epc_total = sum(epc_by_numa.values())
        if epc_total:
            nodes = len(epc_by_numa)
            where = f"over {nodes} NUMA nodes" if nodes > 1 else "on 1 NUMA node"
            detail = f"{format_bytes(epc_total)} {where} (from {epc_source})"
            if epc_source == "sysfs" and cpuid_epc_total and cpuid_epc_total != epc_total:
                detail += f"; CPUID sections sum to {format_bytes(cpuid_epc_total)}"
            out.append(Finding("EPC", detail, Status.OK))
        elif epc_source == "none":
            out.append(
                Finding(
                    "EPC",
                    "unknown: no sgx_total_bytes in sysfs and no CPUID sections",
                    Status.WARN,
                    "read CPUID (modprobe cpuid) or use Linux >= 5.17 with CONFIG_NUMA",
                )
            )
        else:
            out.append(
                Finding("EPC", "0 bytes", Status.FAIL, "reserve EPC (PRMRR size) in the firmware")
            )

    if enclave_devices:
        out.append(
            _with_access(
                Finding("Enclave device", f"{', '.join(enclave_devices)} ({driver})", Status.OK),
                own_access,
                enclave_devices,
                "this process cannot create enclaves",
            )
        )
    else:
        fix: str | None
        if not has_sgx:
            fix = None  # nothing to install: the CPU row already says what is missing
        elif cpu.flc is False:
            fix = _FIX_FLC + ", or install the legacy isgx driver (no DCAP attestation)"
        else:
            fix = "boot Linux >= 5.11 with CONFIG_X86_SGX=y (creates /dev/sgx_enclave)"
        out.append(
            Finding(
                "Enclave device", "none of " + ", ".join(ENCLAVE_DEVICE_PATHS), Status.FAIL, fix
            )
        )

    if provision_devices:
        out.append(
            _with_access(
                Finding("Provisioning device", ", ".join(provision_devices), Status.OK),
                own_access,
                provision_devices,
                "in-process DCAP quoting (the dcap quote helper, aesmd) fails as this process",
            )
        )
    elif enclave_devices:
        out.append(
            Finding(
                "Provisioning device",
                "absent",
                Status.WARN,
                "in-process DCAP quoting (PCE) needs /dev/sgx_provision; "
                "quoting through AESM or the quote helper is unaffected",
            )
        )
    if vepc:
        out.append(
            Finding("Virtual EPC", f"{VEPC_DEVICE_PATH} (for VMMs; never given to pods)", Status.OK)
        )

    version = parse_kernel_version(release) if release else None
    kernel = release or "unknown"
    if kernel_sgx is not None:
        kernel += f", CONFIG_X86_SGX={kernel_sgx}"
    if has_sgx and version is not None and version < (5, 11) and driver is DriverFlavour.NONE:
        out.append(
            Finding("Kernel", kernel, Status.WARN, "Linux >= 5.11 has the in-kernel SGX driver")
        )
    elif has_sgx and kernel_sgx == "n" and driver is DriverFlavour.NONE:
        out.append(
            Finding("Kernel", kernel, Status.WARN, "rebuild or pick a kernel with CONFIG_X86_SGX=y")
        )
    else:
        out.append(Finding("Kernel", kernel, Status.OK))

    out.append(
        Finding(
            "FSGSBASE (CPU)",
            _yes(cpu.fsgsbase_cpu),
            Status.OK if cpu.fsgsbase_cpu is not False else Status.WARN,
            None if cpu.fsgsbase_cpu is not False else "needs an Ivy Bridge or newer CPU",
        )
    )
    if fsgsbase_kernel is True:
        out.append(Finding("FSGSBASE (kernel)", "enabled (AT_HWCAP2 bit 1)", Status.OK))
    else:
        found = "not enabled for userspace" if fsgsbase_kernel is False else "unknown (no auxv)"
        if fsgsbase_kernel is False and cpu.fsgsbase_cpu:
            found += " although the CPU supports it"
        out.append(
            Finding(
                "FSGSBASE (kernel)",
                found,
                Status.WARN,
                "boot Linux >= 5.9 (enables FSGSBASE for userspace); Gramine refuses to start "
                "without it",
            )
        )

    if aesm_path is None:
        pass
    elif aesm_found is not None:
        is_socket = _is_socket(aesm_found)
        out.append(
            Finding(
                "AESM / quote helper",
                aesm_found + ("" if is_socket else " (exists but is not a socket)"),
                Status.OK if is_socket else Status.WARN,
                None if is_socket else "start `confnode quote-helper` or aesmd on this path",
            )
        )
    else:
        out.append(
            Finding(
                "AESM / quote helper",
                f"no socket at {aesm_path}",
                Status.WARN,
                "start `confnode quote-helper` (or aesmd) so enclaves can get quotes",
            )
        )
    if helper is not None and helper_access:
        out.append(_helper_finding(helper, helper_access))

    out.append(
        Finding(
            "Can run enclaves",
            "yes" if can_run else "no",
            Status.OK if can_run else Status.FAIL,
            None if can_run else "fix the failed rows above, or use `confnode sim` for simulation",
        )
    )
    return out


def _with_access(
    finding: Finding, accesses: tuple[DeviceAccess, ...], paths: tuple[str, ...], effect: str
) -> Finding:
    """``finding`` as a warning when this process cannot open one of ``paths`` read-write."""
    blocked = [a for a in accesses if a.device.path in paths and a.access is not Access.ALLOWED]
    if not blocked:
        return finding
    why = "; ".join(a.describe("this process") for a in blocked)
    return Finding(
        finding.capability,
        f"{finding.found}; {why}: {effect}",
        Status.WARN,
        access_fix(blocked[0].device),
    )


def _helper_finding(helper: ProcessIdentity, accesses: tuple[DeviceAccess, ...]) -> Finding:
    """Can the process serving the AESM socket open the SGX device nodes DCAP quoting needs?"""
    blocked = [a for a in accesses if a.access is not Access.ALLOWED]
    if not blocked:
        paths = ", ".join(a.device.path for a in accesses)
        return Finding(
            "Quote helper devices",
            f"the quote helper ({helper.describe()}) can open {paths} read-write",
            Status.OK,
        )
    return Finding(
        "Quote helper devices",
        "; ".join(a.describe("the quote helper") for a in blocked)
        + ": its DCAP quotes (dcap backend, aesmd) fail, typically with AESM_UNEXPECTED_ERROR",
        Status.WARN,
        access_fix(blocked[0].device),
    )


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _feature(name: str, value: bool | None, missing: Status, fix: str) -> Finding:
    if value is True:
        return Finding(name, "supported", Status.OK)
    if value is False:
        return Finding(name, "not supported", missing, fix)
    return Finding(
        name,
        "unknown (needs CPUID leaf 0x12)",
        Status.WARN,
        "modprobe cpuid and run as root so /dev/cpu/0/cpuid is readable",
    )
