"""Node-agent metrics: PodResources stub over gRPC, quote-helper reachability, HTTP exposition."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import httpx
import pytest
from dp_grpc import podresources_grpc as api_pb2_grpc

from confnode._proto.podresources.v1 import api_pb2
from confnode.deviceplugin import (
    AKS_EPC_RESOURCE,
    MIB,
    DevicePluginAgent,
    GrpcPodResourcesClient,
    SgxNode,
    quote_helper_reachable,
)
from confnode.errors import InfrastructureError
from confnode.metrics import NodeAgentMetrics, serve_metrics


class PodResourcesStub(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.response = api_pb2.ListPodResourcesResponse()
        self.calls = 0
        self.fail = False

    async def List(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.fail:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rejected by rate limit")
        return self.response


def _pod(namespace: str, name: str, containers: dict[str, list[tuple[str, list[str]]]]):
    pod = api_pb2.PodResources(name=name, namespace=namespace)
    for container, devices in containers.items():
        entry = pod.containers.add(name=container)
        for resource, ids in devices:
            entry.devices.add(resource_name=resource, device_ids=ids)
    return pod


@pytest.fixture
async def pod_resources(plugin_dir: Path):
    stub = PodResourcesStub()
    server = grpc.aio.server()
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(stub, server)
    path = plugin_dir / "pod-resources.sock"
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    yield stub, path
    await server.stop(None)


async def test_epc_allocated_per_container_from_pod_resources(
    pod_resources, plugin_dir, config_for
) -> None:
    stub, path = pod_resources
    stub.response.pod_resources.extend(
        [
            _pod(
                "prod",
                "enclave-app-7d9",
                {
                    "app": [(AKS_EPC_RESOURCE, ["0", "1", "2", "3"]), ("nvidia.com/gpu", ["g0"])],
                    "sidecar": [(AKS_EPC_RESOURCE, ["9"])],
                },
            ),
            _pod("kube-system", "aesmd-x", {"aesmd": [("sgx.intel.com/provision", ["p-0"])]}),
        ]
    )
    metrics = NodeAgentMetrics()
    node = SgxNode.simulated_node(28 * MIB)
    agent = DevicePluginAgent(
        node,
        config_for(plugin_dir),
        metrics=metrics,
        pod_resources=GrpcPodResourcesClient(path, timeout=2.0),
    )
    await agent.refresh_allocations()
    sample = metrics.registry.get_sample_value
    labels = {"namespace": "prod", "pod": "enclave-app-7d9", "resource": AKS_EPC_RESOURCE}
    assert sample("confnode_epc_allocated_bytes", {**labels, "container": "app"}) == 4 * MIB
    assert sample("confnode_epc_allocated_bytes", {**labels, "container": "sidecar"}) == MIB
    series = [
        s
        for family in metrics.registry.collect()
        if family.name == "confnode_epc_allocated_bytes"
        for s in family.samples
    ]
    assert len(series) == 2  # GPU and provision devices are not EPC

    # the pod ended: its series disappear on the next refresh
    del stub.response.pod_resources[0]
    await agent.refresh_allocations()
    assert sample("confnode_epc_allocated_bytes", {**labels, "container": "app"}) is None

    stub.fail = True
    await agent.refresh_allocations()
    assert sample("confnode_pod_resources_errors_total") == 1
    assert stub.calls == 3


async def test_client_reports_a_missing_kubelet(plugin_dir: Path) -> None:
    client = GrpcPodResourcesClient(plugin_dir / "absent.sock", timeout=0.5)
    with pytest.raises(InfrastructureError, match="PodResources List"):
        await client.list_response()


async def test_quote_helper_reachability(plugin_dir: Path) -> None:
    path = plugin_dir / "aesm.socket"
    assert not await quote_helper_reachable(path)
    server = await asyncio.start_unix_server(lambda r, w: w.close(), path=str(path))
    try:
        assert await quote_helper_reachable(path)
    finally:
        server.close()
        await server.wait_closed()
    # a socket file nobody listens on is not reachable
    stale = socket.socket(socket.AF_UNIX)
    path.unlink(missing_ok=True)
    stale.bind(str(path))
    stale.close()
    assert not await quote_helper_reachable(path)


def test_metrics_are_served_over_http_from_a_private_registry() -> None:
    metrics = NodeAgentMetrics()
    other = NodeAgentMetrics()  # a second registry: no "Duplicated timeseries"
    metrics.set_epc_capacity(((0, 64 * MIB), (1, 32 * MIB)))
    metrics.set_registered(AKS_EPC_RESOURCE, True)
    metrics.kubelet_restarted()
    metrics.set_quote_helper_up(True)
    other.set_quote_helper_up(False)
    server, thread = serve_metrics(
        metrics, 0, "127.0.0.1", live=lambda: None, ready=lambda: "not registered: x"
    )
    try:
        port = server.server_port
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        live = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    finally:
        server.shutdown()
        thread.join(5)
    assert (live.status_code, live.text) == (200, "ok\n")
    assert (ready.status_code, ready.text) == (503, "not registered: x\n")
    assert 'confnode_epc_capacity_bytes{numa_node="1"} 3.3554432e+07' in text
    assert f'confnode_device_plugin_registered{{resource="{AKS_EPC_RESOURCE}"}} 1.0' in text
    assert "confnode_kubelet_restarts_total 1.0" in text
    assert "confnode_quote_helper_up 1.0" in text
    assert "python_gc_objects_collected_total" not in text  # not the global registry


def test_docs_metrics_table_matches_the_registry() -> None:
    """docs/metrics.md's node-agent table names every family with its type and labels."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    section = docs.read_text().split("## Node agent", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, tuple[str, frozenset[str]]] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`confnode_"):
            labels = frozenset(
                part.split()[0].strip("`")
                for part in cells[2].split(",")
                if part.strip().startswith("`")
            )
            documented[cells[0].strip("`")] = (cells[1], labels)

    metrics = NodeAgentMetrics()

    class Alloc:
        namespace, pod, container, resource, bytes = "ns", "p", "c", AKS_EPC_RESOURCE, MIB

    metrics.set_epc_capacity([(0, MIB)])
    metrics.set_mode(AKS_EPC_RESOURCE, "devices")
    metrics.set_allocations([Alloc()])
    metrics.set_devices(AKS_EPC_RESOURCE, count=1, healthy=True)
    metrics.registration_result(AKS_EPC_RESOURCE, True)
    metrics.registration_result(AKS_EPC_RESOURCE, False)
    metrics.kubelet_restarted()
    metrics.set_quote_helper_up(True)
    metrics.node_status_patched(True)
    metrics.pod_resources_errors.inc()
    exposed: dict[str, tuple[str, frozenset[str]]] = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = frozenset(key for s in family.samples if s.name == name for key in s.labels)
        exposed[name] = (family.type, labels)
    assert exposed == documented
