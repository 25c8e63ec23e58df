"""The agent against a kubelet stub over real gRPC on unix sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import pytest

from confnode._proto.deviceplugin.v1beta1 import api_pb2
from confnode.deviceplugin import (
    AESM_RESOURCE,
    AKS_EPC_RESOURCE,
    ENCLAVE_RESOURCE,
    MIB,
    PROVISION_RESOURCE,
    DevicePathsProbe,
    DevicePluginAgent,
    DevicePluginError,
    EpcMode,
    PluginSocketInUse,
    SgxNode,
)
from confnode.deviceplugin.model import socket_name
from confnode.metrics import NodeAgentMetrics
from confnode.platform import HostRoots

EPC_SOCK = socket_name(AKS_EPC_RESOURCE)
ENCLAVE_SOCK = socket_name(ENCLAVE_RESOURCE)
PROVISION_SOCK = socket_name(PROVISION_RESOURCE)
AESM_SOCK = socket_name(AESM_RESOURCE)


async def first_list(stub: object) -> api_pb2.ListAndWatchResponse:
    call = stub.ListAndWatch(api_pb2.Empty())  # type: ignore[attr-defined]
    try:
        return await asyncio.wait_for(call.read(), 2)
    finally:
        call.cancel()


@pytest.fixture
def host_tree(tmp_path: Path) -> tuple[HostRoots, SgxNode, Path]:
    """An in-kernel-driver host (enclave + provision nodes) and a live quote-helper socket."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "sgx_enclave").write_text("")
    (dev / "sgx_provision").write_text("")
    node = SgxNode.from_numa_map(
        {0: 32 * MIB, 1: 32 * MIB}, ("/dev/sgx_enclave",), ("/dev/sgx_provision",)
    )
    return HostRoots(dev=str(dev)), node, dev


async def test_serves_before_registering_with_the_documented_fields(
    kubelet, plugin_dir, sim_node, config_for, run_agent
):
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir))
    async with run_agent(agent):
        regs = await kubelet.wait_registrations(3)
    by_name = {r.request.resource_name: r for r in regs}
    assert set(by_name) == {AKS_EPC_RESOURCE, ENCLAVE_RESOURCE, PROVISION_RESOURCE}
    epc = by_name[AKS_EPC_RESOURCE]
    assert epc.request.version == "v1beta1"
    assert epc.request.endpoint == EPC_SOCK  # a file name, joined by the kubelet
    assert "/" not in epc.request.endpoint
    assert epc.endpoint_existed  # the socket was served before Register
    # single NUMA node: nothing to prefer
    assert not epc.request.options.get_preferred_allocation_available
    assert not epc.request.options.pre_start_required
    # sockets are removed on shutdown, so a stale file never lingers
    assert not (plugin_dir / EPC_SOCK).exists()


async def test_list_and_watch_and_allocate_in_simulation(
    kubelet, plugin_dir, sim_node, config_for, run_agent
):
    async with run_agent(DevicePluginAgent(sim_node, config_for(plugin_dir))):
        await kubelet.wait_registrations(2)
        async with kubelet.dial(EPC_SOCK) as plugin:
            options = await plugin.GetDevicePluginOptions(api_pb2.Empty())
            listing = await first_list(plugin)
            request = api_pb2.AllocateRequest()
            request.container_requests.add(devices_ids=["0", "1", "2"])
            request.container_requests.add(devices_ids=["27"])
            response = await plugin.Allocate(request)
        async with kubelet.dial(PROVISION_SOCK) as plugin:
            request = api_pb2.AllocateRequest()
            request.container_requests.add(devices_ids=["provision-3"])
            provision = await plugin.Allocate(request)
    assert not options.get_preferred_allocation_available
    assert [d.ID for d in listing.devices] == [str(i) for i in range(28)]
    assert {d.health for d in listing.devices} == {"Healthy"}
    assert not any(d.HasField("topology") for d in listing.devices)  # nil, not empty
    assert len(response.container_responses) == 2  # one answer per container request
    first, second = response.container_responses
    assert dict(first.envs) == {"SGX_MODE": "SIM", "SGX_EPC_MIB": "3"}
    assert dict(second.envs) == {"SGX_MODE": "SIM", "SGX_EPC_MIB": "1"}
    assert not first.devices and not first.mounts  # simulation: no device nodes
    assert dict(provision.container_responses[0].envs) == {"SGX_MODE": "SIM"}
    assert not provision.container_responses[0].devices


async def allocate(
    kubelet: object, sock: str, *device_ids: str
) -> api_pb2.ContainerAllocateResponse:
    async with kubelet.dial(sock) as plugin:  # type: ignore[attr-defined]
        request = api_pb2.AllocateRequest()
        request.container_requests.add(devices_ids=list(device_ids))
        return (await plugin.Allocate(request)).container_responses[0]


async def test_allocate_payloads_on_a_real_driver(
    kubelet, plugin_dir, host_tree, config_for, run_agent
):
    roots, node, _ = host_tree
    aesm_dir = plugin_dir / "aesmd"  # short path: unix socket names are limited to 107 bytes
    aesm_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(aesm_dir / "aesm.socket"))
    listener.listen()
    config = config_for(plugin_dir, aesm_socket=aesm_dir / "aesm.socket")
    agent = DevicePluginAgent(node, config, driver=DevicePathsProbe(roots, node.enclave_devices))
    try:
        async with run_agent(agent):
            await kubelet.wait_registrations(4)
            epc = await allocate(kubelet, EPC_SOCK, *(str(i) for i in range(10)))
            enclave = await allocate(kubelet, ENCLAVE_SOCK, "enclave-3")
            provision = await allocate(kubelet, PROVISION_SOCK, "provision-0")
            aesm = await allocate(kubelet, AESM_SOCK, "aesm-0")
    finally:
        listener.close()

    devices = {(d.container_path, d.host_path, d.permissions) for d in epc.devices}
    assert devices == {
        ("/dev/sgx_enclave", "/dev/sgx_enclave", "rw"),
        ("/dev/sgx/enclave", "/dev/sgx_enclave", "rw"),  # legacy in-container path
    }
    assert {(d.container_path, d.host_path, d.permissions) for d in enclave.devices} == devices
    # the socket exists, yet device resources carry no AESM mount or variable (defect 6)
    for response in (epc, enclave, provision):
        assert not response.mounts
        assert "SGX_AESM_ADDR" not in response.envs
    assert dict(epc.envs) == {"SGX_EPC_MIB": "10"}
    # provision only through its own resource, and it carries no enclave node
    assert "/dev/sgx_provision" not in {d.host_path for d in epc.devices}
    assert {(d.container_path, d.host_path) for d in provision.devices} == {
        ("/dev/sgx_provision", "/dev/sgx_provision"),
        ("/dev/sgx/provision", "/dev/sgx_provision"),
    }
    # the opt-in resource: the socket directory and SGX_AESM_ADDR, no device nodes
    assert [(m.container_path, m.host_path, m.read_only) for m in aesm.mounts] == [
        ("/var/run/aesmd", str(aesm_dir), True)
    ]
    assert dict(aesm.envs) == {"SGX_AESM_ADDR": "1"}
    assert not aesm.devices


async def test_aesm_pool_is_healthy_only_while_the_quote_helper_socket_exists(
    kubelet, plugin_dir, host_tree, config_for, run_agent
):
    """Opted-in pods are admitted only where a quote helper serves (allocatable follows health)."""
    roots, node, _ = host_tree
    aesm_socket = plugin_dir / "aesm.socket"
    config = config_for(plugin_dir, aesm_socket=aesm_socket, aesm_limit=3)
    agent = DevicePluginAgent(node, config, driver=DevicePathsProbe(roots, node.enclave_devices))
    async with run_agent(agent):
        await kubelet.wait_registrations(4)
        async with kubelet.dial(AESM_SOCK) as plugin:
            stream = plugin.ListAndWatch(api_pb2.Empty())
            try:
                absent = await asyncio.wait_for(stream.read(), 2)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await allocate(kubelet, AESM_SOCK, "aesm-0")
                listener = socket.socket(socket.AF_UNIX)
                listener.bind(str(aesm_socket))
                present = await asyncio.wait_for(stream.read(), 2)
                listener.close()
            finally:
                stream.cancel()
        async with kubelet.dial(ENCLAVE_SOCK) as plugin:
            enclave = await first_list(plugin)
    assert [d.ID for d in absent.devices] == ["aesm-0", "aesm-1", "aesm-2"]
    assert {d.health for d in absent.devices} == {"Unhealthy"}
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no quote-helper socket" in (refused.value.details() or "")
    assert {d.health for d in present.devices} == {"Healthy"}
    assert {d.health for d in enclave.devices} == {"Healthy"}  # enclaves need no helper


async def test_unknown_device_ids_fail_the_allocate_call(
    kubelet, plugin_dir, sim_node, config_for, run_agent
):
    async with run_agent(DevicePluginAgent(sim_node, config_for(plugin_dir))):
        await kubelet.wait_registrations(2)
        async with kubelet.dial(EPC_SOCK) as plugin:
            for bad in ("28", "-1", "07", "", "+1", "²", "١", "enclave-0", "x" * 200):
                request = api_pb2.AllocateRequest()
                request.container_requests.add(devices_ids=["1", bad])
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await plugin.Allocate(request)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # and the plugin keeps serving
            listing = await first_list(plugin)
    assert len(listing.devices) == 28


async def test_topology_and_preferred_allocation_over_grpc(
    kubelet, plugin_dir, host_tree, config_for, run_agent
):
    _, node, _ = host_tree
    agent = DevicePluginAgent(node, config_for(plugin_dir))
    async with run_agent(agent):
        regs = await kubelet.wait_registrations(2)
        async with kubelet.dial(EPC_SOCK) as plugin:
            listing = await first_list(plugin)
            request = api_pb2.PreferredAllocationRequest()
            # node 0 has 4 free devices, node 1 has 20: a request of 8 fits only node 1
            free = [str(i) for i in range(28, 32)] + [str(i) for i in range(32, 52)]
            request.container_requests.add(available_deviceIDs=free, allocation_size=8)
            # must-include on node 0 and 3 wanted: stay on node 0
            request.container_requests.add(
                available_deviceIDs=free, must_include_deviceIDs=["30"], allocation_size=3
            )
            answer = await plugin.GetPreferredAllocation(request)
    epc = next(r for r in regs if r.request.resource_name == AKS_EPC_RESOURCE)
    assert epc.request.options.get_preferred_allocation_available
    numa = {d.ID: [n.ID for n in d.topology.nodes] for d in listing.devices}
    assert numa["0"] == [0] and numa["31"] == [0] and numa["32"] == [1] and numa["63"] == [1]
    first, second = (list(r.deviceIDs) for r in answer.container_responses)
    assert first == [str(i) for i in range(32, 40)]
    assert second[0] == "30" and len(second) == 3
    assert all(numa[d] == [0] for d in second)


async def test_driver_disappearance_turns_devices_unhealthy(
    kubelet, plugin_dir, host_tree, config_for, run_agent
):
    roots, node, dev = host_tree
    metrics = NodeAgentMetrics()
    driver = DevicePathsProbe(roots, node.enclave_devices)
    agent = DevicePluginAgent(node, config_for(plugin_dir), driver=driver, metrics=metrics)
    async with run_agent(agent):
        await kubelet.wait_registrations(2)
        async with kubelet.dial(EPC_SOCK) as plugin:
            stream = plugin.ListAndWatch(api_pb2.Empty())
            try:
                before = await asyncio.wait_for(stream.read(), 2)
                (dev / "sgx_enclave").unlink()
                during = await asyncio.wait_for(stream.read(), 2)
                request = api_pb2.AllocateRequest()
                request.container_requests.add(devices_ids=["0"])
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await plugin.Allocate(request)
                unhealthy_gauge = metrics.registry.get_sample_value(
                    "confnode_device_plugin_devices",
                    {"resource": AKS_EPC_RESOURCE, "health": "Unhealthy"},
                )
                (dev / "sgx_enclave").write_text("")
                after = await asyncio.wait_for(stream.read(), 2)
            finally:
                stream.cancel()
    assert {d.health for d in before.devices} == {"Healthy"}
    assert {d.health for d in during.devices} == {"Unhealthy"}
    assert len(during.devices) == len(before.devices) == 64  # full list every time
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert unhealthy_gauge == 64
    assert {d.health for d in after.devices} == {"Healthy"}


async def test_hundred_kubelet_restarts_each_reregister_within_one_second(
    kubelet, plugin_dir, sim_node, config_for, run_agent
):
    metrics = NodeAgentMetrics()
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir), metrics=metrics)
    delays: list[float] = []
    async with run_agent(agent):
        await kubelet.wait_registrations(3)
        for round_ in range(1, 101):
            started = await kubelet.restart()
            regs = await kubelet.wait_registrations(3 * (round_ + 1), timeout=2.0)
            fresh = regs[-3:]
            assert {r.request.resource_name for r in fresh} == {
                AKS_EPC_RESOURCE,
                ENCLAVE_RESOURCE,
                PROVISION_RESOURCE,
            }
            assert all(r.endpoint_existed for r in fresh)
            delays.append(max(r.at for r in fresh) - started)
            if round_ % 25 == 0:  # the re-served socket really answers
                async with kubelet.dial(EPC_SOCK) as plugin:
                    assert len((await first_list(plugin)).devices) == 28
    assert max(delays) < 1.0, f"slowest re-registration took {max(delays):.3f} s"
    assert agent.kubelet_restarts == 100
    assert metrics.registry.get_sample_value("confnode_kubelet_restarts_total") == 100
    assert (
        metrics.registry.get_sample_value(
            "confnode_device_plugin_registrations_total", {"resource": AKS_EPC_RESOURCE}
        )
        == 101
    )


async def test_registration_is_retried_until_the_kubelet_accepts(
    kubelet, plugin_dir, sim_node, config_for, run_agent
):
    kubelet.reject_with = grpc.StatusCode.INVALID_ARGUMENT
    metrics = NodeAgentMetrics()
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir), metrics=metrics)
    async with run_agent(agent):
        await asyncio.sleep(0.1)
        failures = metrics.registry.get_sample_value(
            "confnode_device_plugin_registration_failures_total", {"resource": AKS_EPC_RESOURCE}
        )
        registered_while_rejected = metrics.registry.get_sample_value(
            "confnode_device_plugin_registered", {"resource": AKS_EPC_RESOURCE}
        )
        kubelet.reject_with = None
        await kubelet.wait_registrations(3, timeout=3.0)
        await asyncio.sleep(0.05)
        registered = metrics.registry.get_sample_value(
            "confnode_device_plugin_registered", {"resource": AKS_EPC_RESOURCE}
        )
    assert failures is not None and failures >= 1
    assert registered_while_rejected == 0
    assert registered == 1


async def test_refuses_a_socket_another_process_serves(plugin_dir, sim_node, config_for):
    squatter = socket.socket(socket.AF_UNIX)
    squatter.bind(str(plugin_dir / EPC_SOCK))
    squatter.listen()
    try:
        agent = DevicePluginAgent(sim_node, config_for(plugin_dir))
        with pytest.raises(PluginSocketInUse):
            await agent.run()
        assert (plugin_dir / EPC_SOCK).exists()  # the live process keeps its socket
    finally:
        squatter.close()


async def test_unremovable_socket_path_is_a_plugin_error(plugin_dir, sim_node, config_for):
    (plugin_dir / EPC_SOCK).mkdir()  # not a socket and cannot be unlinked
    agent = DevicePluginAgent(sim_node, config_for(plugin_dir))
    with pytest.raises(DevicePluginError, match="cannot remove the stale socket"):
        await agent.run()
    assert (plugin_dir / EPC_SOCK).is_dir()


async def test_stale_socket_file_is_replaced(kubelet, plugin_dir, sim_node, config_for, run_agent):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(plugin_dir / EPC_SOCK))
    stale.close()  # file left behind, nobody listening
    async with run_agent(DevicePluginAgent(sim_node, config_for(plugin_dir))):
        await kubelet.wait_registrations(2)
        async with kubelet.dial(EPC_SOCK) as plugin:
            assert len((await first_list(plugin)).devices) == 28


async def test_large_node_registers_the_enclave_pool_not_per_mib_devices(
    kubelet, plugin_dir, config_for, run_agent
):
    node = SgxNode.simulated_node(1 << 40, numa_nodes=2)

    class Patcher:
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, str]]] = []

        async def patch_capacity(self, node_name, capacity):
            self.calls.append((node_name, dict(capacity)))

    patcher = Patcher()
    config = config_for(plugin_dir, node_name="dc-node-1", repatch_interval=0.02)
    agent = DevicePluginAgent(node, config, patcher=patcher)
    assert agent.plan.mode is EpcMode.NODE_STATUS
    async with run_agent(agent):
        regs = await kubelet.wait_registrations(2)
        async with kubelet.dial(socket_name(ENCLAVE_RESOURCE)) as plugin:
            listing = await first_list(plugin)
        await asyncio.sleep(0.1)
    assert {r.request.resource_name for r in regs} == {ENCLAVE_RESOURCE, PROVISION_RESOURCE}
    assert len(listing.devices) == 110 and listing.ByteSize() < 4096
    assert patcher.calls[0] == ("dc-node-1", {AKS_EPC_RESOURCE: str(1 << 20)})
    assert len(patcher.calls) >= 2  # re-patched periodically, not once
