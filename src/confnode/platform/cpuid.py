"""CPUID sources and decoders for the SGX leaves (7 and 0x12).

Python has no CPUID call, so three sources share one :class:`CpuidSource` Protocol:
:class:`NativeCpuid` executes the instruction through a 24-byte machine-code thunk,
:class:`DevCpuid` reads the Linux ``cpuid`` driver (``/dev/cpu/N/cpuid``), and :class:`FakeCpuid`
answers from a table for tests. The decoders are pure functions over register tuples, so the same
code interprets a real CPU, a VM's filtered view and a recorded fixture.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from confnode.platform._errors import CpuidUnavailable, HostDataError

__all__ = [
    "MAX_EPC_SECTIONS",
    "CpuidSource",
    "DevCpuid",
    "EpcSection",
    "FakeCpuid",
    "Leaf7",
    "NativeCpuid",
    "Registers",
    "SgxAttributeMask",
    "SgxCapabilities",
    "decode_epc_section",
    "decode_leaf7",
    "decode_sgx_attributes",
    "decode_sgx_capabilities",
    "read_epc_sections",
]

#: EAX, EBX, ECX, EDX as unsigned 32-bit integers.
Registers = tuple[int, int, int, int]

#: The kernel scans at most this many EPC sections from sub-leaf 2 (``SGX_MAX_EPC_SECTIONS``).
MAX_EPC_SECTIONS = 8

_U32 = 0xFFFFFFFF


class CpuidSource(Protocol):
    """Anything that answers CPUID ``(leaf, subleaf)`` with ``(eax, ebx, ecx, edx)``."""

    def cpuid(self, leaf: int, subleaf: int = 0) -> Registers: ...


def _check_registers(regs: Registers, leaf: int, subleaf: int) -> Registers:
    if len(regs) != 4 or any(not isinstance(r, int) or r < 0 or r > _U32 for r in regs):
        raise HostDataError(
            f"CPUID {leaf:#x}.{subleaf} returned {regs!r}; expected four unsigned 32-bit integers"
        )
    return regs


@dataclass(frozen=True, slots=True)
class FakeCpuid:
    """A CPUID table for tests; leaves it does not list read as all-zero, like an absent leaf."""

    table: Mapping[tuple[int, int], Registers]
    name: str = "fake CPUID table"

    def cpuid(self, leaf: int, subleaf: int = 0) -> Registers:
        return _check_registers(self.table.get((leaf, subleaf), (0, 0, 0, 0)), leaf, subleaf)


@dataclass(frozen=True, slots=True)
class DevCpuid:
    """The Linux ``cpuid`` driver: a 16-byte ``pread`` at offset ``leaf | subleaf << 32``.

    Needs ``CONFIG_X86_CPUID`` (``modprobe cpuid``) and, usually, root. CPU 0 is enough for the SGX
    leaves, which are the same on every logical CPU.
    """

    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def cpuid(self, leaf: int, subleaf: int = 0) -> Registers:
        if not (0 <= leaf <= _U32 and 0 <= subleaf <= 0x7FFFFFFF):
            raise HostDataError(f"CPUID leaf {leaf:#x}.{subleaf} is out of range")
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise CpuidUnavailable(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        try:
            data = os.pread(fd, 16, leaf | (subleaf << 32))
        except OSError as exc:
            raise CpuidUnavailable(
                f"reading CPUID {leaf:#x}.{subleaf} from {self.path} failed: {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(fd)
        if len(data) != 16:
            raise HostDataError(
                f"{self.path} returned {len(data)} bytes for CPUID {leaf:#x}.{subleaf}; expected 16"
            )
        eax, ebx, ecx, edx = struct.unpack("<4I", data)
        return (eax, ebx, ecx, edx)


# x86-64 System V thunk: void thunk(u32 leaf /*edi*/, u32 subleaf /*esi*/, u32 out[4] /*rdx*/)
#   push rbx; mov eax, edi; mov ecx, esi; mov r8, rdx; cpuid;
#   mov [r8], eax; mov [r8+4], ebx; mov [r8+8], ecx; mov [r8+12], edx; pop rbx; ret
# rbx is callee-saved and restored; eax/ecx/edx/r8 are caller-saved scratch registers.
_THUNK = bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3")

_ThunkFn = Callable[[int, int, "ctypes.Array[ctypes.c_uint32]"], None]
_native_thunk: _ThunkFn | None = None


def _build_thunk() -> _ThunkFn:
    """Map a page writable, copy the thunk, then make it read+execute (never W and X at once)."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise CpuidUnavailable(
            f"native CPUID needs Linux on x86-64; this is {sys.platform}/{platform.machine()}"
        )
    if struct.calcsize("P") != 8:
        raise CpuidUnavailable("native CPUID needs a 64-bit Python")
    libc = ctypes.CDLL(None, use_errno=True)
    mmap_fn = libc.mmap
    mmap_fn.restype = ctypes.c_void_p
    mmap_fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    mprotect = libc.mprotect
    mprotect.restype = ctypes.c_int
    mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    prot_read, prot_write, prot_exec = 1, 2, 4
    map_private, map_anonymous = 0x02, 0x20
    size = 4096
    addr = mmap_fn(None, size, prot_read | prot_write, map_private | map_anonymous, -1, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise CpuidUnavailable(f"mmap for the CPUID thunk failed: {os.strerror(err)}")
    ctypes.memmove(addr, _THUNK, len(_THUNK))
    if mprotect(addr, size, prot_read | prot_exec) != 0:
        err = ctypes.get_errno()
        raise CpuidUnavailable(
            f"mprotect(PROT_EXEC) for the CPUID thunk failed: {os.strerror(err)}"
        )
    proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32 * 4)
    fn: _ThunkFn = proto(addr)
    return fn


class NativeCpuid:
    """Executes CPUID in this process. The thunk page is mapped once and kept for the process."""

    name = "CPUID instruction"

    def __init__(self) -> None:
        global _native_thunk
        if _native_thunk is None:
            _native_thunk = _build_thunk()
        self._fn = _native_thunk

    def cpuid(self, leaf: int, subleaf: int = 0) -> Registers:
        if not (0 <= leaf <= _U32 and 0 <= subleaf <= _U32):
            raise HostDataError(f"CPUID leaf {leaf:#x}.{subleaf} is out of range")
        out = (ctypes.c_uint32 * 4)()
        self._fn(leaf, subleaf, out)
        return (out[0], out[1], out[2], out[3])


@dataclass(frozen=True, slots=True)
class Leaf7:
    """CPUID.(EAX=7, ECX=0): the SGX feature bits."""

    sgx: bool  # EBX[2]
    sgx_lc: bool  # ECX[30], flexible launch control
    fsgsbase: bool  # EBX[0], CPU capability only (the kernel may not enable it)


def decode_leaf7(regs: Registers) -> Leaf7:
    _eax, ebx, ecx, _edx = _check_registers(regs, 7, 0)
    return Leaf7(sgx=bool(ebx >> 2 & 1), sgx_lc=bool(ecx >> 30 & 1), fsgsbase=bool(ebx & 1))


@dataclass(frozen=True, slots=True)
class SgxCapabilities:
    """CPUID.(EAX=0x12, ECX=0)."""

    sgx1: bool  # EAX[0]
    sgx2: bool  # EAX[1], EDMM
    enclv: bool  # EAX[5]
    encls_c: bool  # EAX[6], ETRACKC/ERDINFO/ELDBC/ELDUC
    eupdatesvn: bool  # EAX[10]
    edeccssa: bool  # EAX[11], needed by AEX-Notify
    misc_select: int  # EBX
    max_enclave_size_not64_log2: int  # EDX[7:0]
    max_enclave_size_64_log2: int  # EDX[15:8]

    @property
    def max_enclave_size_64(self) -> int | None:
        """Largest 64-bit enclave in bytes, or ``None`` when the exponent is implausible (≥ 64)."""
        exp = self.max_enclave_size_64_log2
        return 1 << exp if 0 < exp < 64 else None

    @property
    def max_enclave_size_not64(self) -> int | None:
        exp = self.max_enclave_size_not64_log2
        return 1 << exp if 0 < exp < 64 else None


def decode_sgx_capabilities(regs: Registers) -> SgxCapabilities:
    eax, ebx, _ecx, edx = _check_registers(regs, 0x12, 0)
    return SgxCapabilities(
        sgx1=bool(eax & 1),
        sgx2=bool(eax >> 1 & 1),
        enclv=bool(eax >> 5 & 1),
        encls_c=bool(eax >> 6 & 1),
        eupdatesvn=bool(eax >> 10 & 1),
        edeccssa=bool(eax >> 11 & 1),
        misc_select=ebx,
        max_enclave_size_not64_log2=edx & 0xFF,
        max_enclave_size_64_log2=edx >> 8 & 0xFF,
    )


@dataclass(frozen=True, slots=True)
class SgxAttributeMask:
    """CPUID.(EAX=0x12, ECX=1): which SECS.ATTRIBUTES and XFRM bits an enclave may set."""

    attributes: int  # EAX | EBX << 32
    xfrm: int  # ECX | EDX << 32

    @property
    def kss(self) -> bool:
        """Key separation and sharing (attribute bit 7)."""
        return bool(self.attributes >> 7 & 1)

    @property
    def aex_notify(self) -> bool:
        """ASYNC_EXIT_NOTIFY (attribute bit 10)."""
        return bool(self.attributes >> 10 & 1)

    @property
    def provision_key(self) -> bool:
        return bool(self.attributes >> 4 & 1)


def decode_sgx_attributes(regs: Registers) -> SgxAttributeMask:
    eax, ebx, ecx, edx = _check_registers(regs, 0x12, 1)
    return SgxAttributeMask(attributes=eax | ebx << 32, xfrm=ecx | edx << 32)


@dataclass(frozen=True, slots=True)
class EpcSection:
    """One EPC section. ``numa_node`` is ``None`` when CPUID alone cannot tell (no SRAT view)."""

    base: int
    size: int
    property: int = 1  # ECX[3:0]; 1 on classic parts, 2 on Ice Lake-SP; any value is accepted
    numa_node: int | None = None


def decode_epc_section(regs: Registers, subleaf: int = 2) -> EpcSection | None:
    """Decode CPUID.(EAX=0x12, ECX=n≥2); ``None`` marks the end of the list (type ≠ 1)."""
    eax, ebx, ecx, edx = _check_registers(regs, 0x12, subleaf)
    if eax & 0xF != 1:
        return None
    base = (eax & 0xFFFFF000) | (ebx & 0x000FFFFF) << 32
    size = (ecx & 0xFFFFF000) | (edx & 0x000FFFFF) << 32
    return EpcSection(base=base, size=size, property=ecx & 0xF)


def read_epc_sections(source: CpuidSource) -> tuple[EpcSection, ...]:
    """Scan sub-leaves 2.. like the kernel: at most 8 sections, stop at the first non-section."""
    sections: list[EpcSection] = []
    for index in range(MAX_EPC_SECTIONS):
        subleaf = 2 + index
        section = decode_epc_section(source.cpuid(0x12, subleaf), subleaf)
        if section is None:
            break
        sections.append(section)
    return tuple(sections)
