"""The node agent out of cluster with ``--kubeconfig``, as the ServiceAccount the manifests ship.

``deploy/base/node-agent/rbac.yaml`` is applied to the real API server (moved into this module's
namespace under unique names); the agent then runs as that ServiceAccount (the admin
impersonating it, or a real TokenRequest token) and publishes node-status EPC capacity and its
``confnode.io/`` labels on a registered Node. RBAC is checked both ways: what the agent needs is
allowed, everything else it might be tricked into is forbidden.

The limit RBAC cannot lift: rules name resources, not objects or fields, so ``patch`` on
``nodes`` lets the agent's identity patch *any* Node and any of its fields (labels, taints), not
just its own Node's ``confnode.io/`` labels. The kubelet's own identity gets that restriction from
the NodeRestriction admission plugin; a DaemonSet's ServiceAccount does not.
``test_rbac_cannot_confine_the_agent_to_its_own_node`` pins that documented limit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from k8s import Cluster, confnode_command, node_agent_rbac, wait_for

from confnode.deviceplugin import ApiServerNodeStatusPatcher

EPC = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
SA = "confnode-node-agent"


@dataclass(frozen=True)
class Agent:
    namespace: str
    node: str
    other_node: str
    kubeconfig: Path


def _spawn_agent(cluster: Cluster, node: str, kubeconfig: Path, workdir: Path, *extra: str) -> Any:
    return cluster.spawn(
        "node-agent",
        [
            *confnode_command(),
            "device-plugin",
            "--sim-epc=1TiB",
            "--sim-numa-nodes=2",
            f"--node-name={node}",
            f"--kubeconfig={kubeconfig}",
            f"--device-plugin-dir={workdir}",  # no kubelet.sock: capacity is published anyway
            f"--aesm-socket={workdir / 'no-aesmd' / 'aesm.socket'}",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def agent(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    suffix = uuid.uuid4().hex[:6]
    namespace, node, other = f"agent-{suffix}", f"sgx-agent-{suffix}", f"other-{suffix}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.apply(*node_agent_rbac(namespace, suffix))
    cluster.register_node(node, labels={"team": "payments"})
    cluster.register_node(other)
    kubeconfig = cluster.sa_kubeconfig(namespace, SA)
    workdir = tmp_path_factory.mktemp("agent")
    process = _spawn_agent(cluster, node, kubeconfig, workdir, "--label-node")
    try:
        yield Agent(namespace, node, other, kubeconfig)
    finally:
        process.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        cluster.kubectl("delete", "node", node, other)
        cluster.kubectl(
            "delete", "clusterrole,clusterrolebinding", f"{SA}-{suffix}", "--ignore-not-found"
        )


def test_capacity_and_labels_appear_on_the_node(cluster: Cluster, agent: Agent) -> None:
    def published() -> dict[str, Any] | None:
        node = cluster.kubectl_json("get", "node", agent.node)
        labels = node["metadata"]["labels"]
        if node["status"]["capacity"].get(EPC) and labels.get("confnode.io/sgx") == "true":
            return node  # type: ignore[no-any-return]
        return None

    node = wait_for(published, f"EPC capacity and labels on {agent.node}", timeout=60)
    assert node["status"]["capacity"][EPC] == str(1 << 20)  # 1 TiB in MiB
    labels = node["metadata"]["labels"]
    assert labels["confnode.io/sgx.simulated"] == "true"
    assert labels["confnode.io/sgx.epc-mib"] == str(1 << 20)
    assert labels["confnode.io/sgx.epc-numa-nodes"] == "2"
    assert labels["team"] == "payments"  # the merge patch leaves other labels alone
    assert node["status"]["capacity"]["cpu"] == "4"  # the JSON patch adds, replaces nothing else
    other = cluster.kubectl_json("get", "node", agent.other_node)
    assert EPC not in other["status"]["capacity"]


def _can_i(cluster: Cluster, kubeconfig: Path, verb: str, resource: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, kubeconfig=kubeconfig, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"auth can-i {verb} {resource}: {result.stderr.strip()}"
    return answer == "yes"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("patch", "nodes", True),  # --label-node
        ("patch", "nodes/status", True),  # node-status EPC
        ("get", "nodes", False),  # it sends PATCH only and reads nothing
        ("list", "nodes", False),
        ("watch", "nodes", False),
        ("update", "nodes", False),
        ("update", "nodes/status", False),
        ("create", "nodes", False),
        ("delete", "nodes", False),
        ("get", "nodes/proxy", False),
        ("patch", "pods", False),
        ("create", "pods/eviction", False),
        ("get", "secrets", False),
        ("patch", "configmaps", False),
        ("create", "serviceaccounts/token", False),
    ],
)
def test_rbac_allows_exactly_the_agents_patches(
    cluster: Cluster, agent: Agent, verb: str, resource: str, allowed: bool
) -> None:
    assert _can_i(cluster, agent.kubeconfig, verb, resource) is allowed


def test_forbidden_calls_are_refused_by_the_real_api_server(cluster: Cluster, agent: Agent) -> None:
    for args in (
        ("get", "node", agent.node),
        ("delete", "node", agent.other_node, "--wait=false"),
        ("get", "secrets", "-n", "kube-system"),
        ("label", "namespace", agent.namespace, "confnode.io/x=y"),
    ):
        result = cluster.kubectl(*args, kubeconfig=agent.kubeconfig, check=False)
        assert result.returncode != 0, args
        assert "Forbidden" in result.stderr or "forbidden" in result.stderr, result.stderr
    assert cluster.kubectl_json("get", "node", agent.other_node)["metadata"]["name"]


def test_rbac_cannot_confine_the_agent_to_its_own_node(cluster: Cluster, agent: Agent) -> None:
    """The documented limit: RBAC has no per-object or per-field rule for a DaemonSet's identity,
    so the agent's own client, as its ServiceAccount, can label a Node that is not its own."""

    async def label_other_node() -> None:
        patcher = ApiServerNodeStatusPatcher.from_kubeconfig(agent.kubeconfig)
        try:
            await patcher.patch_labels(agent.other_node, {"confnode.io/sgx": "false"})
        finally:
            await patcher.aclose()

    asyncio.run(label_other_node())
    labels = cluster.kubectl_json("get", "node", agent.other_node)["metadata"]["labels"]
    assert labels["confnode.io/sgx"] == "false"
    cluster.kubectl("label", "node", agent.other_node, "confnode.io/sgx-")


def test_a_real_bound_token_works_as_well(
    cluster: Cluster, agent: Agent, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``token:`` instead of impersonation: the kubeconfig a pod's projected token would give."""
    node = f"token-{uuid.uuid4().hex[:6]}"
    cluster.register_node(node)
    kubeconfig = cluster.sa_kubeconfig(agent.namespace, SA, token=True)
    process = _spawn_agent(cluster, node, kubeconfig, tmp_path_factory.mktemp("token-agent"))
    try:
        wait_for(
            lambda: cluster.kubectl_json("get", "node", node)["status"]["capacity"].get(EPC),
            f"EPC capacity on {node} from a token kubeconfig",
            timeout=60,
        )
    finally:
        process.stop()
        cluster.kubectl("delete", "node", node)


def test_a_kubeconfig_without_rights_is_reported_not_fatal(
    cluster: Cluster, agent: Agent, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another ServiceAccount (no binding): the agent keeps serving and logs the 403."""
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", agent.namespace)
    kubeconfig = cluster.sa_kubeconfig(agent.namespace, "nobody")
    node = f"norights-{uuid.uuid4().hex[:6]}"
    cluster.register_node(node)
    process = _spawn_agent(cluster, node, kubeconfig, tmp_path_factory.mktemp("nobody"))
    try:
        wait_for(lambda: "HTTP 403" in process.tail(), "the agent to log the 403", timeout=60)
        process.check_running()
        assert EPC not in cluster.kubectl_json("get", "node", node)["status"]["capacity"]
    finally:
        process.stop()
        cluster.kubectl("delete", "node", node)
