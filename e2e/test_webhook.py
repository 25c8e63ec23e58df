"""The admission webhook and the EPC device policy, as a real kube-apiserver applies them.

``confnode webhook serve`` runs on loopback with a throwaway CA; the webhook configurations and the
ValidatingAdmissionPolicy are the ones ``deploy/base/webhook`` ships, with two changes only: the
API server reaches the webhook by URL (with the CA as caBundle) instead of the in-cluster Service,
and every entry and the policy binding are further scoped to this module's namespaces (names
suffixed), so the cluster's other tests (which share it) never meet them. The webhook runs with
the Deployment's own arguments.

Every pod here carries a scheduling gate: none is ever bound, so none waits for a kubelet that
does not exist, and none lands on another test's Nodes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from k8s import REPO, Cluster, Component, confnode_command, free_port, wait_for

EPC = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
INTEL_EPC = "sgx.intel.com/epc"
ENCLAVE = "sgx.intel.com/enclave"
AESM = "confnode.io/aesm-socket"
SCOPE_KEY = "e2e.confnode.io/webhook-run"
GATE = {"name": "e2e.confnode.io/never-bind"}
RESTRICTED_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _shipped(cluster: Cluster) -> list[dict[str, Any]]:
    """deploy/base/webhook as kustomize renders it (with the cluster's own kubectl)."""
    out = cluster.kubectl("kustomize", str(REPO / "deploy/base/webhook")).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@dataclass
class Webhook:
    """The webhook process on a fixed loopback port, which tests may stop and start again."""

    cluster: Cluster
    port: int
    cert: Path
    key: Path
    args: list[str]
    process: Component | None = None

    def start(self) -> None:
        argv = [
            *confnode_command(),
            *self.args,
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--tls-cert={self.cert}",
            f"--tls-key={self.key}",
        ]
        self.process = self.cluster.spawn("webhook", argv)
        context = ssl.create_default_context(cafile=str(self.cert.parent / "ca.pem"))
        with httpx.Client(verify=context) as client:

            def healthy() -> bool:
                assert self.process is not None
                self.process.check_running()
                try:
                    return client.get(f"https://127.0.0.1:{self.port}/healthz").text == "ok"
                except httpx.HTTPError:
                    return False

            wait_for(healthy, "webhook /healthz", timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


@dataclass
class Setup:
    cluster: Cluster
    run: str
    webhook: Webhook
    namespaces: list[str] = field(default_factory=list)

    def namespace(self, **labels: str) -> str:
        name = f"e2e-wh-{uuid.uuid4().hex[:6]}"
        self.namespaces.append(name)
        self.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {SCOPE_KEY: self.run, **labels}},
            }
        )
        self.cluster.wait_for_object("serviceaccount", "default", namespace=name)
        return name

    def create(self, pod: dict[str, Any], namespace: str) -> dict[str, Any]:
        """Create a pod through the API server and return what it stored (raises if refused)."""
        out = self.cluster.kubectl(
            "create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(pod)
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def refusal(self, pod: dict[str, Any], namespace: str) -> str:
        """Create a pod that must be refused; return the API server's message."""
        result = self.cluster.kubectl(
            "create", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False
        )
        assert result.returncode != 0, f"admitted: {result.stdout}"
        return result.stderr


def _scoped(selector: dict[str, Any] | None, run: str) -> dict[str, Any]:
    selector = json.loads(json.dumps(selector or {}))
    selector.setdefault("matchExpressions", []).append(
        {"key": SCOPE_KEY, "operator": "In", "values": [run]}
    )
    return selector


@pytest.fixture(scope="module")
def setup(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    run = uuid.uuid4().hex[:8]
    directory = tmp_path_factory.mktemp("webhook")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))

    shipped = _shipped(cluster)
    deployment = next(d for d in shipped if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [a for a in container["args"] if not a.startswith(("--port", "--tls-", "--host"))]
    webhook = Webhook(cluster, free_port(), directory / "tls.crt", directory / "tls.key", args)

    ca_bundle = base64.b64encode(ca.cert_pem.bytes()).decode()
    objects: list[dict[str, Any]] = []
    for doc in shipped:
        if doc["kind"].endswith("WebhookConfiguration"):
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{run}"
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {
                    "url": f"https://127.0.0.1:{webhook.port}{path}",
                    "caBundle": ca_bundle,
                }
                hook["namespaceSelector"] = _scoped(hook.get("namespaceSelector"), run)
            objects.append(doc)
        elif doc["kind"] == "ValidatingAdmissionPolicy":
            objects.append(doc)
        elif doc["kind"] == "ValidatingAdmissionPolicyBinding":
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{run}"
            doc["spec"]["matchResources"] = {"namespaceSelector": _scoped(None, run)}
            objects.append(doc)
    assert {d["kind"] for d in objects} == {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    setup = Setup(cluster, run, webhook)
    try:
        webhook.start()
        cluster.apply(*objects)
        # Admission configuration reaches the API server's admission chain asynchronously.
        bypassed, served = setup.namespace(**{"confnode.io/webhook": "disabled"}), setup.namespace()
        wait_for(
            lambda: (
                cluster.kubectl(
                    "create", "-n", bypassed, "-f", "-", input=json.dumps(_pod()), check=False
                ).returncode
            ),
            "the EPC device policy to take effect",
        )

        def mutated() -> bool:
            result = cluster.kubectl(
                "create",
                "-n",
                served,
                "-o",
                "json",
                "-f",
                "-",
                input=json.dumps(_pod()),
                check=False,
            )
            return result.returncode == 0 and ENCLAVE in _limits(json.loads(result.stdout))

        wait_for(mutated, "the webhook configurations to take effect")
        yield setup
    finally:
        webhook.stop()
        for doc in reversed(objects):
            cluster.kubectl(
                "delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found", check=False
            )
        for name in setup.namespaces:
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(
    *,
    epc: dict[str, str] | None = None,
    labelled: bool = False,
    opt_in: bool = False,
    init_epc: dict[str, str] | None = None,
    finalizer: str | None = None,
) -> dict[str, Any]:
    """A restricted-compliant pod; ``epc=None`` (the default) asks for 1 MiB under the AKS name
    without the device — what the policy must refuse. Pass ``{}`` for a plain pod."""
    resources = {EPC: "1"} if epc is None else epc
    metadata: dict[str, Any] = {"generateName": "p-"}
    if labelled:
        metadata["labels"] = {"confnode.io/sgx": "true"}
    if opt_in:
        metadata["annotations"] = {AESM: "true"}
    if finalizer:
        metadata["finalizers"] = [finalizer]

    def container(name: str, limits: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": name,
            "image": "registry.example/app:1",
            "securityContext": RESTRICTED_CONTEXT,
        }
        if limits:
            out["resources"] = {"limits": dict(limits)}
        return out

    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "schedulingGates": [GATE],
        "containers": [container("app", resources)],
    }
    if init_epc is not None:
        spec["initContainers"] = [container("init", init_epc)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _limits(pod: dict[str, Any]) -> dict[str, str]:
    limits: dict[str, str] = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return limits


def _sgx_scheduling(pod: dict[str, Any]) -> bool:
    tolerations = pod["spec"].get("tolerations", [])
    return any(t.get("key") == "confnode.io/sgx" for t in tolerations) and "affinity" in pod["spec"]


# --- the webhook up ---


def test_sgx_pods_are_mutated_and_plain_pods_untouched(setup: Setup) -> None:
    namespace = setup.namespace()
    labelled = setup.create(_pod(epc={INTEL_EPC: "10Mi"}, labelled=True, opt_in=True), namespace)
    for section in ("limits", "requests"):
        assert labelled["spec"]["containers"][0]["resources"][section] == {
            EPC: "10",
            ENCLAVE: "1",
            AESM: "1",
        }
    assert _sgx_scheduling(labelled)
    assert labelled["metadata"]["annotations"]["confnode.io/epc-mib"] == "10"
    assert "volumes" not in labelled["spec"]  # the aesmd mount comes from Allocate, not hostPath

    # Unlabelled, asking under another vendor's name: the Ignore-path entry converts it.
    unlabelled = setup.create(_pod(epc={"alibabacloud.com/sgx_epc_MiB": "3"}), namespace)
    assert _limits(unlabelled) == {EPC: "3", ENCLAVE: "1"}
    assert _sgx_scheduling(unlabelled)

    plain = setup.create(_pod(epc={}), namespace)
    assert not _limits(plain)
    assert not _sgx_scheduling(plain)
    assert "annotations" not in plain["metadata"]


def test_webhook_validation_refuses_what_it_cannot_fix(setup: Setup) -> None:
    namespace = setup.namespace()
    pod = _pod(epc={EPC: "4", INTEL_EPC: "4Mi", ENCLAVE: "1"}, labelled=True)
    message = setup.refusal(pod, namespace)
    assert "validate.sgx.confnode.io" in message and "conflicting names" in message


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_pod_security_admits_mutated_pods(setup: Setup, level: str) -> None:
    """Pod Security runs after mutation: what the webhook adds must pass baseline and restricted
    (a hostPath volume would not)."""
    namespace = setup.namespace(**{"pod-security.kubernetes.io/enforce": level})
    pod = setup.create(_pod(epc={EPC: "8"}, labelled=True, opt_in=True), namespace)
    assert _limits(pod) == {EPC: "8", ENCLAVE: "1", AESM: "1"}
    unlabelled = setup.create(_pod(epc={INTEL_EPC: "2Mi"}, opt_in=True), namespace)
    assert _limits(unlabelled) == {EPC: "2", ENCLAVE: "1", AESM: "1"}


# --- the policy, with or without the webhook ---


def test_policy_refuses_epc_without_the_device_where_the_webhook_does_not_act(
    setup: Setup,
) -> None:
    namespace = setup.namespace(**{"confnode.io/webhook": "disabled"})
    message = setup.refusal(_pod(), namespace)
    assert "confnode-epc-device" in message and ENCLAVE in message and "app" in message
    message = setup.refusal(_pod(epc={}, init_epc={INTEL_EPC: "1Mi"}), namespace)
    assert "init" in message
    admitted = setup.create(_pod(epc={EPC: "1", ENCLAVE: "1"}), namespace)
    assert _limits(admitted) == {EPC: "1", ENCLAVE: "1"}  # untouched: the webhook skips here


@pytest.fixture
def webhook_down(setup: Setup) -> Iterator[Setup]:
    with setup.webhook.stopped():
        yield setup


def test_with_the_webhook_down_sgx_pods_are_refused_and_plain_pods_admitted(
    webhook_down: Setup,
) -> None:
    setup = webhook_down
    namespace = setup.namespace()
    message = setup.refusal(_pod(epc={EPC: "1"}, labelled=True), namespace)
    assert "mutate.sgx.confnode.io" in message
    # Unlabelled: the Ignore entry lets it through unmutated, and the policy refuses it.
    message = setup.refusal(_pod(epc={INTEL_EPC: "1Mi"}), namespace)
    assert "confnode-epc-device" in message
    plain = setup.create(_pod(epc={}), namespace)
    assert not _sgx_scheduling(plain)


def test_pods_drop_finalizers_and_go_with_the_webhook_down(setup: Setup) -> None:
    """The Job controller tracks its pods with a finalizer and removes it with an UPDATE: updates
    must not go through a webhook that fails closed, or a deleted pod stays Terminating for ever.
    The same holds for any client's metadata-only update of an SGX pod."""
    namespace = setup.namespace()
    pod = _pod(epc={EPC: "1"}, labelled=True)
    template = {"metadata": {"labels": pod["metadata"]["labels"]}, "spec": pod["spec"]}
    template["spec"]["restartPolicy"] = "Never"
    setup.cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "enclave-job", "namespace": namespace},
            "spec": {"backoffLimit": 0, "template": template},
        },
    )

    def job_pod() -> dict[str, Any] | None:
        items = setup.cluster.kubectl_json(
            "get", "pods", "-n", namespace, "-l", "job-name=enclave-job"
        )["items"]
        return items[0] if items and items[0]["metadata"].get("finalizers") else None

    from_job = wait_for(job_pod, "the Job's pod with its tracking finalizer")
    assert "batch.kubernetes.io/job-tracking" in from_job["metadata"]["finalizers"]
    assert _limits(from_job)[ENCLAVE] == "1"  # it went through the webhook
    held = setup.create(
        _pod(epc={EPC: "1"}, labelled=True, finalizer="e2e.confnode.io/hold"), namespace
    )
    names = [from_job["metadata"]["name"], held["metadata"]["name"]]

    def gone(name: str) -> bool:
        result = setup.cluster.kubectl("get", "pod", name, "-n", namespace, check=False)
        return result.returncode != 0

    with setup.webhook.stopped():
        for name in names:
            setup.cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
        remove = '[{"op": "remove", "path": "/metadata/finalizers"}]'
        setup.cluster.kubectl(
            "patch", "pod", names[1], "-n", namespace, "--type=json", "-p", remove
        )
        for name in names:
            wait_for(functools.partial(gone, name), f"pod {name} to go")


# --- a hung webhook ---


class HungListener:
    """Accepts connections on the webhook's port and never answers; counts them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.sock.settimeout(0.2)
        self.connections: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(5)
        for conn in self.connections:
            conn.close()
        self.sock.close()


def test_a_hung_webhook_is_never_called_for_pods_without_epc(webhook_down: Setup) -> None:
    """The Ignore entries match only pods that request EPC (matchConditions, in the API server):
    a hung webhook costs nothing to the rest of the cluster. An EPC pod it fails to mutate in
    time is refused by the policy, not admitted without its device."""
    setup = webhook_down
    namespace = setup.namespace()
    hung = HungListener(setup.webhook.port)
    try:
        plain = setup.create(_pod(epc={}), namespace)
        assert not _sgx_scheduling(plain)
        assert hung.connections == []
        message = setup.refusal(_pod(epc={INTEL_EPC: "1Mi"}), namespace)
        assert "confnode-epc-device" in message
        assert hung.connections  # it was asked, timed out, and the Ignore policy applied
    finally:
        hung.close()
