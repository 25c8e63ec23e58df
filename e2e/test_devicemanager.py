"""``confnode device-plugin`` under the kubelet's own device manager.

``e2e/.bin/devicemanager-harness`` (``e2e/cluster/cmd/devicemanager-harness``) runs
``k8s.io/kubernetes/pkg/kubelet/cm/devicemanager`` v1.37.2 in a temporary device-plugin directory,
starts the plugin, and reports what a kubelet would see: capacity/allocatable (``GetCapacity``),
what the runtime gets for admitted pods (``Allocate`` + ``GetDeviceRunContainerOptions``: device
specs, mounts, envs), re-registration after a plugin restart and after a kubelet restart (new
manager on the same directory, allocations from its checkpoint), and the node-status PATCHes the
plugin sent to the harness's API-server stub.

The node agent reads fake host trees (``tests/platform/platform_trees.py``: device nodes, sysfs
EPC, CPUID), so Allocate hands out real device paths rather than simulation's ``SGX_MODE=SIM``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s import BIN, REPO, confnode_command, require_binaries

sys.path.insert(0, str(REPO / "tests" / "platform"))
from platform_trees import GIB, SPECS, build_tree, sgx_cpuid

EPC = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
ENCLAVE = "sgx.intel.com/enclave"
PROVISION = "sgx.intel.com/provision"
AESM = "confnode.io/aesm-socket"
ENCLAVE_SPECS = {
    ("/dev/sgx_enclave", "/dev/sgx_enclave", "rw"),
    ("/dev/sgx/enclave", "/dev/sgx_enclave", "rw"),
}
PROVISION_SPECS = {
    ("/dev/sgx_provision", "/dev/sgx_provision", "rw"),
    ("/dev/sgx/provision", "/dev/sgx_provision", "rw"),
}
#: What the webhook makes of an opted-in app pod, and the quote-helper DaemonSet's pod.
APP = {EPC: "10", ENCLAVE: "1", AESM: "1"}
QUOTE_HELPER = {ENCLAVE: "1", PROVISION: "1"}

#: A 64 GiB two-socket node (the largest per-MiB size, devices mode) in the layout of dcsv3.
SPEC_64GIB = dataclasses.replace(
    SPECS["dcsv3"],
    cpuid=sgx_cpuid(
        sgx2=True,
        attributes=0xB6,
        sections=((0x1_0000_0000, 32 * GIB, 1), (0x9_0000_0000, 32 * GIB, 1)),
    ),
    sysfs_epc={0: 32 * GIB, 1: 32 * GIB},
    numa_nodes=2,
)


def _pod(name: str, limits: dict[str, str]) -> str:
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in limits.items())


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes, so not pytest's long tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="cn-dm-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_harness(
    directory: Path, spec_name: str, spec: Any, resources: int, pods: dict[str, dict[str, str]]
) -> tuple[dict[str, Any], Path]:
    require_binaries("devicemanager-harness")
    tree = build_tree(directory / "host", spec)
    argv = [str(BIN / "devicemanager-harness"), "-dir", str(directory / "dp")]
    argv += ["-resources", str(resources)]
    for name, limits in pods.items():
        argv += ["-pod", _pod(name, limits)]
    argv += ["--", *confnode_command(), "device-plugin", *tree.cli_args(), "--cpuid=driver"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"{spec_name}: harness failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout), tree.aesm_socket.parent


def _specs(container: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(d["container_path"], d["host_path"], d["permissions"]) for d in container["devices"]}


def _mounts(container: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(m["container_path"], m["host_path"], m["read_only"]) for m in container["mounts"]]


@pytest.fixture(scope="module")
def devices_node() -> Iterator[tuple[dict[str, Any], Path]]:
    with tempfile.TemporaryDirectory(prefix="cn-dm-", dir="/tmp") as name:
        yield run_harness(
            Path(name), "64 GiB", SPEC_64GIB, 4, {"app": APP, "quote-helper": QUOTE_HELPER}
        )


@pytest.fixture(scope="module")
def node_status_node() -> Iterator[tuple[dict[str, Any], Path]]:
    with tempfile.TemporaryDirectory(prefix="cn-dm-", dir="/tmp") as name:
        yield run_harness(
            Path(name),
            "1 TiB",
            dataclasses.replace(SPECS["two-socket"], aesm=True),
            3,
            {"app": APP, "quote-helper": QUOTE_HELPER},
        )


def test_64gib_node_registers_every_pool_with_the_real_device_manager(
    devices_node: tuple[dict[str, Any], Path],
) -> None:
    result, _ = devices_node
    expected = {EPC: 65536, ENCLAVE: 110, PROVISION: 110, AESM: 110}
    assert result["registered"]["capacity"] == expected
    assert result["registered"]["allocatable"] == expected
    assert result["node_patches"] is None  # devices mode writes nothing to the API server


def test_opted_in_app_gets_devices_mount_and_aesm_address(
    devices_node: tuple[dict[str, Any], Path],
) -> None:
    """EPC and enclave both hand out the enclave nodes; the kubelet merges them by path."""
    result, aesm_dir = devices_node
    app = next(c for c in result["containers"] if c["pod"] == "app")
    assert "error" not in app
    assert len(app["allocated"][EPC]) == 10
    # GetPreferredAllocation kept the container on one NUMA node (IDs 0-32767 are node 0).
    numa = {int(i) >= 32768 for i in app["allocated"][EPC]}
    assert len(numa) == 1
    assert _specs(app) == ENCLAVE_SPECS
    assert len(app["devices"]) == len(ENCLAVE_SPECS)
    assert _mounts(app) == [("/var/run/aesmd", str(aesm_dir), True)]
    assert app["envs"] == {"SGX_AESM_ADDR": "1", "SGX_EPC_MIB": "10"}


def test_quote_helper_gets_provision_and_never_the_aesm_address(
    devices_node: tuple[dict[str, Any], Path],
) -> None:
    """Defect 6: SGX_AESM_ADDR would switch the helper's DCAP library to out-of-process mode."""
    result, _ = devices_node
    helper = next(c for c in result["containers"] if c["pod"] == "quote-helper")
    assert _specs(helper) == ENCLAVE_SPECS | PROVISION_SPECS
    assert helper["mounts"] == []
    assert helper["envs"] == {}


def test_plugin_restart_reregisters_and_admits_new_pods(
    devices_node: tuple[dict[str, Any], Path],
) -> None:
    result, _ = devices_node
    stopped = result["plugin_stopped"]
    assert set(stopped["allocatable"].values()) == {0}  # Unhealthy while the plugin is gone
    assert stopped["capacity"] == result["registered"]["capacity"]
    assert result["plugin_restarted"]["allocatable"] == result["registered"]["allocatable"]
    after = result["after_plugin_restart"]
    assert "error" not in after and len(after["allocated"][EPC]) == 10
    first = next(c for c in result["containers"] if c["pod"] == "app")
    assert not set(after["allocated"][EPC]) & set(first["allocated"][EPC])


def test_kubelet_restart_wipes_sockets_and_the_plugin_registers_again(
    devices_node: tuple[dict[str, Any], Path],
) -> None:
    result, aesm_dir = devices_node
    assert result["kubelet_restarted"]["allocatable"] == result["registered"]["allocatable"]
    after = result["after_kubelet_restart"]
    assert "error" not in after and _mounts(after) == [("/var/run/aesmd", str(aesm_dir), True)]
    # Allocations survive in the kubelet's checkpoint, with the plugin's Allocate responses.
    restored = {c["pod"]: c for c in result["checkpointed"]}
    first = next(c for c in result["containers"] if c["pod"] == "app")
    assert restored["app"]["allocated"] == first["allocated"]
    assert restored["app"]["envs"] == first["envs"]


def test_1tib_node_publishes_epc_through_node_status_and_serves_the_enclave_pool(
    node_status_node: tuple[dict[str, Any], Path],
) -> None:
    """Defect 4: with EPC in node status, the enclave pool still carries /dev/sgx_enclave."""
    result, aesm_dir = node_status_node
    assert result["registered"]["capacity"] == {ENCLAVE: 110, PROVISION: 110, AESM: 110}
    status = next(p for p in result["node_patches"] if p["path"].endswith("/status"))
    assert status["path"] == "/api/v1/nodes/harness-node/status"
    assert status["content_type"] == "application/json-patch+json"
    patch = status["body"]
    if isinstance(patch, str):  # Go encodes a RawMessage that is not JSON as base64
        patch = json.loads(base64.b64decode(patch))
    assert patch == [
        {"op": "add", "path": "/status/capacity/" + EPC.replace("/", "~1"), "value": "1048576"}
    ]
    app = next(c for c in result["containers"] if c["pod"] == "app")
    # EPC is not a device-plugin resource here: the device manager leaves it to the scheduler.
    assert set(app["allocated"]) == {ENCLAVE, AESM}
    assert _specs(app) == ENCLAVE_SPECS
    assert _mounts(app) == [("/var/run/aesmd", str(aesm_dir), True)]
    assert app["envs"] == {"SGX_AESM_ADDR": "1"}
    helper = next(c for c in result["containers"] if c["pod"] == "quote-helper")
    assert _specs(helper) == ENCLAVE_SPECS | PROVISION_SPECS
    assert helper["mounts"] == [] and helper["envs"] == {}


def test_without_a_quote_helper_socket_the_aesm_pool_is_unhealthy(
    short_dir: Path,
) -> None:
    """Opted-in pods can only be admitted where a quote helper serves."""
    spec = dataclasses.replace(SPEC_64GIB, aesm=False)
    require_binaries("devicemanager-harness")
    tree = build_tree(short_dir / "host", spec)
    argv = [str(BIN / "devicemanager-harness"), "-dir", str(short_dir / "dp"), "-resources", "4"]
    argv += ["-timeout", "5s"]
    argv += ["-pod", _pod("app", APP), "--", *confnode_command(), "device-plugin"]
    argv += [*tree.cli_args(), "--cpuid=driver"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    # The AESM pool never becomes allocatable, so registration never completes in the harness.
    assert done.returncode == 1
    assert "timed out waiting for registration" in done.stderr
    assert f"{AESM}:0" in done.stderr.split("allocatable map[")[1].split("]")[0]
