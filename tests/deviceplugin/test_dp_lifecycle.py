"""The node agent's lifecycle on a node: another plugin serving its names, the kubelet's probes,
and node-status EPC capacity when the SGX devices go away (issue 11, minor defects)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import httpx
import pytest
from click.testing import CliRunner

from confnode.cli._common import main_group
from confnode.deviceplugin import (
    AKS_EPC_RESOURCE,
    ENCLAVE_RESOURCE,
    PROVISION_RESOURCE,
    ApiServerConfig,
    ApiServerNodeStatusPatcher,
    DevicePluginAgent,
    ResourceServedElsewhere,
    SgxNode,
    capacity_removal_patch,
    foreign_plugin_sockets,
)
from confnode.metrics import on_loop

INTEL_ENCLAVE_SOCKET = "sgx.intel.com-enclave.sock"  # Intel's framework: <domain>-<name>.sock


@pytest.fixture
def intel_plugin(plugin_dir: Path) -> Iterator[Path]:
    """A live listener where Intel's SGX plugin serves sgx.intel.com/enclave."""
    path = plugin_dir / INTEL_ENCLAVE_SOCKET
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    yield path
    listener.close()


# --- another plugin serving the same resource name ---


def test_a_live_foreign_socket_for_our_resource_is_found(plugin_dir, intel_plugin) -> None:
    names = [AKS_EPC_RESOURCE, ENCLAVE_RESOURCE, PROVISION_RESOURCE]
    assert foreign_plugin_sockets(plugin_dir, names) == {ENCLAVE_RESOURCE: intel_plugin}
    # Another name (e.g. --enclave-resource example.com/enclave) does not collide.
    assert foreign_plugin_sockets(plugin_dir, ["example.com/enclave"]) == {}


def test_a_stale_foreign_socket_file_does_not_count(plugin_dir) -> None:
    """An uninstalled plugin leaves its socket file behind; nobody serves it."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(plugin_dir / INTEL_ENCLAVE_SOCKET))
    stale.close()
    assert foreign_plugin_sockets(plugin_dir, [ENCLAVE_RESOURCE]) == {}


async def test_the_agent_refuses_to_start_beside_intels_plugin(
    plugin_dir, intel_plugin, sim_node, config_for
) -> None:
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir))
    with pytest.raises(ResourceServedElsewhere, match=r"sgx\.intel\.com/enclave \(on "):
        await agent.run()
    # It served nothing that the kubelet could dial and register.
    assert not list(plugin_dir.glob("confnode-*.sock"))


async def test_a_plugin_appearing_later_stops_the_agent(
    kubelet, plugin_dir, sim_node, config_for
) -> None:
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir))
    task = asyncio.create_task(agent.run())
    await kubelet.wait_registrations(3)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(plugin_dir / "sgx.intel.com-provision.sock"))
    listener.listen()
    try:
        with pytest.raises(ResourceServedElsewhere, match=r"sgx\.intel\.com/provision"):
            await asyncio.wait_for(task, 5)
    finally:
        listener.close()


def test_cli_refusal_is_one_line_with_a_hint(plugin_dir, intel_plugin) -> None:
    result = CliRunner().invoke(
        main_group,
        ["device-plugin", "--sim-epc", "28MiB", "--device-plugin-dir", str(plugin_dir)],
    )
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if "another device plugin" in line]
    assert len(errors) == 1, result.output
    assert "sgx.intel.com/enclave" in errors[0]
    assert "one SGX device plugin per node" in result.output


# --- health endpoints ---


async def test_ready_once_every_resource_is_registered(
    kubelet, plugin_dir, sim_node, config_for, run_agent
) -> None:
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir))
    assert agent.readiness() == "starting"
    await kubelet.stop()
    async with run_agent(agent):
        await asyncio.sleep(0.05)
        problem = agent.readiness()
        assert problem is not None and "kubelet" in problem, problem
        await kubelet.start()
        await kubelet.wait_registrations(3)
        for _ in range(100):
            if agent.readiness() is None:
                break
            await asyncio.sleep(0.01)
        assert agent.readiness() is None


async def test_ready_reports_what_the_kubelet_has_not_accepted(
    kubelet, plugin_dir, sim_node, config_for, run_agent
) -> None:
    kubelet.reject_with = grpc.StatusCode.INVALID_ARGUMENT
    async with run_agent(DevicePluginAgent(sim_node, config_for(plugin_dir))) as agent:
        await asyncio.sleep(0.1)
        problem = agent.readiness()
    assert problem is not None
    assert problem.startswith("not registered with the kubelet yet: ")
    assert AKS_EPC_RESOURCE in problem


def test_a_stuck_loop_fails_the_liveness_check() -> None:
    loop = asyncio.new_event_loop()
    release = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        live = on_loop(lambda: loop, lambda: None, timeout=0.2)
        assert live() is None
        loop.call_soon_threadsafe(release.wait, 5)  # blocks the loop
        assert live() == "event loop did not answer within 0.2 s"
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert on_loop(lambda: None, lambda: None)() == "starting"
    assert on_loop(lambda: loop, lambda: None, before_start=None)() is None  # closed loop


def test_agent_serves_healthz_and_readyz_on_the_metrics_port(plugin_dir) -> None:
    """The CLI wires the probes: ready stays 503 without a kubelet, live answers 200."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "confnode",
            "device-plugin",
            "--sim-epc=28MiB",
            f"--device-plugin-dir={plugin_dir}",
            f"--metrics-port={port}",
            "--metrics-address=127.0.0.1",
            f"--aesm-socket={plugin_dir / 'none' / 'aesm.socket'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        live = ready = None
        for _ in range(200):
            try:
                live = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.TransportError:
                threading.Event().wait(0.05)
                continue
            if live.status_code == 200 and "kubelet" in ready.text:
                break
            threading.Event().wait(0.05)
    finally:
        process.terminate()
        process.wait(10)
    assert live is not None and ready is not None
    assert (live.status_code, live.text) == (200, "ok\n")
    assert ready.status_code == 503
    assert f"no kubelet socket at {plugin_dir / 'kubelet.sock'}" in ready.text


# --- node-status capacity when SGX goes away ---


class _Driver:
    def __init__(self) -> None:
        self.here = True

    def present(self) -> bool:
        return self.here


class _Patcher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.changed = asyncio.Event()

    async def patch_capacity(self, node_name: str, capacity: Mapping[str, str]) -> None:
        self.calls.append(("add", dict(capacity)))
        self.changed.set()

    async def remove_capacity(self, node_name: str, names: object) -> None:
        self.calls.append(("remove", sorted(names)))  # type: ignore[call-overload]
        self.changed.set()

    async def patch_labels(self, node_name: str, labels: Mapping[str, str]) -> None:
        raise AssertionError("no labels configured")

    async def next_call(self) -> tuple[str, object]:
        await asyncio.wait_for(self.changed.wait(), 5)
        self.changed.clear()
        return self.calls[-1]


async def test_capacity_goes_when_sgx_goes_and_comes_back_with_it(
    plugin_dir, config_for, run_agent
) -> None:
    node = SgxNode.simulated_node(1 << 40)
    driver, patcher = _Driver(), _Patcher()
    # A long re-patch interval: every call after the first comes from the devices changing.
    config = config_for(plugin_dir, node_name="n1", repatch_interval=3600.0)
    agent = DevicePluginAgent(node, config, driver=driver, patcher=patcher)
    async with run_agent(agent):
        assert await patcher.next_call() == ("add", {AKS_EPC_RESOURCE: str(1 << 20)})
        driver.here = False
        assert await patcher.next_call() == ("remove", [AKS_EPC_RESOURCE])
        driver.here = True
        assert await patcher.next_call() == ("add", {AKS_EPC_RESOURCE: str(1 << 20)})
    assert len(patcher.calls) == 3


def test_removal_is_a_merge_patch_that_tolerates_absent_members() -> None:
    assert capacity_removal_patch([AKS_EPC_RESOURCE]) == {
        "status": {
            "capacity": {AKS_EPC_RESOURCE: None},
            "allocatable": {AKS_EPC_RESOURCE: None},
        }
    }


async def test_patcher_sends_the_removal_to_the_status_subresource() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    patcher = ApiServerNodeStatusPatcher(
        ApiServerConfig(server="https://api.test", token="t"),
        transport=httpx.MockTransport(handler),
    )
    try:
        await patcher.remove_capacity("n1", [AKS_EPC_RESOURCE])
    finally:
        await patcher.aclose()
    (request,) = seen
    assert request.method == "PATCH"
    assert request.url.path == "/api/v1/nodes/n1/status"
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(request.content) == capacity_removal_patch([AKS_EPC_RESOURCE])
