"""Issue 11's minor deployment defects, as rendered by kustomize: the opt-in SELinux component,
the provision resource's namespace gate, policy-admin authentication of the attestation service,
and probes on every long-running container. How the API server treats the policies and RBAC is
tested on a real one (``e2e/test_minor_defects.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from deploy_render import render

OVERLAYS = ["overlays/sim", "overlays/hardware", "overlays/cert-manager", "overlays/nfd"]
K8S_VERSIONS = ["1.34", "1.35", "1.36", "1.37"]
NAMESPACE = "confnode-system"
PROVISION = "sgx.intel.com/provision"


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


# --- 16: SELinux ---


def test_selinux_type_is_an_opt_in_component(tmp_path: Path) -> None:
    with_component = render("overlays/hardware", "components/selinux", tmp_path=tmp_path)
    agent = _find(with_component, "DaemonSet", "confnode-node-agent")
    context = _container(agent, "device-plugin")["securityContext"]
    assert context["seLinuxOptions"] == {"type": "container_device_plugin_t"}
    # The rest of the hardening survives the patch.
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    for doc in with_component:
        if doc["kind"] == "DaemonSet":
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    # Only the agent, and only with the component: a host policy without the type would refuse
    # to start the container.
    labelled = [d["metadata"]["name"] for d in with_component if "seLinuxOptions" in str(d)]
    assert labelled == ["confnode-node-agent"]
    for target in OVERLAYS:
        assert "seLinuxOptions" not in str(render(target)), target


# --- 17: the provision resource ---


def test_provision_is_gated_by_a_namespace_label(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    target, docs = rendered
    policy = _find(docs, "ValidatingAdmissionPolicy", "confnode-provision")
    binding = _find(docs, "ValidatingAdmissionPolicyBinding", "confnode-provision")
    assert binding["spec"] == {"policyName": "confnode-provision", "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    text = str(policy["spec"])
    assert f"'{PROVISION}'" in text and "confnode.io/allow-provision" in text
    # The node agent's name for the resource is the one the policy gates.
    agent = _container(_find(docs, "DaemonSet", "confnode-node-agent"), "device-plugin")
    assert not any(a.startswith("--provision-resource") for a in agent["args"]), target
    # Every pod asking for it runs in confnode-system, which carries the label.
    namespace = _find(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["confnode.io/allow-provision"] == "true"
    askers = []
    for doc in docs:
        if doc["kind"] not in ("DaemonSet", "Deployment"):
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            if PROVISION in str(container.get("resources", {})):
                askers.append(doc["metadata"]["name"])
                assert doc["metadata"]["namespace"] == NAMESPACE
    assert "confnode-quote-helper" in askers or target == "overlays/sim", askers


def test_samples_do_not_ask_for_provision() -> None:
    """Apps quote through the quote helper (confnode.io/aesm-socket), never the device."""
    for target in ("samples", "examples"):
        assert PROVISION not in str(render(target)), target


# --- attestation: --policy-admin-auth kubernetes ---


def test_attestation_authenticates_policy_admins_through_the_api_server(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    target, docs = rendered
    deployment = _find(docs, "Deployment", "confnode-attestation")
    spec = deployment["spec"]["template"]["spec"]
    assert "--policy-admin-auth=kubernetes" in _container(deployment, "attestation")["args"]
    # The service's own token, for its TokenReview/SubjectAccessReview calls.
    assert spec["automountServiceAccountToken"] is True
    account = spec["serviceAccountName"]
    bound = [
        d
        for d in docs
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        in d.get("subjects", [])
    ]
    # Exactly the delegated-auth role and nothing else: the token reads nothing from the API.
    assert [(b["kind"], b["roleRef"]["name"]) for b in bound] == [
        ("ClusterRoleBinding", "system:auth-delegator")
    ], target
    admin = _find(docs, "ClusterRole", "confnode-attestation-policy-admin")
    assert admin["rules"] == [
        {
            "apiGroups": ["attestation.confnode.io"],
            "resources": ["policies"],
            "verbs": ["get", "update", "delete"],
        }
    ]
    # Shipped unbound: who administers policy is the operator's decision.
    assert not [
        d
        for d in docs
        if d["kind"].endswith("RoleBinding")
        and d["roleRef"]["name"] == "confnode-attestation-policy-admin"
    ]


# --- 21: probes ---


def test_every_long_running_container_has_both_probes(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Liveness restarts a stuck daemon; readiness holds a rolling update until the new pod
    works. A probe must hit a port the container declares and, for the node agent and the quote
    helper, the endpoint their --metrics-port serves."""
    target, docs = rendered
    probed = 0
    for doc in docs:
        if doc["kind"] not in ("DaemonSet", "Deployment"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            where = f"{target} {doc['metadata']['name']}/{container['name']}"
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            paths = {}
            for kind in ("livenessProbe", "readinessProbe"):
                probe = container.get(kind)
                assert probe is not None, f"{where}: no {kind}"
                assert probe["httpGet"]["port"] in ports, where
                paths[kind] = probe["httpGet"]["path"]
            if doc["metadata"]["name"] in ("confnode-node-agent", "confnode-quote-helper"):
                assert paths == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, where
                port = ports[container["livenessProbe"]["httpGet"]["port"]]
                assert f"--metrics-port={port}" in container["args"], where
            probed += 1
    assert probed >= 4, target
