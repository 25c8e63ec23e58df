"""detect() over the fake host trees of platform_trees.py."""

from __future__ import annotations

import gzip
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from platform_trees import GIB, MIB, TIB, Tree

from confnode.platform import (
    DevCpuid,
    DriverFlavour,
    FakeCpuid,
    HostRoots,
    SgxPlatform,
    Status,
    cpuid_source_for,
    detect,
)

MakeTree = Callable[[str], Tree]


def run(tree: Tree, *, via_driver_file: bool = False) -> SgxPlatform:
    cpuid = cpuid_source_for(tree.roots) if via_driver_file else tree.cpuid
    return detect(tree.roots, cpuid=cpuid, aesm_socket=tree.aesm_socket)


def finding(platform: SgxPlatform, capability: str) -> tuple[Status, str, str | None]:
    matches = [f for f in platform.findings if f.capability == capability]
    assert len(matches) == 1, [f.capability for f in platform.findings]
    return matches[0].status, matches[0].found, matches[0].fix


def test_no_sgx(make_tree: MakeTree) -> None:
    p = run(make_tree("no-sgx"))
    assert not p.can_run_enclaves
    assert p.cpu.sgx is False and p.cpu.sgx1 is False and p.cpu.flc is False
    assert p.driver is DriverFlavour.NONE
    assert p.enclave_devices == () and p.provision_devices == ()
    assert p.epc_by_numa == {} and p.epc_total == 0
    assert p.kernel_sgx_config == "n"
    status, found, fix = finding(p, "SGX (CPU)")
    assert status is Status.FAIL and "not supported" in found and fix and "confnode sim" in fix
    assert finding(p, "Can run enclaves")[0] is Status.FAIL
    assert finding(p, "Enclave device")[0] is Status.FAIL


def test_dcsv2_dcap_driver(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv2")
    p = run(tree)
    assert p.can_run_enclaves
    assert p.driver is DriverFlavour.DCAP
    assert p.enclave_devices == ("/dev/sgx/enclave",)
    assert p.provision_devices == ("/dev/sgx/provision",)
    assert p.epc_source == "cpuid"  # no sgx_total_bytes on a 5.4 kernel
    assert p.epc_by_numa == {0: 28 * MIB}
    assert [(s.base, s.size) for s in p.epc_sections] == [(0x70200000, 28 * MIB)]
    assert (p.cpu.sgx1, p.cpu.sgx2, p.cpu.flc, p.cpu.kss) == (True, False, True, False)
    assert p.cpu.max_enclave_size_64 == 1 << 36
    assert p.aesm_socket == str(tree.aesm_socket)
    assert p.fsgsbase_kernel is False
    assert finding(p, "EPC") == (Status.OK, "28 MiB on 1 NUMA node (from cpuid)", None)
    assert finding(p, "SGX2 (EDMM)")[0] is Status.WARN
    # The AESM path exists but is a plain file here, not a listening socket.
    status, found, _ = finding(p, "AESM / quote helper")
    assert status is Status.WARN and "not a socket" in found


def test_dcsv3_in_kernel(make_tree: MakeTree) -> None:
    p = run(make_tree("dcsv3"))
    assert p.can_run_enclaves
    assert p.driver is DriverFlavour.IN_KERNEL
    assert p.enclave_devices == ("/dev/sgx_enclave",)
    assert p.provision_devices == ("/dev/sgx_provision",)
    assert p.epc_source == "sysfs"
    assert p.epc_by_numa == {0: 256 * GIB}
    assert (p.cpu.sgx2, p.cpu.kss, p.cpu.aex_notify) == (True, True, False)
    assert p.fsgsbase_kernel is True
    assert finding(p, "FSGSBASE (kernel)")[0] is Status.OK
    assert finding(p, "EPC")[1] == "256 GiB on 1 NUMA node (from sysfs)"
    assert not [f for f in p.problems if f.status is Status.FAIL]


def test_two_sockets_one_tib(make_tree: MakeTree) -> None:
    p = run(make_tree("two-socket"))
    assert p.can_run_enclaves
    assert p.epc_by_numa == {0: 512 * GIB, 1: 512 * GIB}  # node 2 has no EPC
    assert p.epc_total == TIB
    assert p.numa_nodes == (0, 1)
    assert [s.property for s in p.epc_sections] == [2, 2]  # accepted, not only 1
    assert sum(s.size for s in p.epc_sections) == TIB
    assert p.vepc_device and "/dev/sgx_vepc" not in p.enclave_devices
    assert (p.cpu.aex_notify, p.cpu.edeccssa) == (True, True)
    assert finding(p, "EPC")[1] == "1024 GiB over 2 NUMA nodes (from sysfs)"
    assert finding(p, "AEX-Notify")[0] is Status.OK


def test_legacy_isgx_runs_without_flc(make_tree: MakeTree) -> None:
    p = run(make_tree("legacy-isgx"))
    assert p.driver is DriverFlavour.LEGACY_ISGX
    assert p.enclave_devices == ("/dev/isgx",)
    assert p.provision_devices == ()
    assert p.cpu.flc is False
    assert p.can_run_enclaves
    status, found, fix = finding(p, "Flexible launch control")
    assert status is Status.WARN and "launch enclave" in found and fix and "DCAP" in fix
    assert finding(p, "Provisioning device")[0] is Status.WARN
    assert p.fsgsbase_kernel is False  # a 4.15 kernel passes no AT_HWCAP2
    assert p.kernel_sgx_config is None
    assert p.epc_total == 93 * MIB + 512 * 1024
    assert finding(p, "EPC")[1].startswith("93.5 MiB")


def test_sgx_without_flc_cannot_run(make_tree: MakeTree) -> None:
    p = run(make_tree("no-flc"))
    assert p.cpu.sgx is True and p.cpu.sgx_enabled is True and p.cpu.flc is False
    assert p.driver is DriverFlavour.NONE
    assert not p.can_run_enclaves
    status, _, fix = finding(p, "Flexible launch control")
    assert status is Status.FAIL and fix and "Launch Control" in fix
    status, _, fix = finding(p, "Enclave device")
    assert status is Status.FAIL and fix and "isgx" in fix


def test_fsgsbase_in_cpuinfo_but_not_enabled(make_tree: MakeTree) -> None:
    p = run(make_tree("old-kernel-fsgsbase"))
    assert p.cpu.fsgsbase_cpu is True
    assert p.fsgsbase_kernel is False  # AT_HWCAP2 = 0x1: bit 1 clear
    status, found, fix = finding(p, "FSGSBASE (kernel)")
    assert status is Status.WARN
    assert "although the CPU supports it" in found
    assert fix and "5.9" in fix
    assert p.can_run_enclaves  # enclaves run; only Gramine-style runtimes need FSGSBASE


def test_bios_disabled(make_tree: MakeTree) -> None:
    p = run(make_tree("bios-disabled"))
    assert p.cpu.sgx is True and p.cpu.sgx_enabled is False
    assert not p.can_run_enclaves
    status, _, fix = finding(p, "SGX enabled (BIOS/kernel)")
    assert status is Status.FAIL and fix and "firmware" in fix


def test_cpuinfo_only(make_tree: MakeTree) -> None:
    p = run(make_tree("dcsv3-no-cpuid"))
    assert p.can_run_enclaves
    assert p.cpu.cpuid_source is None
    assert (p.cpu.sgx, p.cpu.flc, p.cpu.fsgsbase_cpu) == (True, True, True)
    assert (p.cpu.sgx1, p.cpu.sgx2, p.cpu.kss) == (None, None, None)
    assert p.epc_by_numa == {0: 256 * GIB}
    assert finding(p, "CPUID")[0] is Status.WARN
    assert finding(p, "SGX1")[1].startswith("unknown")


def test_dcap_141_upstream_names(make_tree: MakeTree) -> None:
    p = run(make_tree("dcap-1.41"))
    assert p.driver is DriverFlavour.DCAP
    assert p.enclave_devices == ("/dev/sgx/enclave", "/dev/sgx_enclave")  # urts order
    assert p.provision_devices == ("/dev/sgx/provision", "/dev/sgx_provision")


@pytest.mark.parametrize("name", ["dcsv2", "dcsv3", "two-socket", "no-sgx", "legacy-isgx"])
def test_cpuid_driver_file_gives_same_answer(make_tree: MakeTree, name: str) -> None:
    tree = make_tree(name)
    source = cpuid_source_for(tree.roots)
    assert isinstance(source, DevCpuid)

    def without_source_name(p: SgxPlatform) -> dict[str, object]:
        d = p.to_dict()
        d["cpu"]["cpuid_source"] = None
        d["capabilities"] = [c for c in d["capabilities"] if c["capability"] != "CPUID"]
        return d

    via_file = run(tree, via_driver_file=True)
    assert via_file.cpu.cpuid_source == str(Path(tree.roots.dev, "cpu/0/cpuid"))
    assert without_source_name(via_file) == without_source_name(run(tree))


def test_no_cpuid_file_means_no_cpuid(tmp_path: Path) -> None:
    roots = HostRoots(dev=tmp_path, sys=tmp_path, proc=tmp_path, boot=tmp_path)
    assert cpuid_source_for(roots) is None


def test_empty_roots_do_not_crash(tmp_path: Path) -> None:
    p = detect(
        HostRoots(dev=tmp_path / "d", sys=tmp_path / "s", proc=tmp_path / "p", boot=tmp_path),
        aesm_socket=None,
    )
    assert not p.can_run_enclaves
    assert p.cpu.sgx is None and p.fsgsbase_kernel is None and p.kernel_release is None
    assert p.epc_source == "none"
    assert all(f.capability != "AESM / quote helper" for f in p.findings)


def test_vm_without_cpuid_leaf_7(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv2")
    p = detect(tree.roots, cpuid=FakeCpuid({(0, 0): (5, 0, 0, 0)}), aesm_socket=None)
    # Leaf 7 is beyond the maximum leaf: cpuinfo flags decide, EPC stays unknown.
    assert p.cpu.sgx is True and p.cpu.sgx1 is None
    assert p.epc_source == "none"
    assert p.can_run_enclaves


def test_broken_cpuid_source_is_a_finding(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv3")
    bad = FakeCpuid({(0, 0): (0x1B, 0, 0, 0), (7, 0): (0, 1 << 33, 0, 0)})
    p = detect(tree.roots, cpuid=bad, aesm_socket=None)
    status, found, _ = finding(p, "CPUID")
    assert status is Status.WARN and "expected four unsigned 32-bit integers" in found
    assert p.cpu.sgx is True  # fell back to cpuinfo
    assert p.can_run_enclaves


def test_malformed_sysfs_falls_back_to_cpuid(make_tree: MakeTree) -> None:
    tree = make_tree("two-socket")
    node0 = Path(tree.roots.sys, "devices/system/node/node0/x86/sgx_total_bytes")
    node0.write_text("lots\n")
    p = run(tree)
    assert p.epc_by_numa == {1: 512 * GIB}
    assert any(f.capability == "EPC (sysfs)" and "lots" in f.found for f in p.findings)
    for node in ("node0", "node1", "node2"):
        Path(tree.roots.sys, "devices/system/node", node, "x86/sgx_total_bytes").write_text("x")
    p = run(tree)
    assert p.epc_source == "cpuid" and p.epc_by_numa == {0: TIB}


def test_truncated_auxv_is_a_finding(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv3")
    Path(tree.roots.proc, "self/auxv").write_bytes(b"\x1a" + b"\x00" * 20)
    p = run(tree)
    assert p.fsgsbase_kernel is None
    assert any("auxv is 21 bytes" in f.found for f in p.findings)


def test_kernel_config_from_proc_config_gz(make_tree: MakeTree) -> None:
    tree = make_tree("no-flc")
    shutil.rmtree(tree.roots.boot)
    Path(tree.roots.proc, "config.gz").write_bytes(gzip.compress(b"CONFIG_X86_SGX=y\n"))
    assert run(tree).kernel_sgx_config == "y"
    Path(tree.roots.proc, "config.gz").write_bytes(b"not gzip")
    assert run(tree).kernel_sgx_config is None


def test_dev_sgx_directory_is_not_an_enclave_node(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv2")
    p = run(tree)
    assert "/dev/sgx" not in p.enclave_devices  # /dev/sgx here is the DCAP symlink directory
    Path(tree.roots.dev, "sgx/enclave").unlink()
    Path(tree.roots.dev, "sgx/provision").unlink()
    Path(tree.roots.dev, "sgx").rmdir()
    Path(tree.roots.dev, "sgx").write_bytes(b"")  # DCAP <= 1.22: /dev/sgx is the node
    Path(tree.roots.dev, "sgx_prv").write_bytes(b"")
    p = run(tree)
    assert p.enclave_devices == ("/dev/sgx",) and p.driver is DriverFlavour.DCAP
    assert p.provision_devices == ("/dev/sgx_prv",)


def test_dev_path_maps_host_paths_into_the_root(tmp_path: Path) -> None:
    roots = HostRoots(dev=tmp_path / "host-dev")
    assert roots.dev_path("/dev/sgx/enclave") == tmp_path / "host-dev" / "sgx" / "enclave"
    assert HostRoots().is_live and not roots.is_live


def test_real_aesm_socket_is_ok(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv3")
    with tempfile.TemporaryDirectory(prefix="cn") as short:  # AF_UNIX paths are short
        path = Path(short, "aesm.socket")
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            p = detect(tree.roots, cpuid=tree.cpuid, aesm_socket=path)
    assert p.aesm_socket == str(path)
    assert finding(p, "AESM / quote helper") == (Status.OK, str(path), None)


def test_to_dict_is_json_ready(make_tree: MakeTree) -> None:
    import json

    d = run(make_tree("two-socket")).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["epc"]["by_numa"] == {"0": 512 * GIB, "1": 512 * GIB}
    assert d["epc"]["sections"][1]["base"] == "0x18000000000"
    assert d["driver"] == "in-kernel"
    assert {c["status"] for c in d["capabilities"]} <= {"ok", "warn", "fail"}


def test_live_host_detection_does_not_crash() -> None:
    p = detect(cpuid=cpuid_source_for(HostRoots()), aesm_socket=None)
    assert isinstance(p.can_run_enclaves, bool)
    assert p.findings[-1].capability == "Can run enclaves"


@pytest.mark.skipif(not Path("/proc/self/auxv").exists(), reason="no /proc/self/auxv")
def test_auxv_file_agrees_with_getauxval() -> None:
    import ctypes

    from confnode.platform import parse_auxv

    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    auxv = parse_auxv(Path("/proc/self/auxv").read_bytes())
    # AT_PAGESZ and AT_HWCAP2 (glibc substitutes its own AT_HWCAP on x86, so that one differs).
    for key in (6, 26):
        assert auxv.get(key, 0) == libc.getauxval(key)


def test_cpuinfo_only_without_sgx_flag_names_both_causes(make_tree: MakeTree) -> None:
    tree = make_tree("no-sgx")
    p = detect(tree.roots, cpuid=None, aesm_socket=None)
    assert p.cpu.sgx is False and p.cpu.sgx1 is False
    status, found, fix = finding(p, "SGX (CPU)")
    assert status is Status.FAIL
    assert "no 'sgx' flag" in found and fix and "firmware" in fix


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux")
def test_native_can_be_forced_for_mounted_roots(make_tree: MakeTree) -> None:
    from confnode.platform import CpuidUnavailable, NativeCpuid

    tree = make_tree("dcsv3-no-cpuid")
    assert cpuid_source_for(tree.roots) is None
    try:
        NativeCpuid()
    except CpuidUnavailable:
        pytest.skip("no native CPUID here")
    assert isinstance(cpuid_source_for(tree.roots, native=True), NativeCpuid)


@pytest.mark.parametrize("cpuinfo", ["", "processor\t: 0\nvendor_id\t: GenuineIntel\n"])
def test_cpuinfo_without_flags_is_unknown_not_disabled(make_tree: MakeTree, cpuinfo: str) -> None:
    tree = make_tree("dcsv3")
    Path(tree.roots.proc, "cpuinfo").write_text(cpuinfo)
    p = run(tree)
    assert p.cpu.sgx is True  # from CPUID
    assert p.cpu.sgx_enabled is None and p.cpu.flc is True
    assert p.can_run_enclaves
