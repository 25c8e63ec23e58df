"""The control plane is configured as e2e/README.md claims: a cluster the other tests can trust."""

from __future__ import annotations

import json

from k8s import Cluster


def test_version_is_the_pinned_release(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"


def test_pod_security_admission_enforces_namespace_levels(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "baseline:latest"' in result.stderr


def test_service_account_kubeconfigs_are_that_account_under_rbac(
    cluster: Cluster, namespace: str
) -> None:
    for token in (False, True):
        config = cluster.sa_kubeconfig(namespace, "default", token=token)
        whoami = json.loads(
            cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=config).stdout
        )
        assert whoami["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{namespace}:default"
        )
        assert f"system:serviceaccounts:{namespace}" in whoami["status"]["userInfo"]["groups"]
        # RBAC: nothing is bound to this account, so it may not even list pods.
        denied = cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=config, check=False)
        assert denied.returncode != 0
        assert "Forbidden" in denied.stderr
