"""Issue 11's minor defects where the real API server decides: who may ask for the provision
resource, what the attestation service's account may ask the API server about policy admins, and
the node agent taking its EPC capacity back off the Node.

- ``deploy/base/webhook/provision-policy.yaml`` (the shipped ValidatingAdmissionPolicy, under a
  unique name, bound to this module's namespaces only): pods asking for
  ``sgx.intel.com/provision`` are refused unless their namespace is labelled
  ``confnode.io/allow-provision=true``; the quote helper's pod template as rendered from the
  ``hardware`` overlay is admitted in a namespace labelled like ``confnode-system`` and refused
  elsewhere.
- ``deploy/base/attestation/rbac.yaml``: the service's ServiceAccount may create TokenReviews and
  SubjectAccessReviews (``system:auth-delegator``) and nothing else; the sample
  ``confnode-attestation-policy-admin`` ClusterRole makes an account a policy admin. The service's
  own authorizer (``confnode.attestation._admin.KubernetesReviews``) runs against the real API
  server with real TokenRequest tokens.
- The node agent (``--epc-mode node-status`` on a fake host tree, as the shipped node-agent
  ServiceAccount) removes its EPC capacity from the Node when the SGX device nodes disappear and
  publishes it again when they return; ``--remove-node-status`` (the uninstall step) removes the
  capacity and the ``confnode.io/`` labels, both allowed by the shipped RBAC.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s import REPO, Cluster, ClusterError, confnode_command, node_agent_rbac, wait_for

from confnode.attestation._admin import (
    AUDIENCE,
    KubernetesReviews,
    ManagementAction,
    NotAuthenticated,
    NotAuthorized,
)
from confnode.errors import InfrastructureError

sys.path.insert(0, str(REPO / "tests" / "platform"))
from platform_trees import SPECS, build_tree

EPC = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
ENCLAVE = "sgx.intel.com/enclave"
PROVISION = "sgx.intel.com/provision"
ALLOW = "confnode.io/allow-provision"


def _documents(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO / path).read_text()) if d]


def _namespace(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )
    cluster.wait_for_object("serviceaccount", "default", namespace=name)


# --- the provision resource ---------------------------------------------------------------------


@dataclass(frozen=True)
class Provision:
    policy: str
    gated: str  # bound to the policy, not labelled
    allowed: str  # bound, labelled confnode.io/allow-provision=true


@pytest.fixture(scope="module")
def provision(cluster: Cluster) -> Iterator[Provision]:
    suffix = uuid.uuid4().hex[:6]
    name = f"confnode-provision-{suffix}"
    policy, binding = _documents("deploy/base/webhook/provision-policy.yaml")
    policy["metadata"]["name"] = binding["metadata"]["name"] = name
    binding["spec"]["policyName"] = name
    # Only this module's namespaces: other tests' pods never meet the policy.
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"e2e.confnode.io/provision": suffix}}
    }
    scope = {"e2e.confnode.io/provision": suffix}
    found = Provision(name, f"prov-{suffix}", f"prov-ok-{suffix}")
    _namespace(cluster, found.gated, scope)
    _namespace(cluster, found.allowed, {**scope, ALLOW: "true"})
    cluster.apply(policy, binding)
    try:
        # The API server compiles a new policy asynchronously: wait until it refuses.
        wait_for(
            lambda: _refusal(cluster, _pod("probe", {PROVISION: "1"}), found.gated) is not None,
            "the provision policy to take effect",
        )
        yield found
    finally:
        cluster.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            name,
            "--ignore-not-found",
        )
        cluster.kubectl("delete", "namespace", found.gated, found.allowed, "--wait=false")


def _pod(
    name: str, limits: dict[str, str], *, init: dict[str, str] | None = None
) -> dict[str, Any]:
    def container(name: str, limits: dict[str, str]) -> dict[str, Any]:
        return {
            "name": name,
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"limits": limits},
        }

    spec: dict[str, Any] = {"containers": [container("app", limits)]}
    if init is not None:
        spec["initContainers"] = [container("setup", init)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _refusal(cluster: Cluster, pod: dict[str, Any], namespace: str) -> str | None:
    """None when the API server admits the pod (server-side dry run: nothing is stored), else
    its refusal."""
    result = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(pod),
        check=False,
    )
    return None if result.returncode == 0 else result.stderr


def test_provision_is_refused_outside_allowed_namespaces(
    cluster: Cluster, provision: Provision
) -> None:
    message = _refusal(cluster, _pod("quoter", {ENCLAVE: "1", PROVISION: "1"}), provision.gated)
    assert message is not None
    assert provision.policy in message
    assert f"container(s) app request {PROVISION}" in message
    assert f"{ALLOW}=true" in message
    # An init container is no way around it.
    message = _refusal(
        cluster, _pod("sneaky", {ENCLAVE: "1"}, init={PROVISION: "1"}), provision.gated
    )
    assert message is not None and "container(s) setup request" in message
    # Everything else in the same namespace is untouched.
    assert _refusal(cluster, _pod("enclave-app", {ENCLAVE: "1", EPC: "4"}), provision.gated) is None
    assert _refusal(cluster, _pod("plain", {}), provision.gated) is None


def test_provision_is_admitted_in_a_labelled_namespace(
    cluster: Cluster, provision: Provision
) -> None:
    pod = _pod("in-process-quoter", {ENCLAVE: "1", PROVISION: "1"}, init={PROVISION: "1"})
    assert _refusal(cluster, pod, provision.allowed) is None


def test_the_shipped_quote_helper_pod_passes_only_where_confnode_system_would(
    cluster: Cluster, provision: Provision
) -> None:
    rendered = yaml.safe_load_all(
        cluster.kubectl("kustomize", str(REPO / "deploy/overlays/hardware")).stdout
    )
    documents = [d for d in rendered if d]
    daemonset = next(
        d
        for d in documents
        if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "confnode-quote-helper"
    )
    namespace = next(d for d in documents if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"][ALLOW] == "true"  # what confnode-system carries
    template = daemonset["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "quote-helper", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    assert _refusal(cluster, pod, provision.allowed) is None
    message = _refusal(cluster, pod, provision.gated)
    assert message is not None and "container(s) quote-helper, device-access request" in message


# --- the attestation service's policy-admin authentication --------------------------------------


@dataclass(frozen=True)
class Attestation:
    namespace: str
    admin_role: str
    service_kubeconfig: Path


SERVICE_SA = "confnode-attestation"


@pytest.fixture(scope="module")
def attestation(cluster: Cluster) -> Iterator[Attestation]:
    """The shipped RBAC in a fresh namespace under unique cluster-scoped names, plus two callers:
    ``policy-admin`` (bound to the sample ClusterRole) and ``nobody``."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"att-{suffix}"
    _namespace(cluster, namespace, {})
    documents = _documents("deploy/base/attestation/rbac.yaml")
    renamed: dict[str, str] = {}
    for document in documents:
        metadata = document["metadata"]
        if document["kind"] == "ServiceAccount":
            metadata["namespace"] = namespace
            continue
        renamed[metadata["name"]] = metadata["name"] = f"{metadata['name']}-{suffix}"
        for subject in document.get("subjects", []):
            subject["namespace"] = namespace
    admin_role = renamed["confnode-attestation-policy-admin"]
    callers = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        }
        for name in ("policy-admin", "nobody")
    ]
    admins = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"attestation-policy-admins-{suffix}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": admin_role,
        },
        "subjects": [{"kind": "ServiceAccount", "name": "policy-admin", "namespace": namespace}],
    }
    cluster.apply(*documents, *callers, admins)
    try:
        yield Attestation(namespace, admin_role, cluster.sa_kubeconfig(namespace, SERVICE_SA))
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        cluster.kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            *renamed.values(),
            admins["metadata"]["name"],
            "--ignore-not-found",
        )


def _token(cluster: Cluster, namespace: str, name: str, *, audience: str | None = None) -> str:
    """A TokenRequest token; callers of /policies get one for the service's audience."""
    extra = () if audience is None else (f"--audience={audience}",)
    return cluster.kubectl("create", "token", name, "-n", namespace, *extra).stdout.strip()


def _review(cluster: Cluster, kubeconfig: Path, kind: str, spec: dict[str, Any]) -> Any:
    """POST a review as the service does (``kubectl create --raw``: no discovery, no
    client-side validation, which would need more rights than the service has)."""
    group = "authentication" if kind == "TokenReview" else "authorization"
    review = {"apiVersion": f"{group}.k8s.io/v1", "kind": kind, "spec": spec}
    path = f"/apis/{group}.k8s.io/v1/{kind.lower()}s"
    created = cluster.kubectl(
        "create", "--raw", path, "-f", "-", input=json.dumps(review), kubeconfig=kubeconfig
    )
    return json.loads(created.stdout)["status"]


def test_the_services_account_may_review_tokens_and_access(
    cluster: Cluster, attestation: Attestation
) -> None:
    """What --policy-admin-auth kubernetes sends, sent as the service's ServiceAccount."""
    namespace = attestation.namespace
    admin = f"system:serviceaccount:{namespace}:policy-admin"
    status = _review(
        cluster,
        attestation.service_kubeconfig,
        "TokenReview",
        {
            "token": _token(cluster, namespace, "policy-admin", audience=AUDIENCE),
            "audiences": [AUDIENCE],
        },
    )
    assert status["authenticated"] is True
    assert status["audiences"] == [AUDIENCE]
    assert status["user"]["username"] == admin

    def may(user: str, verb: str) -> bool:
        status = _review(
            cluster,
            attestation.service_kubeconfig,
            "SubjectAccessReview",
            {
                "user": user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                "resourceAttributes": {
                    "group": "attestation.confnode.io",
                    "resource": "policies",
                    "name": "SgxEnclave",
                    "verb": verb,
                },
            },
        )
        return bool(status["allowed"])

    assert all(may(admin, verb) for verb in ("get", "update", "delete"))
    assert not may(admin, "create")  # not a verb the service asks about
    assert not any(
        may(f"system:serviceaccount:{namespace}:nobody", verb) for verb in ("get", "update")
    )


def test_the_services_account_may_do_nothing_else(
    cluster: Cluster, attestation: Attestation
) -> None:
    def can_i(verb: str, resource: str) -> bool:
        result = cluster.kubectl(
            "auth", "can-i", verb, resource, kubeconfig=attestation.service_kubeconfig, check=False
        )
        return result.stdout.strip() == "yes"

    assert can_i("create", "tokenreviews.authentication.k8s.io")
    assert can_i("create", "subjectaccessreviews.authorization.k8s.io")
    for verb, resource in [
        ("get", "secrets"),
        ("list", "pods"),
        ("get", "configmaps"),
        ("update", "policies.attestation.confnode.io"),
        ("create", "serviceaccounts/token"),
    ]:
        assert not can_i(verb, resource), f"{verb} {resource}"


def test_the_services_authorizer_against_the_real_api_server(
    cluster: Cluster, attestation: Attestation, tmp_path: Path
) -> None:
    """KubernetesReviews as the pod runs it: its own token from a file (here a real
    TokenRequest token of the shipped ServiceAccount), the cluster CA, the callers' tokens."""
    namespace = attestation.namespace

    def reviews(account: str) -> KubernetesReviews:
        token_file = tmp_path / f"{account}.token"
        token_file.write_text(_token(cluster, namespace, account))
        return KubernetesReviews(cluster.server, token_file=token_file, ca_file=cluster.ca_file)

    service = reviews(SERVICE_SA)
    update = ManagementAction("update", "policies", "SgxEnclave")
    admin_token = _token(cluster, namespace, "policy-admin", audience=AUDIENCE)

    caller = asyncio.run(service.authorize(admin_token, update))
    assert caller.username == f"system:serviceaccount:{namespace}:policy-admin"
    nobody = _token(cluster, namespace, "nobody", audience=AUDIENCE)
    with pytest.raises(NotAuthorized, match="nobody may not update policies/SgxEnclave"):
        asyncio.run(service.authorize(nobody, update))
    with pytest.raises(NotAuthenticated):
        asyncio.run(service.authorize("not-a-token", update))
    # The admin's ordinary API token is for the API server, not for this service.
    with pytest.raises(NotAuthenticated, match="rejected the token"):
        asyncio.run(service.authorize(_token(cluster, namespace, "policy-admin"), update))
    # Without system:auth-delegator the service cannot ask: 503 material, never access.
    with pytest.raises(InfrastructureError, match="HTTP 403") as raised:
        asyncio.run(reviews("nobody").authorize(admin_token, update))
    assert "system:auth-delegator" in (raised.value.hint or "")


# --- node-status EPC capacity -------------------------------------------------------------------


@dataclass(frozen=True)
class AgentNode:
    namespace: str
    node: str
    kubeconfig: Path


@pytest.fixture(scope="module")
def agent_node(cluster: Cluster) -> Iterator[AgentNode]:
    """A Node and the shipped node-agent RBAC (unique names), the agent impersonated as it."""
    suffix = uuid.uuid4().hex[:6]
    namespace, node = f"agent-{suffix}", f"sgx-lifecycle-{suffix}"
    _namespace(cluster, namespace, {})
    cluster.apply(*node_agent_rbac(namespace, suffix))
    cluster.register_node(node, labels={"team": "payments"})
    try:
        yield AgentNode(namespace, node, cluster.sa_kubeconfig(namespace, "confnode-node-agent"))
    finally:
        cluster.kubectl("delete", "node", node, "--ignore-not-found")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        cluster.kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            f"confnode-node-agent-{suffix}",
            "--ignore-not-found",
        )


def _confnode(*args: str) -> str:
    done = subprocess.run(
        [*confnode_command(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise ClusterError(f"confnode {' '.join(args)} exited {done.returncode}: {done.stdout}")
    return done.stdout


def _node(cluster: Cluster, name: str) -> dict[str, Any]:
    node: dict[str, Any] = cluster.kubectl_json("get", "node", name)
    return node


def test_capacity_leaves_with_the_sgx_devices_and_comes_back(
    cluster: Cluster, agent_node: AgentNode, tmp_path: Path
) -> None:
    tree = build_tree(tmp_path / "host", SPECS["dcsv3"])  # 256 GiB: node-status mode
    device = tree.roots.dev_path("/dev/sgx_enclave")
    plugins = tmp_path / "dp"
    plugins.mkdir()
    agent = cluster.spawn(
        "node-agent-lifecycle",
        [
            *confnode_command(),
            "device-plugin",
            *tree.cli_args(),
            "--cpuid=driver",
            "--epc-mode=node-status",
            f"--node-name={agent_node.node}",
            f"--kubeconfig={agent_node.kubeconfig}",
            f"--device-plugin-dir={plugins}",
            "--label-node",
        ],
    )

    def capacity() -> str | None:
        node = _node(cluster, agent_node.node)
        value = node["status"]["capacity"].get(EPC)
        return value if isinstance(value, str) else None

    try:
        assert wait_for(capacity, "EPC capacity on the Node") == str(256 * 1024)
        cluster.kubelet_status_update(agent_node.node)  # allocatable = capacity, schedulable
        assert _node(cluster, agent_node.node)["status"]["allocatable"][EPC] == str(256 * 1024)
        Path(device).unlink()  # the driver went away (module unloaded, VM resized)
        wait_for(lambda: capacity() is None, "EPC capacity to leave the Node")
        status = _node(cluster, agent_node.node)["status"]
        assert EPC not in status.get("allocatable", {})  # the scheduler stops at once
        assert status["capacity"]["cpu"] == "4"  # the kubelet's own capacity is untouched
        Path(device).write_bytes(b"")
        assert wait_for(capacity, "EPC capacity back on the Node") == str(256 * 1024)
        agent.check_running()
    finally:
        agent.stop()
    # A stopped agent leaves it (SIGTERM cannot tell an uninstall from a restart) ...
    assert capacity() == str(256 * 1024)
    labels = _node(cluster, agent_node.node)["metadata"]["labels"]
    assert labels.get("confnode.io/sgx") == "true"

    # ... and the uninstall step takes it and the labels away, with the agent's own RBAC.
    removed = _confnode(
        "device-plugin",
        "--remove-node-status",
        f"--node-name={agent_node.node}",
        f"--kubeconfig={agent_node.kubeconfig}",
    )
    assert agent_node.node in removed
    node = _node(cluster, agent_node.node)
    assert EPC not in node["status"]["capacity"]
    assert EPC not in node["status"].get("allocatable", {})
    assert not [key for key in node["metadata"]["labels"] if key.startswith("confnode.io/")]
    assert node["metadata"]["labels"]["team"] == "payments"
