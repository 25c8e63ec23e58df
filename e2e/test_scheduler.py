"""EPC as a schedulable resource in a heterogeneous pool, decided by the real kube-scheduler.

One SGX node whose EPC capacity the node agent publishes (node-status mode, ADR 0005, running out
of cluster as the ServiceAccount of ``deploy/base/node-agent/rbac.yaml``), tainted
``confnode.io/sgx=true:NoSchedule``, and one plain node. SGX pods are what the webhook makes of a
user's pod (``confnode.webhook.mutate_pod``): EPC plus the enclave device resource, the taint
tolerated, node affinity to SGX nodes.

Both nodes also carry a pool label and taint of their own, and every pod here selects and tolerates
them: the cluster is shared by the whole session, and neither another test's pods nor this test's
may land outside this pool.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from k8s import Cluster, Component, confnode_command, node_agent_rbac, wait_for

from confnode.webhook import WebhookConfig, mutate_pod

EPC = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
ENCLAVE = "sgx.intel.com/enclave"
SGX_TAINT = {"key": "confnode.io/sgx", "value": "true", "effect": "NoSchedule"}
POOL_KEY = "e2e.confnode.io/pool"
SIM_EPC_MIB = 256 * 1024
PLAIN_CPU = 4
WEBHOOK = WebhookConfig(epc_resource=EPC, device_resource=ENCLAVE)


@dataclass(frozen=True)
class Pool:
    namespace: str
    pool: str
    sgx_node: str
    plain_node: str
    agent: Component


def _plan(sim_epc: str) -> dict[str, Any]:
    """What the agent would register with the kubelet (its own ``--plan-only`` answer)."""
    argv = [
        "device-plugin",
        "--plan-only",
        "--json",
        f"--sim-epc={sim_epc}",
        "--epc-mode=node-status",
    ]
    out = subprocess.run([*confnode_command(), *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _start_agent(cluster: Cluster, namespace: str, node: str, workdir: Path) -> Component:
    """The node agent out of cluster, as the shipped ServiceAccount, without a kubelet."""
    kubeconfig = cluster.sa_kubeconfig(namespace, "confnode-node-agent")
    return cluster.spawn(
        "node-agent",
        [
            *confnode_command(),
            "device-plugin",
            f"--sim-epc={SIM_EPC_MIB}MiB",
            "--epc-mode=node-status",
            f"--node-name={node}",
            "--label-node",
            f"--kubeconfig={kubeconfig}",
            f"--device-plugin-dir={workdir}",
            f"--aesm-socket={workdir / 'no-aesmd' / 'aesm.socket'}",
            f"--pod-resources-socket={workdir / 'no-kubelet.sock'}",
        ],
    )


def _published(cluster: Cluster, agent: Component, node: str) -> bool:
    agent.check_running()
    found = cluster.kubectl_json("get", "node", node)
    return bool(
        found["status"]["capacity"].get(EPC) == str(SIM_EPC_MIB)
        and found["metadata"]["labels"].get("confnode.io/sgx") == "true"
    )


@pytest.fixture(scope="module")
def pool(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    suffix = uuid.uuid4().hex[:6]
    namespace, sgx_node, plain_node = f"sched-{suffix}", f"sgx-{suffix}", f"plain-{suffix}"
    pool_taint = {"key": POOL_KEY, "value": suffix, "effect": "NoSchedule"}
    agent: Component | None = None
    cluster.kubectl("create", "namespace", namespace)
    try:
        cluster.apply(*node_agent_rbac(namespace, suffix))
        cluster.wait_for_object("serviceaccount", "default", namespace=namespace)
        cluster.register_node(
            plain_node,
            labels={POOL_KEY: suffix},
            taints=[pool_taint],
            capacity={"cpu": str(PLAIN_CPU)},
        )
        # SGX servers are the big ones here, so capacity alone would draw plain pods to them.
        cluster.register_node(
            sgx_node,
            labels={POOL_KEY: suffix},
            taints=[pool_taint, SGX_TAINT],
            capacity={"cpu": str(4 * PLAIN_CPU)},
        )
        agent = started = _start_agent(cluster, namespace, sgx_node, tmp_path_factory.mktemp("a"))
        wait_for(
            lambda: _published(cluster, started, sgx_node),
            f"the agent's EPC capacity and labels on {sgx_node}",
            timeout=60,
        )
        # The kubelet's next status sync: the device plugin's resources join the capacity, and
        # allocatable follows capacity (what makes node-status EPC schedulable).
        plan = _plan(f"{SIM_EPC_MIB}MiB")
        devices = {r["name"]: str(r["devices"]) for r in plan["resources"]}
        cluster.kubelet_status_update(sgx_node, device_plugin_capacity=devices)
        yield Pool(namespace, suffix, sgx_node, plain_node, agent)
    finally:
        if agent is not None:
            agent.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        cluster.kubectl("delete", "node", sgx_node, plain_node, "--ignore-not-found")


def _pod(pool: Pool, name: str, epc_mib: int | None = None) -> dict[str, Any]:
    """A user's pod in this pool; with ``epc_mib`` it is an SGX pod as the webhook admits it."""
    container: dict[str, Any] = {
        "name": "app",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "10m"}},
    }
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": pool.namespace},
        "spec": {
            "containers": [container],
            "nodeSelector": {POOL_KEY: pool.pool},
            "tolerations": [{"key": POOL_KEY, "operator": "Equal", "value": pool.pool}],
        },
    }
    if epc_mib is None:
        return pod
    pod["metadata"]["labels"] = {"confnode.io/sgx": "true"}
    container["resources"]["limits"] = {EPC: str(epc_mib)}
    return mutate_pod(pod, WEBHOOK)


def _create(cluster: Cluster, pod: dict[str, Any]) -> str:
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
    return str(pod["metadata"]["name"])


def _get(cluster: Cluster, pool: Pool, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", "pod", name, "-n", pool.namespace)  # type: ignore[no-any-return]


def _bound_node(cluster: Cluster, pool: Pool, name: str) -> str:
    return str(wait_for(lambda: _get(cluster, pool, name)["spec"].get("nodeName"), f"{name} bound"))


def _unschedulable(cluster: Cluster, pool: Pool, name: str) -> dict[str, Any]:
    def condition() -> dict[str, Any] | None:
        for found in _get(cluster, pool, name)["status"].get("conditions", []):
            if found["type"] == "PodScheduled" and found["status"] == "False":
                return found  # type: ignore[no-any-return]
        return None

    return wait_for(condition, f"the scheduler to give up on {name}")


def _epc_left(cluster: Cluster, pool: Pool) -> int:
    node = cluster.kubectl_json("get", "node", pool.sgx_node)
    pods = cluster.kubectl_json(
        "get", "pods", "-A", "--field-selector", f"spec.nodeName={pool.sgx_node}"
    )
    used = sum(
        int(c["resources"].get("requests", {}).get(EPC, 0))
        for p in pods["items"]
        for c in p["spec"]["containers"]
    )
    return int(node["status"]["allocatable"][EPC]) - used


def test_mutated_sgx_pods_fill_the_sgx_node_to_the_mib(cluster: Cluster, pool: Pool) -> None:
    assert _epc_left(cluster, pool) == SIM_EPC_MIB
    for index in range(2):
        name = _create(cluster, _pod(pool, f"sgx-{index}", epc_mib=100 * 1024))
        assert _bound_node(cluster, pool, name) == pool.sgx_node
    left = _epc_left(cluster, pool)
    assert left == SIM_EPC_MIB - 200 * 1024

    # One MiB more than is left stays Pending: the SGX node lacks the amount and the plain node
    # the resource (and the SGX affinity); it is never put on the plain node.
    name = _create(cluster, _pod(pool, "sgx-too-big", epc_mib=left + 1))
    condition = _unschedulable(cluster, pool, name)
    assert condition["reason"] == "Unschedulable"
    assert f"1 Insufficient {EPC}" in condition["message"]
    assert "didn't match Pod's node affinity/selector" in condition["message"]
    events = cluster.kubectl_json(
        "get", "events", "-n", pool.namespace, "--field-selector", f"involvedObject.name={name}"
    )
    assert any(
        e["reason"] == "FailedScheduling" and f"Insufficient {EPC}" in e["message"]
        for e in events["items"]
    ), events["items"]
    assert "nodeName" not in _get(cluster, pool, name)["spec"]

    # Exactly what is left still fits.
    name = _create(cluster, _pod(pool, "sgx-rest", epc_mib=left))
    assert _bound_node(cluster, pool, name) == pool.sgx_node
    assert _epc_left(cluster, pool) == 0


def test_plain_pods_never_land_on_the_sgx_node(cluster: Cluster, pool: Pool) -> None:
    names = [_create(cluster, _pod(pool, f"plain-{index}")) for index in range(4)]
    assert {_bound_node(cluster, pool, name) for name in names} == {pool.plain_node}

    # Not even when only the SGX node has room for it: the taint, not capacity, keeps it off.
    big = _pod(pool, "plain-big")
    big["spec"]["containers"][0]["resources"]["requests"]["cpu"] = str(PLAIN_CPU + 1)
    condition = _unschedulable(cluster, pool, _create(cluster, big))
    assert "1 Insufficient cpu, 1 node(s) had untolerated taint" in condition["message"]

    # The same pod tolerating the SGX taint fits there: it was the taint that kept it off.
    big["metadata"]["name"] = "plain-big-tolerating"
    big["spec"]["tolerations"].append({**SGX_TAINT, "operator": "Equal"})
    assert _bound_node(cluster, pool, _create(cluster, big)) == pool.sgx_node
