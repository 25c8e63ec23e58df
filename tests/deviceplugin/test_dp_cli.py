"""``confnode device-plugin`` and ``confnode plugin probe`` through click, and the platform link."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from confnode.cli import main_group
from confnode.deviceplugin import (
    AKS_EPC_RESOURCE,
    MIB,
    AgentConfig,
    DevicePluginAgent,
    DeviceResource,
    SgxNode,
    detect_node,
    probe_plugin,
)
from confnode.deviceplugin.model import socket_name
from confnode.deviceplugin.server import PluginEndpoint
from confnode.platform import HostRoots


class AgentThread:
    """Runs an agent on its own event loop, as the CLI process would, while click probes it."""

    def __init__(self, agent: DevicePluginAgent) -> None:
        self.agent = agent
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Task[None] | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.agent.run())
        self.loop.call_soon(self.ready.set)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:
            self.loop.close()

    def __enter__(self) -> AgentThread:
        self.thread.start()
        self.ready.wait(5)
        socket = self.agent.endpoints[0].socket_path
        for _ in range(500):
            if socket.exists():
                break
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_plan_only_json_for_a_terabyte_node(runner: CliRunner) -> None:
    result = runner.invoke(
        main_group,
        ["device-plugin", "--sim-epc", "1TiB", "--sim-numa-nodes", "2", "--plan-only", "--json"],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["mode"] == "node-status"
    assert plan["node_status_capacity"] == {AKS_EPC_RESOURCE: "1048576"}
    assert all(r["list_and_watch_bytes"] < 4 * MIB for r in plan["resources"])


def test_plan_table_for_a_small_node(runner: CliRunner) -> None:
    result = runner.invoke(main_group, ["device-plugin", "--sim-epc", "28MiB", "--plan-only"])
    assert result.exit_code == 0, result.output
    assert "mode devices" in result.output and "28 MiB" in result.output


def test_bad_size_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main_group, ["device-plugin", "--sim-epc", "lots", "--plan-only"])
    assert result.exit_code == 2
    assert "not a byte count" in result.output


def test_node_status_mode_outside_a_cluster_fails_clearly(runner: CliRunner, plugin_dir) -> None:
    result = runner.invoke(
        main_group,
        ["device-plugin", "--sim-epc", "256GiB", "--device-plugin-dir", str(plugin_dir)],
        env={"KUBERNETES_SERVICE_HOST": ""},
    )
    assert result.exit_code == 3
    assert "publishing node capacity/labels needs the API server" in result.output
    assert "--kubeconfig" in result.output


def test_probe_a_running_plugin(runner: CliRunner, plugin_dir, config_for) -> None:
    node = SgxNode.simulated_node(64 * MIB, numa_nodes=2)
    with AgentThread(DevicePluginAgent(node, config_for(plugin_dir))):
        socket = plugin_dir / socket_name(AKS_EPC_RESOURCE)
        as_json = runner.invoke(
            main_group, ["plugin", "probe", "--socket", str(socket), "--allocate", "4", "--json"]
        )
        table = runner.invoke(main_group, ["plugin", "probe", "--socket", str(socket)])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["options"]["get_preferred_allocation_available"] is True
    assert report["devices"] == {
        "count": 64,
        "healthy": 64,
        "unhealthy": 0,
        "numa_nodes": [0, 1],
        "with_topology": 64,
    }
    assert 0 < report["list_and_watch"]["message_bytes"] < 2000
    assert report["list_and_watch"]["fits"] is True
    assert report["preferred_allocation"] == ["0", "1", "2", "3"]
    response = report["allocate"]["response"]["container_responses"][0]
    assert response["envs"] == {"SGX_MODE": "SIM", "SGX_EPC_MIB": "4"}
    assert table.exit_code == 0, table.output
    assert "% of 4 MiB" in table.output and "SGX_EPC_MIB" in table.output


def test_probe_without_a_plugin_is_an_infrastructure_error(runner: CliRunner, plugin_dir) -> None:
    result = runner.invoke(
        main_group, ["plugin", "probe", "--socket", str(plugin_dir / "none.sock")]
    )
    assert result.exit_code == 3
    assert "no device plugin socket" in result.output


@pytest.fixture
def oversize_endpoint(plugin_dir: Path) -> Iterator[PluginEndpoint]:
    """A per-MiB plugin for 256 GiB: what a naive plugin would send (4.9 MB)."""
    node = SgxNode.simulated_node(256 << 30)
    yield PluginEndpoint(DeviceResource.epc(node), plugin_dir)


async def test_probe_measures_lists_the_kubelet_would_reject(oversize_endpoint) -> None:
    await oversize_endpoint.serve()
    try:
        result = await probe_plugin(oversize_endpoint.socket_path, timeout=20)
    finally:
        await oversize_endpoint.stop()
    assert result.device_count == 262144
    assert result.message_bytes == 4_869_626  # kubernetes-sgx.md §2.5
    assert not result.fits_kubelet_limit
    assert result.to_dict()["list_and_watch"]["fits"] is False


def test_detected_host_tree_feeds_the_plan(tmp_path: Path) -> None:
    """confnode.platform detection on a fake two-socket in-kernel-driver host."""
    (tmp_path / "dev").mkdir()
    for name in ("sgx_enclave", "sgx_provision"):
        (tmp_path / "dev" / name).write_text("")
    for numa in (0, 1):
        x86 = tmp_path / "sys" / "devices" / "system" / "node" / f"node{numa}" / "x86"
        x86.mkdir(parents=True)
        (x86 / "sgx_total_bytes").write_text(str(512 << 30))
    roots = HostRoots(
        dev=tmp_path / "dev", sys=tmp_path / "sys", proc=tmp_path / "proc", boot=tmp_path / "boot"
    )
    node, driver, _labels = detect_node(roots)
    assert node.epc_by_numa == ((0, 512 << 30), (1, 512 << 30))
    assert node.enclave_devices == ("/dev/sgx_enclave",)  # host paths, not the tree's
    assert node.provision_devices == ("/dev/sgx_provision",)
    assert driver.present()
    (tmp_path / "dev" / "sgx_enclave").unlink()
    assert not driver.present()


def test_detected_labels_report_the_aesm_socket_only_when_it_was_looked_for(
    tmp_path: Path,
) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "sgx_enclave").write_text("")
    x86 = tmp_path / "sys" / "devices" / "system" / "node" / "node0" / "x86"
    x86.mkdir(parents=True)
    (x86 / "sgx_total_bytes").write_text(str(64 << 20))
    roots = HostRoots(
        dev=tmp_path / "dev", sys=tmp_path / "sys", proc=tmp_path / "proc", boot=tmp_path / "boot"
    )
    socket = tmp_path / "aesmd" / "aesm.socket"
    assert "confnode.io/sgx.aesm" not in detect_node(roots).labels  # unknown, not "false"
    assert detect_node(roots, aesm_socket=socket).labels["confnode.io/sgx.aesm"] == "false"
    socket.parent.mkdir()
    socket.write_text("")
    detected = detect_node(roots, aesm_socket=socket)
    assert detected.labels["confnode.io/sgx.aesm"] == "true"

    # The agent's published labels follow the socket after start-up.
    config = AgentConfig(
        plugin_dir=tmp_path, aesm_socket=socket, node_name="n1", node_labels=detected.labels
    )
    agent = DevicePluginAgent(detected.node, config, patcher=_NoPatcher())
    assert agent.current_labels()["confnode.io/sgx.aesm"] == "true"
    socket.unlink()
    assert agent.current_labels()["confnode.io/sgx.aesm"] == "false"


class _NoPatcher:
    async def patch_capacity(self, node_name: str, capacity: object) -> None:
        raise AssertionError("not called")

    async def patch_labels(self, node_name: str, labels: object) -> None:
        raise AssertionError("not called")
