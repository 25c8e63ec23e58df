"""``kubectl apply -k`` of the shipped overlays against a real API server.

cert-manager is not installed here, so its Issuer and Certificates (custom resources without
CRDs) are dropped by a test-only kustomization, which puts in their place what cert-manager would
have produced: the TLS Secrets they name and the webhook configurations' caBundle; it also adds
the sim seed Secret an operator creates once per cluster. Everything
else is the overlay as shipped. ``sim`` is applied for real; ``hardware`` is applied with
``--dry-run=server`` on top (it would replace sim's objects): the API server runs defaulting,
validation and admission on every object without storing it.

The applied admission objects would route every SGX pod in the cluster to a confnode-webhook
Service with no pods behind it, so they are deleted at the end; the cluster is shared.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from k8s import REPO, Cluster

NAMESPACE = "confnode-system"
IMAGE = f"ghcr.io/confnode/confnode:{version('confnode')}"
DCAP_IMAGE = f"ghcr.io/confnode/confnode-dcap:{version('confnode')}"
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


def _test_kustomization(directory: Path, overlay: str, ca: trustme.CA) -> Path:
    """``overlay`` with cert-manager's objects replaced by a test CA's Secrets and caBundle, plus
    the sim seed Secret the operator creates."""
    directory.mkdir()
    secrets = []
    for service in ("confnode-webhook", "confnode-attestation"):
        leaf = ca.issue_cert(f"{service}.{NAMESPACE}.svc")
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": f"{service}-tls", "namespace": NAMESPACE},
                "stringData": {
                    "tls.crt": leaf.cert_chain_pems[0].bytes().decode(),
                    "tls.key": leaf.private_key_pem.bytes().decode(),
                    "ca.crt": ca.cert_pem.bytes().decode(),
                },
            }
        )
    # What an operator creates once per cluster for the sim overlay (README).
    secrets.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "confnode-sim", "namespace": NAMESPACE},
            "stringData": {"seed": base64.b64encode(os.urandom(32)).decode()},
        }
    )
    (directory / "tls.yaml").write_text(yaml.safe_dump_all(secrets))
    ca_bundle = base64.b64encode(ca.cert_pem.bytes()).decode()
    inject = [
        {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": ca_bundle}
        for index in range(2)
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "deploy" / overlay, directory), "tls.yaml"],
        "patches": [
            {
                "target": {"group": "cert-manager.io"},
                "patch": yaml.safe_dump(
                    {
                        "$patch": "delete",
                        "apiVersion": "cert-manager.io/v1",
                        "kind": "Any",
                        "metadata": {"name": "any"},
                    }
                ),
            },
            *(
                {"target": {"kind": kind, "name": "confnode-sgx"}, "patch": json.dumps(inject)}
                for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
            ),
        ],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def _render(cluster: Cluster, directory: Path) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(directory)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def applied(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[dict[str, Any]], trustme.CA]]:
    ca = trustme.CA()
    directory = _test_kustomization(tmp_path_factory.mktemp("apply") / "sim", "overlays/sim", ca)
    rendered = _render(cluster, directory)
    try:
        cluster.kubectl("apply", "--server-side", "--field-manager=e2e", "-k", str(directory))
        yield directory, rendered, ca
    finally:
        cluster.kubectl(
            "delete", "-k", str(directory), "--ignore-not-found", "--wait=false", check=False
        )


def test_sim_overlay_applies_server_side(
    cluster: Cluster, applied: tuple[Path, list[dict[str, Any]], trustme.CA]
) -> None:
    _directory, rendered, _ca = applied
    assert not [d for d in rendered if d["apiVersion"].startswith("cert-manager.io/")]
    for doc in rendered:
        scope = () if doc["kind"] in CLUSTER_SCOPED else ("-n", doc["metadata"]["namespace"])
        stored = cluster.kubectl_json("get", doc["kind"], doc["metadata"]["name"], *scope)
        assert stored["metadata"]["uid"], doc["metadata"]["name"]
    # What the API server made of the pod templates: defaulted, admitted, as shipped.
    helper = cluster.kubectl_json("get", "daemonset", "confnode-quote-helper", "-n", NAMESPACE)
    spec = helper["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"] + spec["containers"]] == [IMAGE] * 3
    webhooks = cluster.kubectl_json("get", "mutatingwebhookconfiguration", "confnode-sgx")
    for hook in webhooks["webhooks"]:
        assert hook["clientConfig"]["caBundle"]


def test_hardware_overlay_passes_server_side_dry_run(
    cluster: Cluster,
    applied: tuple[Path, list[dict[str, Any]], trustme.CA],
    tmp_path: Path,
) -> None:
    _sim, _rendered, ca = applied
    directory = _test_kustomization(tmp_path / "hardware", "overlays/hardware", ca)
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=e2e",
        "--dry-run=server",
        "-o",
        "json",
        "-k",
        str(directory),
    )
    items = json.loads(result.stdout)["items"]
    helper = next(
        i
        for i in items
        if i["kind"] == "DaemonSet" and i["metadata"]["name"] == "confnode-quote-helper"
    )
    spec = helper["spec"]["template"]["spec"]
    assert {c["image"] for c in spec["initContainers"] + spec["containers"]} == {IMAGE, DCAP_IMAGE}
    assert spec["nodeSelector"]["confnode.io/sgx-capable"] == "true"
    # confnode-system is outside the webhook: the helper asks for its devices itself.
    helper_limits = next(c for c in spec["containers"] if c["name"] == "quote-helper")["resources"]
    for resource in ("sgx.intel.com/enclave", "sgx.intel.com/provision"):
        assert helper_limits["limits"][resource] == helper_limits["requests"][resource] == "1"
