"""Parsers over arbitrary input: only confnode errors, and sane results."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confnode.errors import ConfnodeError
from confnode.platform import (
    FakeCpuid,
    HostDataError,
    HostRoots,
    detect,
    node_labels,
    parse_auxv,
    parse_cpuinfo_flags,
    parse_kernel_config,
    parse_sysfs_bytes,
)
from confnode.platform._parse import parse_kernel_version
from confnode.platform.cpuid import (
    decode_epc_section,
    decode_sgx_attributes,
    decode_sgx_capabilities,
    read_epc_sections,
)

SETTINGS = settings(max_examples=150, deadline=None)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
regs = st.tuples(u32, u32, u32, u32)


@SETTINGS
@given(st.text())
def test_cpuinfo_flags_any_text(text: str) -> None:
    flags = parse_cpuinfo_flags(text)
    assert all(flag and not any(c.isspace() for c in flag) for flag in flags)


@SETTINGS
@given(st.lists(st.sets(st.sampled_from(["sgx", "sgx_lc", "fsgsbase", "avx", "fpu"])), min_size=1))
def test_cpuinfo_flags_are_the_intersection(per_cpu: list[set[str]]) -> None:
    text = "".join(
        f"processor\t: {n}\nflags\t\t: {' '.join(sorted(f))}\n\n" for n, f in enumerate(per_cpu)
    )
    assert parse_cpuinfo_flags(text) == set.intersection(*per_cpu)


@SETTINGS
@given(st.binary(max_size=200))
def test_auxv_any_bytes(data: bytes) -> None:
    try:
        auxv = parse_auxv(data)
    except HostDataError as exc:
        assert "auxv is" in exc.message
        return
    assert 0 not in auxv
    assert all(0 <= v < 1 << 64 for v in auxv.values())


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(0, (1 << 64) - 1)), max_size=20),
    st.binary(max_size=40),
)
def test_auxv_round_trip(entries: list[tuple[int, int]], after_null: bytes) -> None:
    data = b"".join(struct.pack("=QQ", k, v) for k, v in entries) + bytes(16) + after_null
    expected: dict[int, int] = {}
    for key, value in entries:
        expected.setdefault(key, value)
    assert parse_auxv(data) == expected


@SETTINGS
@given(st.binary(max_size=64))
def test_auxv_32_bit(data: bytes) -> None:
    try:
        parse_auxv(data, word_size=4)
    except HostDataError:
        pass


def test_auxv_bad_word_size() -> None:
    with pytest.raises(HostDataError, match="word size 3"):
        parse_auxv(b"", word_size=3)


@SETTINGS
@given(st.text(max_size=40))
def test_sysfs_bytes_any_text(text: str) -> None:
    try:
        value = parse_sysfs_bytes(text)
    except HostDataError as exc:
        assert "expected a decimal byte count" in exc.message or "64-bit" in exc.message
        return
    assert 0 <= value < 1 << 64
    assert str(value) == text.strip().lstrip("0") or value == 0


@SETTINGS
@given(st.integers(min_value=0, max_value=(1 << 64) - 1), st.sampled_from(["", "\n", " \n"]))
def test_sysfs_bytes_round_trip(value: int, tail: str) -> None:
    assert parse_sysfs_bytes(f"{value}{tail}") == value


@SETTINGS
@given(st.text())
def test_kernel_config_any_text(text: str) -> None:
    config = parse_kernel_config(text)
    assert all(key.startswith("CONFIG_") for key in config)


def test_kernel_config_values() -> None:
    text = 'CONFIG_X86_SGX=y\n# CONFIG_X86_SGX_KVM is not set\nCONFIG_LOCALVERSION="-azure"\n'
    assert parse_kernel_config(text) == {
        "CONFIG_X86_SGX": "y",
        "CONFIG_X86_SGX_KVM": "n",
        "CONFIG_LOCALVERSION": "-azure",
    }


@SETTINGS
@given(st.text(max_size=30))
def test_kernel_version_any_text(text: str) -> None:
    version = parse_kernel_version(text)
    assert version is None or (len(version) == 2 and min(version) >= 0)


def test_kernel_version_values() -> None:
    assert parse_kernel_version("5.15.0-1019-azure") == (5, 15)
    assert parse_kernel_version("6.12.0-55.el10.x86_64\n") == (6, 12)
    assert parse_kernel_version("linux") is None


@SETTINGS
@given(regs)
def test_epc_section_any_registers(r: tuple[int, int, int, int]) -> None:
    section = decode_epc_section(r)
    if r[0] & 0xF != 1:
        assert section is None
        return
    assert section is not None
    assert section.base % 4096 == 0 and section.size % 4096 == 0
    assert section.base < 1 << 52 and section.size < 1 << 52
    assert 0 <= section.property <= 15


@SETTINGS
@given(
    st.integers(0, (1 << 40) - 1).map(lambda n: n * 4096),
    st.integers(0, (1 << 40) - 1).map(lambda n: n * 4096),
    st.integers(0, 15),
)
def test_epc_section_round_trip(base: int, size: int, prop: int) -> None:
    r = (base & 0xFFFFF000 | 1, base >> 32, size & 0xFFFFF000 | prop, size >> 32)
    section = decode_epc_section(r)
    assert section is not None
    assert (section.base, section.size, section.property) == (base, size, prop)


@SETTINGS
@given(regs, regs)
def test_capability_and_attribute_decoders_total(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    caps = decode_sgx_capabilities(a)  # type: ignore[arg-type]
    attrs = decode_sgx_attributes(b)  # type: ignore[arg-type]
    assert caps.misc_select == a[1]
    size = caps.max_enclave_size_64
    assert size is None or (size & (size - 1) == 0 and size < 1 << 64)
    assert attrs.attributes >> 32 == b[1] and attrs.xfrm & 0xFFFFFFFF == b[2]


@SETTINGS
@given(st.dictionaries(st.integers(2, 12), regs, max_size=12))
def test_read_epc_sections_any_table(table: dict[int, tuple[int, int, int, int]]) -> None:
    sections = read_epc_sections(FakeCpuid({(0x12, k): v for k, v in table.items()}))
    assert len(sections) <= 8
    for offset, section in enumerate(sections):
        assert table[2 + offset][0] & 0xF == 1
        assert decode_epc_section(table[2 + offset]) == section


leaves = st.sampled_from([(0, 0), (7, 0), (0x12, 0), (0x12, 1), (0x12, 2), (0x12, 3)])
any_ints = st.tuples(*(st.integers(-(1 << 33), 1 << 33),) * 4)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.dictionaries(leaves, st.one_of(regs, any_ints), max_size=6),
    cpuinfo=st.text(max_size=200),
    auxv=st.binary(max_size=64),
    sysfs=st.text(max_size=30),
)
def test_detect_never_raises(
    tmp_path: Path,
    table: dict[tuple[int, int], tuple[int, int, int, int]],
    cpuinfo: str,
    auxv: bytes,
    sysfs: str,
) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "cpuinfo").write_text(cpuinfo, errors="surrogatepass")
    (proc / "self" / "auxv").write_bytes(auxv)
    x86 = tmp_path / "sys" / "devices" / "system" / "node" / "node0" / "x86"
    x86.mkdir(parents=True, exist_ok=True)
    (x86 / "sgx_total_bytes").write_text(sysfs, errors="surrogatepass")
    roots = HostRoots(dev=tmp_path / "dev", sys=tmp_path / "sys", proc=proc, boot=tmp_path)
    try:
        platform = detect(roots, cpuid=FakeCpuid(table), aesm_socket=None)
    except ConfnodeError as exc:  # detect turns bad host data into findings
        pytest.fail(f"detect raised {exc!r}")
    assert not platform.can_run_enclaves  # no device nodes in this tree
    assert platform.epc_total >= 0
    node_labels(platform)
