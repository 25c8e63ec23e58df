"""SGX node detection over injectable host roots and an injectable CPUID source.

:func:`detect` reads only below the :class:`HostRoots` it is given and asks only the
:class:`~confnode.platform.cpuid.CpuidSource` it is given, so a test builds a fake ``/dev``,
``/sys`` and ``/proc`` in a temporary directory and gets the same answer a real node would.
Unreadable or malformed host data never raises: it becomes a ``warn`` :class:`Finding`.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

from confnode.errors import ConfnodeError
from confnode.platform._errors import CpuidUnavailable
from confnode.platform._findings import CpuidView, build_findings
from confnode.platform._parse import (
    AT_HWCAP2,
    HWCAP2_FSGSBASE,
    parse_auxv,
    parse_cpuinfo_flags,
    parse_kernel_config,
    parse_sysfs_bytes,
)
from confnode.platform.access import ProcessIdentity
from confnode.platform.cpuid import (
    CpuidSource,
    DevCpuid,
    NativeCpuid,
    decode_leaf7,
    decode_sgx_attributes,
    decode_sgx_capabilities,
    read_epc_sections,
)
from confnode.platform.hostids import device_access, process_identity
from confnode.platform.model import (
    DEFAULT_AESM_SOCKET,
    ENCLAVE_DEVICE_PATHS,
    PROVISION_DEVICE_PATHS,
    VEPC_DEVICE_PATH,
    CpuFeatures,
    DriverFlavour,
    Finding,
    HostRoots,
    SgxPlatform,
    Status,
)

__all__ = ["cpuid_source_for", "detect"]


def cpuid_source_for(roots: HostRoots, native: bool | None = None) -> CpuidSource | None:
    """The best CPUID source for ``roots``, or ``None`` when only cpuinfo is left.

    ``native`` (default: only when ``roots`` are the live host's) tries the instruction itself
    first, which needs no privileges and is right whenever this process runs on the node, also in
    a container with the host mounted under ``/host``. Otherwise only ``<dev>/cpu/0/cpuid`` is
    consulted, so a fake tree carries its own CPUID answers and never sees the test machine.
    """
    if native if native is not None else roots.is_live:
        try:
            return NativeCpuid()
        except CpuidUnavailable:
            pass
    path = Path(roots.dev, "cpu", "0", "cpuid")
    if path.exists() and os.access(path, os.R_OK):
        return DevCpuid(path)
    return None


def _read_cpuid(source: CpuidSource | None) -> CpuidView:
    view = CpuidView()
    if source is None:
        return view
    name = str(getattr(source, "name", type(source).__name__))
    try:
        max_leaf = source.cpuid(0, 0)[0]
        if max_leaf < 7:
            view.source = name
            return view
        leaf7 = decode_leaf7(source.cpuid(7, 0))
        view.sgx, view.flc, view.fsgsbase = leaf7.sgx, leaf7.sgx_lc, leaf7.fsgsbase
        if leaf7.sgx and max_leaf >= 0x12:
            caps = decode_sgx_capabilities(source.cpuid(0x12, 0))
            attrs = decode_sgx_attributes(source.cpuid(0x12, 1))
            view.sgx1, view.sgx2, view.edeccssa = caps.sgx1, caps.sgx2, caps.edeccssa
            view.kss, view.aex_notify = attrs.kss, attrs.aex_notify
            view.misc_select = caps.misc_select
            view.max_enclave_size_64 = caps.max_enclave_size_64
            view.sections = read_epc_sections(source) if caps.sgx1 else ()
        elif not leaf7.sgx:
            view.sgx1 = view.sgx2 = view.edeccssa = view.kss = view.aex_notify = False
    except ConfnodeError as exc:
        return CpuidView(error=f"{name}: {exc.message}")
    view.source = name
    return view


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _existing_devices(roots: HostRoots, candidates: tuple[str, ...]) -> tuple[str, ...]:
    found = []
    for host_path in candidates:
        local = roots.dev_path(host_path)
        # /dev/sgx is an enclave node only on DCAP <= v1.22; later it is the directory of symlinks.
        if host_path == "/dev/sgx" and local.is_dir():
            continue
        if local.exists():
            found.append(host_path)
    return tuple(found)


def _driver_flavour(roots: HostRoots, enclave_devices: tuple[str, ...]) -> DriverFlavour:
    if "/dev/sgx_enclave" in enclave_devices:
        # DCAP v1.41 creates the upstream names too; its module (intel_sgx) gives it away.
        if roots.sys_path("module", "intel_sgx").exists():
            return DriverFlavour.DCAP
        return DriverFlavour.IN_KERNEL
    if "/dev/sgx/enclave" in enclave_devices or "/dev/sgx" in enclave_devices:
        return DriverFlavour.DCAP
    if "/dev/isgx" in enclave_devices:
        return DriverFlavour.LEGACY_ISGX
    return DriverFlavour.NONE


_NODE_DIR = re.compile(r"^node(\d+)$")


def _read_sysfs_epc(roots: HostRoots, notes: list[Finding]) -> dict[int, int] | None:
    base = roots.sys_path("devices", "system", "node")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return None
    per_node: dict[int, int] = {}
    seen = False
    for entry in entries:
        match = _NODE_DIR.match(entry)
        if match is None:
            continue
        path = base / entry / "x86" / "sgx_total_bytes"
        text = _read_text(path)
        if text is None:
            continue
        seen = True
        try:
            size = parse_sysfs_bytes(text, str(path))
        except ConfnodeError as exc:
            notes.append(Finding("EPC (sysfs)", exc.message, Status.WARN, None))
            continue
        if size:
            per_node[int(match.group(1))] = size
    return per_node if seen else None


def _read_kernel_config(roots: HostRoots, release: str | None) -> dict[str, str] | None:
    gz = roots.proc_path("config.gz")
    try:
        return parse_kernel_config(gzip.decompress(gz.read_bytes()).decode("utf-8", "replace"))
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        pass
    if release:
        text = _read_text(Path(roots.boot, f"config-{release}"))
        if text is not None:
            return parse_kernel_config(text)
    return None


def _read_hwcap2_fsgsbase(roots: HostRoots, notes: list[Finding]) -> bool | None:
    path = roots.proc_path("self", "auxv")
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        auxv = parse_auxv(data)
    except ConfnodeError as exc:
        notes.append(Finding("FSGSBASE (kernel)", exc.message, Status.WARN, None))
        return None
    # Kernels >= 4.11 always pass AT_HWCAP2 on x86; its absence means an older kernel.
    return bool(auxv.get(AT_HWCAP2, 0) & HWCAP2_FSGSBASE)


def detect(
    roots: HostRoots | None = None,
    cpuid: CpuidSource | None = None,
    aesm_socket: str | os.PathLike[str] | None = DEFAULT_AESM_SOCKET,
    helper: ProcessIdentity | None = None,
) -> SgxPlatform:
    """Detect SGX on the host described by ``roots`` and ``cpuid``; reads nothing else.

    ``cpuid=None`` means "no CPUID source": only ``/proc/cpuinfo`` flags are used (callers that want
    the live CPU pass :func:`cpuid_source_for`). ``aesm_socket`` is checked for existence only;
    ``None`` skips the check. The device nodes found are checked against this process's ids
    (``<proc>/self/status``) and, given ``helper`` (the quote helper's ids, e.g. from
    :func:`~confnode.platform.hostids.socket_peer`), against the helper's.
    """
    roots = roots or HostRoots()
    notes: list[Finding] = []

    cpuinfo_text = _read_text(roots.proc_path("cpuinfo"))
    # No flags at all (an empty or truncated cpuinfo, a sandbox's stub) is "unknown", not
    # "no SGX": every x86 CPU lists some flags.
    flags = parse_cpuinfo_flags(cpuinfo_text) or None if cpuinfo_text is not None else None
    view = _read_cpuid(cpuid)

    def flag(name: str) -> bool | None:
        return None if flags is None else name in flags

    sgx = view.sgx if view.sgx is not None else flag("sgx")
    sgx_enabled = flag("sgx")
    if sgx_enabled is None and view.sgx is False:
        sgx_enabled = False

    def known(value: bool | None) -> bool | None:
        """A leaf-0x12 fact, or ``False`` when the CPU has no SGX at all, else unknown."""
        if value is not None:
            return value
        return False if sgx is False else None

    cpu = CpuFeatures(
        sgx=sgx,
        sgx_enabled=sgx_enabled,
        sgx1=known(view.sgx1),
        sgx2=known(view.sgx2),
        flc=known(flag("sgx_lc") if flags is not None else view.flc),
        kss=known(view.kss),
        aex_notify=known(view.aex_notify),
        edeccssa=known(view.edeccssa),
        fsgsbase_cpu=view.fsgsbase if view.fsgsbase is not None else flag("fsgsbase"),
        cpuid_source=view.source,
        misc_select=view.misc_select,
        max_enclave_size_64=view.max_enclave_size_64,
    )

    fsgsbase_kernel = _read_hwcap2_fsgsbase(roots, notes)

    enclave_devices = _existing_devices(roots, ENCLAVE_DEVICE_PATHS)
    provision_devices = _existing_devices(roots, PROVISION_DEVICE_PATHS)
    vepc = roots.dev_path(VEPC_DEVICE_PATH).exists()
    driver = _driver_flavour(roots, enclave_devices)

    sysfs_epc = _read_sysfs_epc(roots, notes)
    cpuid_epc_total = sum(s.size for s in view.sections)
    epc_by_numa: dict[int, int]
    if sysfs_epc:
        epc_by_numa, epc_source = sysfs_epc, "sysfs"
    elif cpuid_epc_total:
        epc_by_numa, epc_source = {0: cpuid_epc_total}, "cpuid"
    elif sysfs_epc is not None:
        epc_by_numa, epc_source = {}, "sysfs"
    else:
        epc_by_numa, epc_source = {}, "none"
    epc_total = sum(epc_by_numa.values())

    release_text = _read_text(roots.proc_path("sys", "kernel", "osrelease"))
    release = release_text.strip() or None if release_text is not None else None
    config = _read_kernel_config(roots, release)
    kernel_sgx = None if config is None else config.get("CONFIG_X86_SGX", "n")

    aesm_path = str(aesm_socket) if aesm_socket is not None else None
    aesm_found = aesm_path if aesm_path is not None and os.path.exists(aesm_path) else None

    devices = enclave_devices + provision_devices
    own = process_identity(roots)
    own_access = device_access(roots, own, devices) if own is not None else ()
    helper_access = device_access(roots, helper, devices) if helper is not None else ()

    launch_ok = cpu.flc is not False or driver is DriverFlavour.LEGACY_ISGX
    can_run = (
        bool(enclave_devices)
        and cpu.sgx is not False
        and cpu.sgx_enabled is not False
        and cpu.sgx1 is not False
        and launch_ok
        and (epc_source == "none" or epc_total > 0)
    )

    findings = build_findings(
        cpu=cpu,
        view=view,
        fsgsbase_kernel=fsgsbase_kernel,
        driver=driver,
        enclave_devices=enclave_devices,
        provision_devices=provision_devices,
        vepc=vepc,
        epc_by_numa=epc_by_numa,
        epc_source=epc_source,
        cpuid_epc_total=cpuid_epc_total,
        release=release,
        kernel_sgx=kernel_sgx,
        aesm_path=aesm_path,
        aesm_found=aesm_found,
        can_run=can_run,
        own_access=own_access,
        helper=helper,
        helper_access=helper_access,
    )
    return SgxPlatform(
        cpu=cpu,
        fsgsbase_kernel=fsgsbase_kernel,
        driver=driver,
        enclave_devices=enclave_devices,
        provision_devices=provision_devices,
        vepc_device=vepc,
        epc_sections=view.sections,
        epc_by_numa=epc_by_numa,
        epc_source=epc_source,
        aesm_socket=aesm_found,
        kernel_release=release,
        kernel_sgx_config=kernel_sgx,
        can_run_enclaves=can_run,
        findings=tuple(findings + notes),
    )
