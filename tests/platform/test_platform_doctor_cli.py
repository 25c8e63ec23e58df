"""`confnode doctor` over the fake host trees, through click's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from platform_trees import GIB, SPECS, Tree

from confnode.cli._common import console, main_group

MakeTree = Callable[[str], Tree]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps table cells at 80 columns when not on a terminal; widen it so rows stay whole."""
    monkeypatch.setattr(console, "_width", 250)


def doctor(tree: Tree, *extra: str) -> Result:
    runner = CliRunner()
    return runner.invoke(main_group, ["doctor", *tree.cli_args(), *extra])


EXPECTED_EXIT = {
    "no-sgx": 1,
    "dcsv2": 0,
    "dcsv3": 0,
    "two-socket": 0,
    "legacy-isgx": 0,
    "no-flc": 1,
    "old-kernel-fsgsbase": 0,
    "bios-disabled": 1,
    "dcsv3-no-cpuid": 0,
    "dcap-1.41": 0,
}


def test_every_tree_has_an_expected_exit_code() -> None:
    assert set(EXPECTED_EXIT) == set(SPECS)


@pytest.mark.parametrize("name", sorted(EXPECTED_EXIT))
def test_exit_codes_and_json(make_tree: MakeTree, name: str) -> None:
    tree = make_tree(name)
    table = doctor(tree)
    assert table.exit_code == EXPECTED_EXIT[name], table.output
    assert "SGX node capabilities" in table.output
    as_json = doctor(tree, "--json")
    assert as_json.exit_code == EXPECTED_EXIT[name]
    data = json.loads(as_json.output)
    assert data["can_run_enclaves"] is (EXPECTED_EXIT[name] == 0)
    assert data["labels"]["confnode.io/sgx"] == ("true" if EXPECTED_EXIT[name] == 0 else "false")
    assert {"capabilities", "epc", "labels", "cpu", "driver"} <= set(data)


def test_no_sgx_table_says_so(make_tree: MakeTree) -> None:
    result = doctor(make_tree("no-sgx"))
    assert result.exit_code == 1
    out = result.output
    assert "not supported by this CPU" in out
    assert "No usable SGX on this node" in out
    assert "confnode sim" in out
    assert "confnode.io/sgx=false" in out
    assert "EPC per NUMA node" not in out


def test_dcsv2_table_content(make_tree: MakeTree) -> None:
    result = doctor(make_tree("dcsv2"))
    assert result.exit_code == 0
    out = result.output
    assert "/dev/sgx/enclave (dcap)" in out
    assert "28 MiB on 1 NUMA node (from cpuid)" in out
    assert "not enabled for userspace" in out  # kernel 5.4
    assert "Linux >= 5.9" in out
    assert "This node can run SGX enclaves." in out
    assert "confnode.io/sgx.epc-mib=28" in out


def test_two_socket_table_and_json(make_tree: MakeTree) -> None:
    tree = make_tree("two-socket")
    out = doctor(tree).output
    assert "EPC per NUMA node" in out
    assert out.count("512 GiB") >= 2
    data = json.loads(doctor(tree, "--json").output)
    assert data["epc"] == {
        "total_bytes": 1024 * GIB,
        "source": "sysfs",
        "by_numa": {"0": 512 * GIB, "1": 512 * GIB},
        "sections": [
            {"base": "0x8000000000", "size": 512 * GIB, "property": 2, "numa_node": None},
            {"base": "0x18000000000", "size": 512 * GIB, "property": 2, "numa_node": None},
        ],
    }
    assert data["cpu"]["cpuid_source"].endswith("dev/cpu/0/cpuid")  # read from the tree
    assert data["labels"]["confnode.io/sgx.epc-mib"] == "1048576"


def test_no_flc_fix_is_shown(make_tree: MakeTree) -> None:
    result = doctor(make_tree("no-flc"))
    assert result.exit_code == 1
    assert "SGX Launch Control" in result.output
    assert "fail" in result.output


def test_nfd_features_file(make_tree: MakeTree, tmp_path: Path) -> None:
    tree = make_tree("dcsv3")
    target = tmp_path / "confnode-sgx"
    result = doctor(tree, "--json", "--nfd-features-file", str(target))
    assert result.exit_code == 0
    labels = json.loads(result.output)["labels"]
    lines = [line for line in target.read_text().splitlines() if not line.startswith("#")]
    assert dict(line.split("=", 1) for line in lines) == labels
    table = doctor(tree, "--nfd-features-file", str(target))
    assert "NFD features written to" in table.output


def test_nfd_features_file_unwritable(make_tree: MakeTree, tmp_path: Path) -> None:
    result = doctor(make_tree("dcsv3"), "--nfd-features-file", str(tmp_path / "no" / "file"))
    assert result.exit_code == 3
    assert "cannot write NFD features" in result.output


def test_aesm_socket_option(make_tree: MakeTree, tmp_path: Path) -> None:
    tree = make_tree("dcsv3")
    data = json.loads(doctor(tree, "--json", "--aesm-socket", str(tmp_path / "none")).output)
    assert data["aesm_socket"] is None
    assert data["labels"]["confnode.io/sgx.aesm"] == "false"


def test_root_options_are_hidden() -> None:
    result = CliRunner().invoke(main_group, ["doctor", "--help"])
    assert result.exit_code == 0
    assert "--json" in result.output and "--nfd-features-file" in result.output
    assert "--dev-root" not in result.output


def test_live_host_runs() -> None:
    result = CliRunner().invoke(main_group, ["doctor", "--json", "--aesm-socket", "/nonexistent"])
    assert result.exit_code in (0, 1)
    data = json.loads(result.output)
    assert (result.exit_code == 0) is data["can_run_enclaves"]


def test_cpuid_none_falls_back_to_cpuinfo(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv3")
    data = json.loads(doctor(tree, "--json", "--cpuid", "none").output)
    assert data["cpu"]["cpuid_source"] is None
    assert data["cpu"]["sgx1"] is None
    assert "confnode.io/sgx.sgx1" not in data["labels"]
    assert data["can_run_enclaves"] is True


def test_cpuid_driver_reads_the_tree(make_tree: MakeTree) -> None:
    tree = make_tree("two-socket")
    data = json.loads(doctor(tree, "--json", "--cpuid", "driver").output)
    assert data["cpu"]["cpuid_source"].endswith("dev/cpu/0/cpuid")
    assert data["cpu"]["aex_notify"] is True
