"""Node-status EPC capacity against a stub API server that checks the real JSON-patch request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from confnode.deviceplugin import (
    AKS_EPC_RESOURCE,
    INTEL_EPC_RESOURCE,
    MIB,
    ApiServerNodeStatusPatcher,
    DevicePluginError,
    NodePublisher,
    NodeStatusPatchError,
    SgxNode,
    capacity_json_patch,
    epc_capacity,
    labels_merge_patch,
    simulated_node_labels,
)
from confnode.deviceplugin.nodestatus import MANAGED_LABEL_KEYS
from confnode.metrics import NodeAgentMetrics


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


class StubApiServer:
    """Just enough of ``PATCH /api/v1/nodes/{name}/status`` with RFC 6902 ``add``."""

    def __init__(self, node: str, status: int = 200) -> None:
        self.node = {"metadata": {"name": node}, "status": {"capacity": {"cpu": "4"}}}
        self.status = status
        self.requests: list[dict[str, object]] = []
        self.app = Starlette(
            routes=[
                Route("/api/v1/nodes/{name}/status", self.patch, methods=["PATCH", "GET"]),
                Route("/api/v1/nodes/{name}", self.merge_patch, methods=["PATCH"]),
            ]
        )

    async def merge_patch(self, request: Request) -> JSONResponse:
        """RFC 7386 merge patch on the Node object (labels live in metadata, not status)."""
        body = json.loads(await request.body())
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "content_type": request.headers.get("content-type"),
                "body": body,
            }
        )
        if request.headers.get("content-type") != "application/merge-patch+json":
            return JSONResponse({"reason": "UnsupportedMediaType"}, status_code=415)
        if request.path_params["name"] != self.node["metadata"]["name"]:
            return JSONResponse({"reason": "NotFound"}, status_code=404)
        labels = self.node["metadata"].setdefault("labels", {})
        for key, value in body["metadata"]["labels"].items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        return JSONResponse(self.node)

    async def patch(self, request: Request) -> JSONResponse:
        body = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "content_type": request.headers.get("content-type"),
                "authorization": request.headers.get("authorization"),
                "body": json.loads(body),
            }
        )
        if request.method != "PATCH":
            return JSONResponse({"reason": "MethodNotAllowed"}, status_code=405)
        if request.headers.get("content-type") != "application/json-patch+json":
            return JSONResponse({"reason": "UnsupportedMediaType"}, status_code=415)
        if request.path_params["name"] != self.node["metadata"]["name"]:
            return JSONResponse({"reason": "NotFound"}, status_code=404)
        if self.status != 200:
            return JSONResponse({"reason": "Forbidden"}, status_code=self.status)
        for op in json.loads(body):
            assert op["op"] == "add"
            parts = [_unescape(p) for p in op["path"].split("/")[1:]]
            target = self.node
            for part in parts[:-1]:
                target = target[part]
            target[parts[-1]] = op["value"]
        return JSONResponse(self.node)


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    directory = tmp_path / "sa"
    directory.mkdir()
    (directory / "token").write_text("token-one\n")
    trustme.CA().cert_pem.write_to_path(str(directory / "ca.crt"))
    return directory


def _patcher(server: StubApiServer, sa: Path) -> ApiServerNodeStatusPatcher:
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    return ApiServerNodeStatusPatcher.from_environment(
        env, sa, transport=httpx.ASGITransport(app=server.app)
    )


def test_patch_document_escapes_the_resource_name() -> None:
    assert capacity_json_patch({INTEL_EPC_RESOURCE: "1024", "a~b/c": "1"}) == [
        {"op": "add", "path": "/status/capacity/a~0b~1c", "value": "1"},
        {"op": "add", "path": "/status/capacity/sgx.intel.com~1epc", "value": "1024"},
    ]


async def test_patches_a_terabyte_of_epc_to_the_mib(service_account: Path) -> None:
    server = StubApiServer("dc-node-1")
    patcher = _patcher(server, service_account)
    node = SgxNode.simulated_node((1 << 40) + 3 * MIB, numa_nodes=2)
    try:
        await patcher.patch_capacity("dc-node-1", epc_capacity(node, AKS_EPC_RESOURCE))
        (service_account / "token").write_text("token-two\n")  # projected tokens rotate
        await patcher.patch_capacity("dc-node-1", epc_capacity(node, INTEL_EPC_RESOURCE))
    finally:
        await patcher.aclose()
    first, second = server.requests
    assert first["method"] == "PATCH"
    assert first["path"] == "/api/v1/nodes/dc-node-1/status"
    assert first["content_type"] == "application/json-patch+json"
    assert first["authorization"] == "Bearer token-one"
    assert first["body"] == [
        {
            "op": "add",
            "path": "/status/capacity/kubernetes.azure.com~1sgx_epc_mem_in_MiB",
            "value": "1048579",
        }
    ]
    assert second["authorization"] == "Bearer token-two"
    capacity = server.node["status"]["capacity"]
    assert capacity == {
        "cpu": "4",
        AKS_EPC_RESOURCE: "1048579",
        INTEL_EPC_RESOURCE: str((1 << 40) + 3 * MIB),
    }


async def test_refusal_is_an_error_with_the_status_code(service_account: Path) -> None:
    server = StubApiServer("dc-node-1", status=403)
    patcher = _patcher(server, service_account)
    try:
        with pytest.raises(NodeStatusPatchError) as info:
            await patcher.patch_capacity("dc-node-1", {AKS_EPC_RESOURCE: "28"})
        with pytest.raises(NodeStatusPatchError, match="404"):
            await patcher.patch_capacity("other-node", {AKS_EPC_RESOURCE: "28"})
    finally:
        await patcher.aclose()
    assert info.value.status_code == 403
    assert "403" in info.value.message and "expected 200" in info.value.message


async def test_publisher_counts_results(service_account: Path) -> None:
    server = StubApiServer("dc-node-1", status=500)
    metrics = NodeAgentMetrics()
    patcher = _patcher(server, service_account)
    publisher = NodePublisher(
        patcher,
        "dc-node-1",
        {AKS_EPC_RESOURCE: "28"},
        on_result=lambda ok, _error: metrics.node_status_patched(ok),
    )
    try:
        assert not await publisher.publish_once()
        server.status = 200
        assert await publisher.publish_once()
    finally:
        await patcher.aclose()
    sample = metrics.registry.get_sample_value
    assert sample("confnode_node_status_patches_total", {"result": "error"}) == 1
    assert sample("confnode_node_status_patches_total", {"result": "ok"}) == 1
    assert server.node["status"]["capacity"][AKS_EPC_RESOURCE] == "28"


def test_outside_a_cluster_the_patcher_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DevicePluginError, match="KUBERNETES_SERVICE_HOST=\\(unset\\)"):
        ApiServerNodeStatusPatcher.from_environment({}, tmp_path)


async def test_publisher_keeps_node_labels(service_account: Path) -> None:
    server = StubApiServer("dc-node-1")
    patcher = _patcher(server, service_account)
    labels = simulated_node_labels(SgxNode.simulated_node(256 * MIB, 2))
    publisher = NodePublisher(patcher, "dc-node-1", {}, labels)
    try:
        assert await publisher.publish_once()
    finally:
        await patcher.aclose()
    (request,) = server.requests
    assert request["path"] == "/api/v1/nodes/dc-node-1"
    assert request["content_type"] == "application/merge-patch+json"
    assert server.node["metadata"]["labels"] == {
        "confnode.io/sgx": "true",
        "confnode.io/sgx.simulated": "true",
        "confnode.io/sgx.epc-mib": "256",
        "confnode.io/sgx.epc-numa-nodes": "2",
    }
    assert server.node["status"]["capacity"] == {"cpu": "4"}  # labels never touch status


async def test_label_patch_removes_stale_confnode_labels_only(service_account: Path) -> None:
    server = StubApiServer("dc-node-1")
    server.node["metadata"]["labels"] = {
        "confnode.io/sgx.simulated": "true",  # the node ran with --sim-epc before
        "confnode.io/sgx.flc": "true",  # a fact that is unknown now
        "team": "payments",  # not ours
    }
    patcher = _patcher(server, service_account)
    publisher = NodePublisher(patcher, "dc-node-1", {}, lambda: {"confnode.io/sgx": "true"})
    try:
        assert await publisher.publish_once()
    finally:
        await patcher.aclose()
    assert server.node["metadata"]["labels"] == {"confnode.io/sgx": "true", "team": "payments"}
    (request,) = server.requests
    sent = request["body"]["metadata"]["labels"]  # type: ignore[index]
    assert set(sent) == set(MANAGED_LABEL_KEYS)
    assert labels_merge_patch({"confnode.io/sgx": "true"}) == request["body"]
