"""CPUID decoding with exact register values, and the three CPUID sources."""

from __future__ import annotations

import platform
import struct
import sys
from pathlib import Path

import pytest
from platform_trees import epc_section, write_sparse_cpuid

from confnode.platform import CpuidUnavailable, DevCpuid, FakeCpuid, HostDataError, NativeCpuid
from confnode.platform.cpuid import (
    decode_epc_section,
    decode_leaf7,
    decode_sgx_attributes,
    decode_sgx_capabilities,
    read_epc_sections,
)

# The Azure DC-series example of node-and-aesm.md §3.4.
AZURE_12_0 = (0x1, 0x1, 0x0, 0x241F)
AZURE_12_1 = (0x36, 0x0, 0x1F, 0x0)
AZURE_SECTION = (0x70200001, 0x0, 0x05D80001, 0x0)


def test_leaf7_bits() -> None:
    leaf = decode_leaf7((0, 0b101, 1 << 30, 0))
    assert (leaf.sgx, leaf.sgx_lc, leaf.fsgsbase) == (True, True, True)
    leaf = decode_leaf7((0xFFFFFFFF, 0b100, 0, 0xFFFFFFFF))
    assert (leaf.sgx, leaf.sgx_lc, leaf.fsgsbase) == (True, False, False)
    leaf = decode_leaf7((0, 0xFFFFFFFB, 0xBFFFFFFF, 0))  # everything except the SGX bits
    assert (leaf.sgx, leaf.sgx_lc, leaf.fsgsbase) == (False, False, True)


def test_azure_capabilities_example() -> None:
    caps = decode_sgx_capabilities(AZURE_12_0)
    assert caps.sgx1 and not caps.sgx2 and not caps.edeccssa
    assert caps.misc_select == 1
    assert caps.max_enclave_size_not64 == 1 << 31
    assert caps.max_enclave_size_64 == 1 << 36


def test_capability_bits() -> None:
    caps = decode_sgx_capabilities((0b1100_0110_0011, 0x3, 0, 0))
    assert (caps.sgx1, caps.sgx2, caps.enclv, caps.encls_c) == (True, True, True, True)
    assert (caps.eupdatesvn, caps.edeccssa) == (True, True)
    assert caps.misc_select == 3
    assert caps.max_enclave_size_64 is None  # exponent 0 is not a size
    assert decode_sgx_capabilities((1, 0, 0, 0xFF00)).max_enclave_size_64 is None


def test_azure_attribute_example() -> None:
    attrs = decode_sgx_attributes(AZURE_12_1)
    assert attrs.attributes == 0x36
    assert attrs.provision_key and not attrs.kss and not attrs.aex_notify
    assert attrs.xfrm == 0x1F


def test_attribute_kss_and_aex_notify_bits() -> None:
    attrs = decode_sgx_attributes((1 << 7 | 1 << 10, 0x1, 0x3, 0x2))
    assert attrs.kss and attrs.aex_notify
    assert attrs.attributes == (1 << 32) | 0x480
    assert attrs.xfrm == (2 << 32) | 3


def test_azure_epc_section_example() -> None:
    section = decode_epc_section(AZURE_SECTION)
    assert section is not None
    assert section.base == 0x70200000
    assert section.size == 0x5D80000  # ≈ 93.5 MiB
    assert section.property == 1
    assert section.numa_node is None


def test_epc_section_high_bits_and_property_2() -> None:
    # base 0x180_0000_0000 and size 512 GiB need EBX/EDX bits 19:0.
    regs = (0x00000001, 0x180, 0x00000002, 0x80)
    section = decode_epc_section(regs)
    assert section is not None
    assert section.base == 0x180_0000_0000
    assert section.size == 512 << 30
    assert section.property == 2
    assert epc_section(0x180_0000_0000, 512 << 30, 2) == regs


def test_epc_section_ignores_reserved_bits() -> None:
    # EBX/EDX bits 31:20 are reserved; ECX/EAX low bits other than the type/property are too.
    section = decode_epc_section((0x70200FF1, 0xFFF00000, 0x05D80FF1, 0xFFF00000))
    assert section is not None
    assert (section.base, section.size) == (0x70200000, 0x5D80000)


@pytest.mark.parametrize("eax", [0x0, 0x70200000, 0x70200002, 0x7020000F])
def test_non_section_types_end_the_list(eax: int) -> None:
    assert decode_epc_section((eax, 0, 0x05D80001, 0)) is None


def test_read_epc_sections_stops_at_first_invalid_and_at_eight() -> None:
    table = {(0x12, 2 + i): epc_section((i + 1) << 32, 64 << 20) for i in range(10)}
    sections = read_epc_sections(FakeCpuid(table))
    assert len(sections) == 8  # SGX_MAX_EPC_SECTIONS
    assert [s.base for s in sections] == [(i + 1) << 32 for i in range(8)]
    del table[(0x12, 4)]
    assert len(read_epc_sections(FakeCpuid(table))) == 2


@pytest.mark.parametrize("regs", [(0, 0, 0, 1 << 32), (-1, 0, 0, 0), (0, 0, 0)])
def test_out_of_range_registers_are_rejected(regs: tuple[int, ...]) -> None:
    with pytest.raises(HostDataError, match="expected four unsigned 32-bit integers"):
        decode_leaf7(regs)  # type: ignore[arg-type]


def test_fake_cpuid_unlisted_leaves_read_zero() -> None:
    assert FakeCpuid({}).cpuid(0x12, 5) == (0, 0, 0, 0)


def test_dev_cpuid_reads_driver_offsets(tmp_path: Path) -> None:
    path = tmp_path / "cpuid"
    table = {(0, 0): (0x1B, 1, 2, 3), (0x12, 1): AZURE_12_1, (0x12, 2): AZURE_SECTION}
    write_sparse_cpuid(path, table)
    source = DevCpuid(path)
    assert source.cpuid(0) == (0x1B, 1, 2, 3)
    assert source.cpuid(0x12, 1) == AZURE_12_1
    assert source.cpuid(0x12, 2) == AZURE_SECTION
    assert source.cpuid(0x12, 3) == (0, 0, 0, 0)  # a hole in the sparse file
    assert source.name == str(path)


def test_dev_cpuid_errors(tmp_path: Path) -> None:
    with pytest.raises(CpuidUnavailable, match="cannot open"):
        DevCpuid(tmp_path / "missing").cpuid(0)
    short = tmp_path / "short"
    short.write_bytes(b"\x01" * 8)
    with pytest.raises(HostDataError, match="returned 8 bytes"):
        DevCpuid(short).cpuid(0)
    with pytest.raises(HostDataError, match="out of range"):
        DevCpuid(short).cpuid(-1)


def _cpuinfo_vendor() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return None


native_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the native CPUID thunk is x86-64 Linux only",
)


@native_only
def test_native_cpuid_matches_cpuinfo_vendor() -> None:
    vendor = _cpuinfo_vendor()
    if vendor is None:
        pytest.skip("no vendor_id in /proc/cpuinfo")
    eax, ebx, ecx, edx = NativeCpuid().cpuid(0)
    assert struct.pack("<3I", ebx, edx, ecx).decode() == vendor
    assert eax >= 1


@native_only
def test_native_cpuid_matches_cpuid_driver() -> None:
    path = Path("/dev/cpu/0/cpuid")
    try:
        dev = DevCpuid(path)
        expected = [dev.cpuid(0), dev.cpuid(7), dev.cpuid(0x12, 0)]
    except CpuidUnavailable:
        pytest.skip("/dev/cpu/0/cpuid is not readable here")
    native = NativeCpuid()
    # Leaves 0, 7 and 0x12 hold no per-CPU data (unlike leaf 1's APIC ID), so any CPU agrees.
    assert [native.cpuid(0), native.cpuid(7), native.cpuid(0x12, 0)] == expected


@native_only
def test_native_cpuid_rejects_out_of_range_leaf() -> None:
    with pytest.raises(HostDataError):
        NativeCpuid().cpuid(1 << 32)


def test_native_thunk_refuses_other_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    from confnode.platform import cpuid as cpuid_module

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(CpuidUnavailable, match="needs Linux on x86-64"):
        cpuid_module._build_thunk()
