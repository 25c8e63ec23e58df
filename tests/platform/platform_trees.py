"""Fake SGX host trees: a /dev, /sys, /proc and /boot under a temp dir plus their CPUID answers.

Each :class:`HostSpec` describes one kind of node; :func:`build_tree` lays it out the way the
kernel does (device nodes are plain files: detection checks existence only) and writes the CPUID
table into ``dev/cpu/0/cpuid`` as a sparse file at the ``leaf | subleaf << 32`` offsets the Linux
``cpuid`` driver uses, so the CLI reads a fake tree's CPUID exactly as it reads a real node's.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confnode.platform import FakeCpuid, HostRoots, Registers

MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40

BASE_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush"

# "GenuineIntel" in EBX, EDX, ECX; max basic leaf 0x1b.
LEAF0_INTEL: Registers = (0x1B, 0x756E6547, 0x6C65746E, 0x49656E69)


def leaf7(*, sgx: bool, lc: bool, fsgsbase: bool = True) -> Registers:
    ebx = (1 << 2 if sgx else 0) | (1 if fsgsbase else 0)
    ecx = 1 << 30 if lc else 0
    return (0, ebx, ecx, 0)


def epc_section(base: int, size: int, prop: int = 1) -> Registers:
    """Encode one CPUID.0x12.n≥2 EPC section the way the CPU reports it."""
    return (
        (base & 0xFFFFF000) | 1,
        base >> 32 & 0xFFFFF,
        (size & 0xFFFFF000) | prop,
        size >> 32 & 0xFFFFF,
    )


def sgx_cpuid(
    *,
    lc: bool = True,
    sgx2: bool = False,
    edeccssa: bool = False,
    attributes: int = 0x36,
    sections: tuple[tuple[int, int, int], ...] = (),
    fsgsbase: bool = True,
) -> dict[tuple[int, int], Registers]:
    """A CPUID table for an SGX CPU; ``sections`` are (base, size, property)."""
    eax0 = 1 | (2 if sgx2 else 0) | (1 << 11 if edeccssa else 0)
    table: dict[tuple[int, int], Registers] = {
        (0, 0): LEAF0_INTEL,
        (7, 0): leaf7(sgx=True, lc=lc, fsgsbase=fsgsbase),
        (0x12, 0): (eax0, 0x1, 0, 0x241F),
        (0x12, 1): (attributes & 0xFFFFFFFF, attributes >> 32, 0x1F, 0),
    }
    for index, (base, size, prop) in enumerate(sections):
        table[(0x12, 2 + index)] = epc_section(base, size, prop)
    return table


NO_SGX_CPUID: dict[tuple[int, int], Registers] = {
    (0, 0): LEAF0_INTEL,
    (7, 0): leaf7(sgx=False, lc=False),
}


@dataclass(frozen=True)
class HostSpec:
    """One node: what its files say and what its CPU answers."""

    flags: str
    cpuid: Mapping[tuple[int, int], Registers] | None
    devices: tuple[str, ...] = ()
    sysfs_epc: Mapping[int, int] | None = None  # NUMA node -> sgx_total_bytes; None: no x86 dir
    numa_nodes: int = 1
    hwcap2: int | None = 0x2  # None: no AT_HWCAP2 entry (kernel < 4.11)
    release: str = "6.8.0-1015-azure"
    config_sgx: str | None = "y"  # CONFIG_X86_SGX in /boot/config-<release>; None: no config
    modules: tuple[str, ...] = ()
    aesm: bool = False
    dev_dirs: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Tree:
    root: Path
    roots: HostRoots
    aesm_socket: Path
    spec: HostSpec

    @property
    def cpuid(self) -> FakeCpuid | None:
        return None if self.spec.cpuid is None else FakeCpuid(self.spec.cpuid)

    def cli_args(self) -> list[str]:
        return [
            "--dev-root",
            str(self.roots.dev),
            "--sys-root",
            str(self.roots.sys),
            "--proc-root",
            str(self.roots.proc),
            "--boot-root",
            str(self.roots.boot),
            "--aesm-socket",
            str(self.aesm_socket),
        ]


def _auxv(hwcap2: int | None) -> bytes:
    entries = [(6, 4096), (16, 0x178BFBFF)]  # AT_PAGESZ, AT_HWCAP
    if hwcap2 is not None:
        entries.append((26, hwcap2))
    entries.append((0, 0))
    return b"".join(struct.pack("<QQ", key, value) for key, value in entries)


def write_sparse_cpuid(path: Path, table: Mapping[tuple[int, int], Registers]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Like the driver, answer every sub-leaf up to 15: unlisted ones read as zero (holes).
        os.ftruncate(fd, 16 << 32)
        for (leaf, subleaf), regs in table.items():
            os.pwrite(fd, struct.pack("<4I", *regs), leaf | subleaf << 32)
    finally:
        os.close(fd)


def build_tree(base: Path, spec: HostSpec) -> Tree:
    dev, sys_, proc, boot = (base / name for name in ("dev", "sys", "proc", "boot"))
    for directory in (dev, sys_, proc, boot):
        directory.mkdir(parents=True)
    for name in spec.dev_dirs:
        (dev / name).mkdir(parents=True, exist_ok=True)
    for device in spec.devices:
        local = dev / Path(device).relative_to("/dev")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(b"")
    if spec.cpuid is not None:
        write_sparse_cpuid(dev / "cpu" / "0" / "cpuid", spec.cpuid)

    cpus = "".join(
        f"processor\t: {n}\nvendor_id\t: GenuineIntel\nflags\t\t: {BASE_FLAGS} {spec.flags}\n\n"
        for n in range(2)
    )
    (proc / "cpuinfo").write_text(cpus)
    (proc / "self").mkdir()
    (proc / "self" / "auxv").write_bytes(_auxv(spec.hwcap2))
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(spec.release + "\n")
    if spec.config_sgx is not None:
        line = (
            f"CONFIG_X86_SGX={spec.config_sgx}"
            if spec.config_sgx != "n"
            else "# CONFIG_X86_SGX is not set"
        )
        (boot / f"config-{spec.release}").write_text(f"CONFIG_X86_64=y\n{line}\n")

    nodes = sys_ / "devices" / "system" / "node"
    nodes.mkdir(parents=True)
    (nodes / "online").write_text(f"0-{spec.numa_nodes - 1}\n")
    for node in range(spec.numa_nodes):
        (nodes / f"node{node}").mkdir()
    for node, size in (spec.sysfs_epc or {}).items():
        x86 = nodes / f"node{node}" / "x86"
        x86.mkdir(parents=True, exist_ok=True)
        (x86 / "sgx_total_bytes").write_text(f"{size}\n")
    for module in spec.modules:
        (sys_ / "module" / module).mkdir(parents=True)

    aesm = base / "run" / "aesm.socket"
    if spec.aesm:
        aesm.parent.mkdir(parents=True)
        aesm.write_bytes(b"")
    roots = HostRoots(dev=dev, sys=sys_, proc=proc, boot=boot)
    return Tree(root=base, roots=roots, aesm_socket=aesm, spec=spec)


# --- the node kinds ---------------------------------------------------------------------------

SPECS: dict[str, HostSpec] = {
    # A cloud VM without SGX (like the machine the demo runs on).
    "no-sgx": HostSpec(
        flags="fsgsbase avx2",
        cpuid=NO_SGX_CPUID,
        config_sgx="n",
    ),
    # Azure DC1s_v2 on the old AKS image: Coffee Lake, 28 MiB EPC, DCAP 1.33 driver, kernel 5.4.
    "dcsv2": HostSpec(
        flags="fsgsbase sgx sgx_lc",
        cpuid=sgx_cpuid(sections=((0x70200000, 28 * MIB, 1),)),
        devices=("/dev/sgx/enclave", "/dev/sgx/provision"),
        sysfs_epc=None,
        hwcap2=0x0,
        release="5.4.0-1089-azure",
        config_sgx="n",
        modules=("intel_sgx",),
        aesm=True,
    ),
    # Azure DC48s_v3: Ice Lake, 256 GiB EPC, in-kernel driver, sysfs sgx_total_bytes.
    "dcsv3": HostSpec(
        flags="fsgsbase sgx sgx_lc",
        cpuid=sgx_cpuid(sgx2=True, attributes=0xB6, sections=((0x1_0000_0000, 256 * GIB, 1),)),
        devices=("/dev/sgx_enclave", "/dev/sgx_provision"),
        sysfs_epc={0: 256 * GIB},
        aesm=True,
    ),
    # Two-socket bare-metal KVM host: 1 TiB EPC, 512 GiB per socket, property 2 sections,
    # a memory-only NUMA node without EPC, AEX-Notify and the virtual EPC device.
    "two-socket": HostSpec(
        flags="fsgsbase sgx sgx_lc",
        cpuid=sgx_cpuid(
            sgx2=True,
            edeccssa=True,
            attributes=0x4B6,
            sections=((0x80_0000_0000, 512 * GIB, 2), (0x180_0000_0000, 512 * GIB, 2)),
        ),
        devices=("/dev/sgx_enclave", "/dev/sgx_provision", "/dev/sgx_vepc"),
        sysfs_epc={0: 512 * GIB, 1: 512 * GIB, 2: 0},
        numa_nodes=3,
        release="6.12.0-55.el10.x86_64",
    ),
    # Old non-FLC server with the out-of-tree isgx driver.
    "legacy-isgx": HostSpec(
        flags="fsgsbase sgx",
        cpuid=sgx_cpuid(lc=False, sections=((0x80200000, 93 * MIB + 512 * 1024, 1),)),
        devices=("/dev/isgx",),
        hwcap2=None,
        release="4.15.0-213-generic",
        config_sgx=None,
        modules=("isgx",),
        aesm=True,
    ),
    # SGX CPU whose firmware locked launch control: the in-kernel driver refused to load.
    "no-flc": HostSpec(
        flags="fsgsbase sgx",
        cpuid=sgx_cpuid(lc=False, sections=((0x80200000, 128 * MIB, 1),)),
        release="5.15.0-91-generic",
    ),
    # FSGSBASE in cpuinfo, but a pre-5.9 kernel never enabled it (AT_HWCAP2 bit 1 clear).
    "old-kernel-fsgsbase": HostSpec(
        flags="fsgsbase sgx sgx_lc",
        cpuid=sgx_cpuid(sections=((0x70200000, 112 * MIB, 1),)),
        devices=("/dev/sgx/enclave", "/dev/sgx/provision"),
        hwcap2=0x1,
        release="5.4.0-1040-azure",
        config_sgx="n",
        aesm=True,
    ),
    # SGX present in the CPU but disabled in the firmware: CPUID says yes, cpuinfo says no.
    "bios-disabled": HostSpec(
        flags="fsgsbase",
        cpuid=sgx_cpuid(sections=()),
        release="6.8.0-31-generic",
    ),
    # DCsv3 seen without CPUID access (unprivileged container): cpuinfo and sysfs only.
    "dcsv3-no-cpuid": HostSpec(
        flags="fsgsbase sgx sgx_lc",
        cpuid=None,
        devices=("/dev/sgx_enclave", "/dev/sgx_provision"),
        sysfs_epc={0: 256 * GIB},
        aesm=True,
    ),
    # DCAP 1.41: upstream device names plus udev symlinks, from the intel_sgx module.
    "dcap-1.41": HostSpec(
        flags="fsgsbase sgx sgx_lc",
        cpuid=sgx_cpuid(sections=((0x70200000, 168 * MIB, 1),)),
        devices=(
            "/dev/sgx/enclave",
            "/dev/sgx/provision",
            "/dev/sgx_enclave",
            "/dev/sgx_provision",
        ),
        release="5.4.0-1089-azure",
        config_sgx="n",
        modules=("intel_sgx",),
    ),
}
