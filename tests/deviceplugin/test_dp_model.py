"""Pure device-plugin decisions: sizes, modes, Allocate payloads, preferred allocations."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.deviceplugin import (
    AESM_RESOURCE,
    AKS_EPC_RESOURCE,
    ENCLAVE_RESOURCE,
    INTEL_EPC_RESOURCE,
    KUBELET_MAX_MESSAGE_BYTES,
    MIB,
    PROVISION_RESOURCE,
    AgentConfig,
    DeviceResource,
    EpcMode,
    ResourceKind,
    SgxNode,
    UnknownDeviceError,
    choose_epc_mode,
    epc_capacity,
    parse_size,
    per_unit_list_size,
    plan_resources,
)
from confnode.errors import InvalidInput

GIB = 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("28MiB", 28 * MIB),
        ("28Mi", 28 * MIB),
        ("256GiB", 256 * GIB),
        ("256G", 256 * GIB),
        ("1TiB", 1 << 40),
        ("4096", 4096),
        (" 512 KiB ", 512 << 10),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "1.5GiB", "-3", "12 parsecs", "1XiB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(text)


def test_list_sizes_match_the_reference_table() -> None:
    """kubernetes-sgx.md §2.5: healthy per-MiB lists with decimal IDs, no topology."""
    expected = {168: 2_578, 4096: 68_522, 32768: 578_714, 65536: 1_168_538, 262144: 4_869_626}
    for mib, size in expected.items():
        assert per_unit_list_size(((0, mib),), health="Healthy", topology=False) == size
    assert per_unit_list_size(((0, 65536),), health="Unhealthy", topology=False) == 1_299_610


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=4),
    healthy=st.booleans(),
)
def test_computed_size_equals_the_serialized_message(sizes: list[int], healthy: bool) -> None:
    node = SgxNode.from_numa_map({n: mib * MIB for n, mib in enumerate(sizes)}, simulated=True)
    if node.epc_total < MIB:
        return
    resource = DeviceResource.epc(node)
    message = resource.list_response(healthy=healthy)
    wire = message.SerializeToString()
    assert resource.list_size(healthy=healthy) == message.ByteSize() == len(wire)
    assert resource.list_bytes(healthy=healthy) == wire  # the hand-encoded fast path
    assert len(message.devices) == sum(sizes)
    pool = DeviceResource.pool(ResourceKind.ENCLAVE, node, ENCLAVE_RESOURCE, 1 + sum(sizes) % 300)
    pool_wire = pool.list_response(healthy=healthy).SerializeToString()
    assert pool.list_bytes(healthy=healthy) == pool_wire
    assert pool.list_size(healthy=healthy) == len(pool_wire)


@pytest.mark.parametrize(
    ("epc", "numa", "mode"),
    [
        (28 * MIB, 1, EpcMode.DEVICES),  # DC1s_v2
        (168 * MIB, 1, EpcMode.DEVICES),  # DC8_v2
        (64 * GIB, 2, EpcMode.DEVICES),  # DC16s_v3
        (128 * GIB, 1, EpcMode.NODE_STATUS),  # 2.4 MB: over the 50 % budget
        (256 * GIB, 2, EpcMode.NODE_STATUS),  # DC48s_v3 would be 116 % of the limit
        (1 << 40, 2, EpcMode.NODE_STATUS),
    ],
)
def test_mode_switches_above_the_budget(epc: int, numa: int, mode: EpcMode) -> None:
    assert choose_epc_mode(SgxNode.simulated_node(epc, numa), AKS_EPC_RESOURCE) is mode


def test_byte_counted_resource_is_always_node_status() -> None:
    node = SgxNode.simulated_node(28 * MIB)
    assert choose_epc_mode(node, INTEL_EPC_RESOURCE) is EpcMode.NODE_STATUS
    with pytest.raises(InvalidInput):
        DeviceResource.epc(node, INTEL_EPC_RESOURCE)
    assert epc_capacity(node, INTEL_EPC_RESOURCE) == {INTEL_EPC_RESOURCE: str(28 * MIB)}


@pytest.mark.parametrize("epc", [28 * MIB, 256 * GIB, 1 << 40, (1 << 40) + 5 * MIB + 123])
def test_every_plan_fits_the_kubelet_limit_and_keeps_mib_precision(epc: int) -> None:
    node = SgxNode.simulated_node(epc, 2 if epc > GIB else 1)
    plan = plan_resources(node, AgentConfig())
    for resource in plan.resources:
        assert resource.list_size(healthy=False) < KUBELET_MAX_MESSAGE_BYTES
    advertised = (
        int(plan.capacity[AKS_EPC_RESOURCE])
        if plan.capacity
        else next(r.count for r in plan.resources if r.kind is ResourceKind.EPC)
    )
    assert advertised == epc // MIB  # schedulable to the MiB, never rounded up


def test_forcing_devices_on_a_huge_node_is_refused() -> None:
    from confnode.deviceplugin import DevicePluginError

    node = SgxNode.simulated_node(256 * GIB)
    with pytest.raises(DevicePluginError, match="4194304"):
        plan_resources(node, AgentConfig(epc_mode=EpcMode.DEVICES))


def test_provision_resource_only_where_provisioning_exists() -> None:
    no_prov = SgxNode.from_numa_map({0: 28 * MIB}, ("/dev/isgx",))
    names = [r.name for r in plan_resources(no_prov, AgentConfig(aesm_socket=None)).resources]
    assert names == [AKS_EPC_RESOURCE, ENCLAVE_RESOURCE]
    with_prov = SgxNode.from_numa_map({0: 28 * MIB}, ("/dev/sgx_enclave",), ("/dev/sgx_provision",))
    names = [r.name for r in plan_resources(with_prov, AgentConfig(aesm_socket=None)).resources]
    assert names == [AKS_EPC_RESOURCE, ENCLAVE_RESOURCE, PROVISION_RESOURCE]


@pytest.mark.parametrize("epc", [28 * MIB, 64 * GIB, 1 << 40])
def test_every_mode_serves_the_enclave_pool_and_the_aesm_opt_in(epc: int) -> None:
    """One pod spec (EPC by name + sgx.intel.com/enclave: 1) fits small and large nodes alike."""
    node = SgxNode.from_numa_map({0: epc}, ("/dev/sgx_enclave",), ("/dev/sgx_provision",))
    plan = plan_resources(node, AgentConfig(aesm_socket=Path("/run/aesmd/aesm.socket")))
    by_name = {r.name: r for r in plan.resources}
    assert plan.mode is (EpcMode.DEVICES if epc <= 64 * GIB else EpcMode.NODE_STATUS)
    assert (AKS_EPC_RESOURCE in by_name) is (plan.mode is EpcMode.DEVICES)
    assert by_name[ENCLAVE_RESOURCE].count == 110
    assert by_name[AESM_RESOURCE].kind is ResourceKind.AESM
    assert by_name[AESM_RESOURCE].aesm_host_dir == "/run/aesmd"


def test_allocate_maps_existing_nodes_and_legacy_paths() -> None:
    dcap = SgxNode.from_numa_map(
        {0: 28 * MIB}, ("/dev/sgx/enclave", "/dev/sgx_enclave"), ("/dev/sgx/provision",)
    )
    epc = DeviceResource.epc(dcap)
    response = epc.allocate(["0", "1"])
    pairs = [(d.container_path, d.host_path) for d in response.devices]
    # both exist on the host: each maps to itself, no duplicate alias
    assert pairs == [
        ("/dev/sgx/enclave", "/dev/sgx/enclave"),
        ("/dev/sgx_enclave", "/dev/sgx_enclave"),
    ]
    assert dict(response.envs) == {"SGX_EPC_MIB": "2"}
    assert not response.mounts
    legacy = SgxNode.from_numa_map({0: 28 * MIB}, ("/dev/isgx",))
    response = DeviceResource.epc(legacy).allocate(["3"])
    assert [(d.container_path, d.host_path) for d in response.devices] == [
        ("/dev/isgx", "/dev/isgx")
    ]


@pytest.mark.parametrize("simulated", [False, True])
def test_only_the_aesm_resource_mounts_the_socket_and_sets_sgx_aesm_addr(simulated: bool) -> None:
    """Defect 6: SGX_AESM_ADDR flips the DCAP library and Open Enclave to out-of-process quoting,
    so device resources never set it; only the opt-in resource does."""
    node = SgxNode.from_numa_map(
        {0: 28 * MIB}, ("/dev/sgx_enclave",), ("/dev/sgx_provision",), simulated=simulated
    )
    devices = [
        (DeviceResource.epc(node), "0"),
        (DeviceResource.pool(ResourceKind.ENCLAVE, node, ENCLAVE_RESOURCE, 2), "enclave-1"),
        (DeviceResource.pool(ResourceKind.PROVISION, node, PROVISION_RESOURCE, 2), "provision-0"),
    ]
    for resource, device_id in devices:
        response = resource.allocate([device_id])
        assert not response.mounts
        assert "SGX_AESM_ADDR" not in response.envs
    aesm = DeviceResource.aesm(node, AESM_RESOURCE, 3, "/run/aesmd")
    assert aesm.device_ids() == ["aesm-0", "aesm-1", "aesm-2"]
    response = aesm.allocate(["aesm-2"])
    assert [(m.container_path, m.host_path, m.read_only) for m in response.mounts] == [
        ("/var/run/aesmd", "/run/aesmd", True)
    ]
    assert dict(response.envs) == {"SGX_AESM_ADDR": "1"}
    assert not response.devices
    with pytest.raises(UnknownDeviceError):
        aesm.allocate(["aesm-3"])


def test_enclave_pool_allocate_has_no_epc_env_and_no_topology() -> None:
    node = SgxNode.from_numa_map({0: GIB, 1: GIB}, ("/dev/sgx_enclave",), ("/dev/sgx_provision",))
    pool = DeviceResource.pool(ResourceKind.ENCLAVE, node, ENCLAVE_RESOURCE, 5)
    assert pool.device_ids() == [f"enclave-{i}" for i in range(5)]
    assert not pool.prefers_allocation
    assert not any(d.HasField("topology") for d in pool.list_response(healthy=True).devices)
    response = pool.allocate(["enclave-4"])
    assert "SGX_EPC_MIB" not in response.envs
    assert {d.host_path for d in response.devices} == {"/dev/sgx_enclave"}
    with pytest.raises(UnknownDeviceError):
        pool.allocate(["enclave-5"])
    with pytest.raises(UnknownDeviceError):
        pool.allocate(["provision-0"])


def test_preferred_allocation_best_fit_and_spill() -> None:
    node = SgxNode.from_numa_map({0: 10 * MIB, 1: 10 * MIB}, ("/dev/sgx_enclave",))
    epc = DeviceResource.epc(node)
    everything = epc.device_ids()
    # both nodes fit: the fuller fit wins on ties by node number, result is contiguous
    assert epc.preferred(everything, [], 4) == ["0", "1", "2", "3"]
    # node 0 has 3 free, node 1 has 10: 5 fits only node 1
    free = ["7", "8", "9"] + [str(i) for i in range(10, 20)]
    assert epc.preferred(free, [], 5) == ["10", "11", "12", "13", "14"]
    # best fit: 3 fits both; the node with fewer free devices is used, keeping node 1 whole
    assert epc.preferred(free, [], 3) == ["7", "8", "9"]
    # nothing fits one node: fill from must-include's node first, then the fullest
    chosen = epc.preferred(free, ["8"], 12)
    assert chosen[0] == "8" and len(chosen) == 12 and len(set(chosen)) == 12
    assert {"7", "9"} <= set(chosen)
    # must-include alone satisfies the size
    assert epc.preferred(free, ["9", "12"], 2) == ["9", "12"]
    # IDs the plugin never advertised are ignored among the available ones
    assert epc.preferred(["bogus", "3"], [], 1) == ["3"]
    with pytest.raises(UnknownDeviceError):
        epc.preferred(free, ["bogus"], 1)


def test_single_numa_node_has_nil_topology_and_no_preference() -> None:
    node = SgxNode.from_numa_map({0: 0, 1: 28 * MIB}, ("/dev/sgx_enclave",))
    epc = DeviceResource.epc(node)
    assert not node.multi_numa and not epc.prefers_allocation
    listing = epc.list_response(healthy=True)
    assert not any(d.HasField("topology") for d in listing.devices)
    assert epc.numa_of("5") is None


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    per_node=st.lists(st.integers(1, 40), min_size=1, max_size=3),
)
def test_preferred_allocation_properties(data: st.DataObject, per_node: list[int]) -> None:
    node = SgxNode.from_numa_map({n: mib * MIB for n, mib in enumerate(per_node)}, ("/dev/x",))
    epc = DeviceResource.epc(node)
    ids = epc.device_ids()
    available = data.draw(st.lists(st.sampled_from(ids), unique=True, min_size=1))
    must = data.draw(st.lists(st.sampled_from(available), unique=True, max_size=3))
    size = data.draw(st.integers(len(must), len(available)))
    chosen = epc.preferred(available, must, size)
    assert len(chosen) == len(set(chosen)) == size
    assert set(must) <= set(chosen) <= set(available)
    free_by_node: dict[int | None, int] = {}
    for device_id in available:
        free_by_node[epc.numa_of(device_id)] = free_by_node.get(epc.numa_of(device_id), 0) + 1
    must_nodes = {epc.numa_of(d) for d in must}
    one_node_fits = any(
        count >= size and must_nodes <= {numa} for numa, count in free_by_node.items()
    )
    if one_node_fits and size > 0:
        assert len({epc.numa_of(d) for d in chosen}) == 1


@pytest.mark.parametrize("device_id", ["1" * 5000, "9" * 20, "enclave-" + "1" * 5000])
def test_absurdly_long_device_ids_are_unknown_not_a_crash(device_id: str) -> None:
    node = SgxNode.from_numa_map({0: 28 * MIB, 1: 28 * MIB}, ("/dev/sgx_enclave",))
    epc = DeviceResource.epc(node)
    pool = DeviceResource.pool(ResourceKind.ENCLAVE, node, ENCLAVE_RESOURCE, 5)
    for resource in (epc, pool):
        with pytest.raises(UnknownDeviceError):
            resource.allocate([device_id])
        with pytest.raises(UnknownDeviceError):
            resource.preferred([], [device_id], 1)
        assert resource.preferred([device_id], [], 1) == []
