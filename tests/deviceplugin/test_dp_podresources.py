"""The PodResources walk: equal to protobuf's own parse, in any field order, off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode._proto.podresources.v1 import api_pb2
from confnode.deviceplugin import (
    AKS_EPC_RESOURCE,
    ENCLAVE_RESOURCE,
    INTEL_EPC_RESOURCE,
    MIB,
    DevicePluginAgent,
    EpcAllocation,
    SgxNode,
    epc_allocations,
)
from confnode.deviceplugin import agent as agent_module
from confnode.errors import InvalidInput
from confnode.metrics import NodeAgentMetrics

UNITS = {AKS_EPC_RESOURCE: MIB, INTEL_EPC_RESOURCE: 1}


def reference(data: bytes, unit_bytes: Mapping[str, int]) -> list[EpcAllocation]:
    """What the agent computed before: protobuf's parse, then Python objects per device (minus
    series of zero bytes: an EPC entry without IDs holds nothing)."""
    response = api_pb2.ListPodResourcesResponse.FromString(data)
    totals: dict[tuple[str, str, str, str], int] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                unit = unit_bytes.get(devices.resource_name)
                if unit is not None:
                    key = (pod.namespace, pod.name, container.name, devices.resource_name)
                    totals[key] = totals.get(key, 0) + len(devices.device_ids) * unit
    return [EpcAllocation(*key, bytes=value) for key, value in sorted(totals.items()) if value]


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_resources = st.sampled_from([AKS_EPC_RESOURCE, INTEL_EPC_RESOURCE, ENCLAVE_RESOURCE, "x/gpu", ""])
_devices = st.builds(
    lambda resource, ids, numa: api_pb2.ContainerDevices(
        resource_name=resource,
        device_ids=ids,
        topology=None if numa is None else api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=numa)]),
    ),
    _resources,
    # IDs of 128+ bytes take the multi-byte length paths of the walk
    st.lists(st.text(max_size=6) | st.text(min_size=64, max_size=140), max_size=5),
    st.none() | st.integers(0, 300),
)
_containers = st.builds(
    lambda name, devices, cpus: api_pb2.ContainerResources(
        name=name, devices=devices, cpu_ids=cpus, memory=[api_pb2.ContainerMemory(size=1 << 40)]
    ),
    _names,
    st.lists(_devices, max_size=4),
    st.lists(st.integers(0, 1 << 40), max_size=3),
)
_responses = st.builds(
    lambda pods: api_pb2.ListPodResourcesResponse(pod_resources=pods),
    st.lists(
        st.builds(
            lambda name, namespace, containers: api_pb2.PodResources(
                name=name, namespace=namespace, containers=containers
            ),
            _names,
            _names,
            st.lists(_containers, max_size=3),
        ),
        max_size=4,
    ),
)


@given(_responses)
def test_walk_equals_protobufs_own_parse(response: api_pb2.ListPodResourcesResponse) -> None:
    data = response.SerializeToString()
    assert epc_allocations(data, UNITS) == reference(data, UNITS)


@settings(max_examples=300)
@given(_responses, st.data())
def test_damaged_responses_raise_invalid_input_only(
    response: api_pb2.ListPodResourcesResponse, data: st.DataObject
) -> None:
    wire = bytearray(response.SerializeToString())
    if wire:
        cut = data.draw(st.integers(0, len(wire)))
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 255))
        wire = wire[:cut]
    try:
        epc_allocations(bytes(wire), UNITS)
    except InvalidInput:
        pass


def _wrap(field: int, body: bytes) -> bytes:
    """A length-delimited field (bodies here are < 128 bytes)."""
    assert len(body) < 0x80
    return bytes([field << 3 | 2, len(body)]) + body


def test_names_after_containers_and_repeated_names_use_the_last_value() -> None:
    """Protobuf allows any field order and merges repeated scalars as last-wins."""
    devices = api_pb2.ContainerDevices(resource_name="other/x", device_ids=["7"])
    container = api_pb2.ContainerResources(devices=[devices]).SerializeToString()
    container += _wrap(1, b"app")  # container name after its devices
    # the device entry's resource name twice: the later one (EPC) wins
    container += _wrap(
        2, _wrap(1, b"other/x") + _wrap(2, b"1") + _wrap(1, AKS_EPC_RESOURCE.encode())
    )
    pod = _wrap(3, container) + _wrap(1, b"old-name") + _wrap(2, b"prod") + _wrap(1, b"web-1")
    data = _wrap(1, pod) + bytes([0x10, 0x05])  # plus an unknown varint field at the top
    assert epc_allocations(data, UNITS) == [
        EpcAllocation("prod", "web-1", "app", AKS_EPC_RESOURCE, MIB)
    ]
    assert epc_allocations(data, UNITS) == reference(data, UNITS)


def test_kubelet_shape_one_entry_per_device_with_topology() -> None:
    """The kubelet's ContainerDevices per device (pod_devices.go), as on a busy node."""
    pod = api_pb2.PodResources(name="big", namespace="ns")
    container = pod.containers.add(name="c")
    for i in range(1000):
        container.devices.add(
            resource_name=AKS_EPC_RESOURCE,
            device_ids=[str(i)],
            topology=api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=i % 2)]),
        )
    container.devices.add(resource_name=ENCLAVE_RESOURCE, device_ids=["enclave-3"])
    data = api_pb2.ListPodResourcesResponse(pod_resources=[pod]).SerializeToString()
    assert epc_allocations(data, {AKS_EPC_RESOURCE: MIB}) == [
        EpcAllocation("ns", "big", "c", AKS_EPC_RESOURCE, 1000 * MIB)
    ]


def test_malformed_wire_names_the_problem() -> None:
    with pytest.raises(InvalidInput, match="past its message"):
        epc_allocations(b"\x0a\x05ab", UNITS)
    with pytest.raises(InvalidInput, match="wire type 3"):
        epc_allocations(b"\x0b", UNITS)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        epc_allocations(_wrap(1, _wrap(1, b"\xff")), UNITS)


class _Source:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def list_response(self) -> bytes:
        return self.data


async def test_agent_walks_the_response_off_the_event_loop(
    plugin_dir: Path, config_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = api_pb2.PodResources(name="p", namespace="n")
    pod.containers.add(name="c").devices.add(resource_name=AKS_EPC_RESOURCE, device_ids=["1", "2"])
    data = api_pb2.ListPodResourcesResponse(pod_resources=[pod]).SerializeToString()
    threads: list[threading.Thread] = []

    def recording(*args: Any) -> list[EpcAllocation]:
        threads.append(threading.current_thread())
        return epc_allocations(*args)

    monkeypatch.setattr(agent_module, "epc_allocations", recording)
    metrics = NodeAgentMetrics()
    agent = DevicePluginAgent(
        SgxNode.simulated_node(28 * MIB),
        config_for(plugin_dir),
        metrics=metrics,
        pod_resources=_Source(data),
    )
    await agent.refresh_allocations()
    assert threads and threads[0] is not threading.main_thread()
    labels = {"namespace": "n", "pod": "p", "container": "c", "resource": AKS_EPC_RESOURCE}
    assert metrics.registry.get_sample_value("confnode_epc_allocated_bytes", labels) == 2 * MIB

    agent.pod_resources = _Source(b"\x0a\x09truncated")
    await agent.refresh_allocations()  # a malformed response is counted, not raised
    assert metrics.registry.get_sample_value("confnode_pod_resources_errors_total") == 1
