"""A real Kubernetes control plane on loopback for the e2e tier.

``start_cluster(workdir)`` runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler
built by ``e2e/build.sh`` (``e2e/.bin``) in ``workdir`` and waits until each is ready. There is no
kubelet and no container runtime: Nodes are API objects, and :meth:`Cluster.register_node` and
:meth:`Cluster.kubelet_status_update` write them as the kubelet (and the node lifecycle controller)
would, so the real scheduler treats them as real nodes.

Fixture API (``e2e/conftest.py``; see also ``e2e/README.md``):

- ``cluster`` (session): a running :class:`Cluster`
    - ``server`` (``https://127.0.0.1:<port>``), ``ca_file`` (PEM the API server's serving
      certificate chains to), ``admin_kubeconfig`` (``system:masters`` client certificate),
      ``admin_cert``/``admin_key`` (the same identity as PEM files, for HTTP clients)
    - ``kubectl(*args, kubeconfig=None, input=None, check=True)`` → ``CompletedProcess[str]``;
      ``kubectl_json(*args)`` → the parsed ``-o json`` output; ``apply(*objects)`` (server-side);
      ``wait_for_object(kind, name, namespace=None)``
    - ``sa_kubeconfig(namespace, name, token=False)`` → kubeconfig acting as that
      ServiceAccount: impersonated by the admin (``as: system:serviceaccount:<ns>:<name>``) or,
      with ``token=True``, a real bound token from the TokenRequest API
    - ``register_node(name, labels=, taints=, capacity=)`` and
      ``kubelet_status_update(name, device_plugin_capacity=)``
    - ``spawn(name, argv, env=None)`` → :class:`Component` (``.process``, ``.stop()``,
      ``.tail()``, ``.check_running()``): a peer process (webhook, node agent) whose log joins the
      control plane's in a failing test's report; stopped with the cluster at the latest
    - ``logs()``: the last lines of every component's log
- ``require_binaries(*names)``: skip a test whose peer (``e2e/.bin/<name>``) was not built, or
  fail it under ``make e2e`` (``CONFNODE_E2E=1``)
- ``namespace`` (function): a fresh namespace (its ``default`` ServiceAccount already made by the
  controller manager), deleted afterwards.
- ``wait_for(predicate, what, timeout=)``: poll until ``predicate()`` returns a truthy value.
- ``confnode_command()``: argv prefix running this checkout's ``confnode``; ``free_port()``: a
  free loopback TCP port; ``REPO``, ``BIN``.
- ``node_agent_rbac(namespace, suffix)``: the shipped node-agent RBAC documents, moved into
  ``namespace`` under unique cluster-scoped names, ready for ``cluster.apply``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

E2E = Path(__file__).resolve().parent
REPO = E2E.parent
BIN = E2E / ".bin"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
KUBERNETES_VERSION = "v1.37.2"

#: Controllers a cluster needs for API-only tests: every namespace's ``default`` ServiceAccount
#: (pods are refused without it), namespace deletion, owner-reference cleanup and Jobs. Controllers
#: that make pods for nodes (DaemonSets, Deployments) are left out, so one test's applied
#: manifests never put pods on another test's Nodes; so is the node lifecycle controller, which
#: would mark heartbeat-less Nodes unreachable.
CONTROLLERS = (
    "serviceaccount-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "job-controller",
)

T = TypeVar("T")


class ClusterError(RuntimeError):
    """A control-plane component did not start or a kubectl call failed."""


#: Set by ``make e2e``: a peer that was not built is then a failure, never a skip.
REQUIRED = os.environ.get("CONFNODE_E2E") == "1"


def missing_binaries(names: Iterable[str] = CONTROL_PLANE) -> list[str]:
    return [name for name in names if not os.access(BIN / name, os.X_OK)]


def require_binaries(*names: str) -> None:
    """Skip when a peer built by e2e/build.sh is absent, or fail under ``make e2e``."""
    missing = missing_binaries(names or CONTROL_PLANE)
    if missing:
        message = f"e2e binaries not built: {', '.join(missing)} in {BIN} (run `bash e2e/build.sh`)"
        if REQUIRED:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None], what: str, timeout: float = 30.0, every: float = 0.2
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


@dataclass
class Component:
    """One process of the cluster (control plane or a test's peer), logging into its directory."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if self.env is None else dict(self.env),
            )

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ClusterError(f"{self.name} exited with status {code}:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_healthy(component: Component, url: str, client: httpx.Client, timeout: float) -> None:
    """Poll ``url`` until it answers 200, failing at once (with the log) if the process died."""
    last = "no answer yet"

    def ready() -> bool:
        nonlocal last
        component.check_running()
        try:
            response = client.get(url, timeout=5)
        except httpx.HTTPError as error:
            last = str(error)
            return False
        last = f"HTTP {response.status_code}: {response.text[-500:]}"
        return response.status_code == 200

    try:
        wait_for(ready, f"{component.name} at {url}", timeout=timeout)
    except TimeoutError as error:
        raise ClusterError(f"{error} (last: {last}):\n{component.tail()}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    server: str, ca_pem: bytes, user: Mapping[str, Any], name: str = "e2e"
) -> dict[str, Any]:
    """A one-context kubeconfig (JSON is valid kubeconfig YAML) with everything embedded."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": {"cluster": "e2e", "user": name}}],
        "current-context": name,
    }


def _client_user(cert: trustme.LeafCert) -> dict[str, str]:
    return {
        "client-certificate-data": _b64(cert.cert_chain_pems[0].bytes()),
        "client-key-data": _b64(cert.private_key_pem.bytes()),
    }


@dataclass
class Cluster:
    workdir: Path
    server: str
    ca_file: Path
    admin_kubeconfig: Path
    admin_cert: Path
    admin_key: Path
    components: list[Component]

    # --- kubectl ---------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as the admin (or ``kubeconfig``); raise with stderr on failure."""
        argv = [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig or self.admin_kubeconfig)]
        argv += args
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def apply(self, *objects: Mapping[str, Any], kubeconfig: Path | None = None) -> None:
        """Server-side apply of API objects given as dicts."""
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl(
            "apply",
            "--server-side",
            "--field-manager=e2e",
            "-f",
            "-",
            input=json.dumps(document),
            kubeconfig=kubeconfig,
        )

    def wait_for_object(
        self, kind: str, name: str, *, namespace: str | None = None, timeout: float = 30
    ) -> None:
        scope = ("-n", namespace) if namespace else ()
        wait_for(
            lambda: self.kubectl("get", kind, name, *scope, check=False).returncode == 0,
            f"{kind} {namespace + '/' if namespace else ''}{name}",
            timeout,
        )

    # --- identities ------------------------------------------------------------------------------

    def sa_kubeconfig(self, namespace: str, name: str, *, token: bool = False) -> Path:
        """A kubeconfig acting as ServiceAccount ``namespace/name``.

        By default the admin impersonates it (the API server then adds the ServiceAccount groups
        itself, so RBAC sees exactly what the pod would); ``token=True`` gets a real bound token
        from the TokenRequest API instead, for clients that cannot impersonate.
        """
        ca_pem = self.ca_file.read_bytes()
        if token:
            issued = self.kubectl("create", "token", name, "-n", namespace, "--duration=2h")
            user: dict[str, Any] = {"token": issued.stdout.strip()}
        else:
            user = {
                "client-certificate-data": _b64(self.admin_cert.read_bytes()),
                "client-key-data": _b64(self.admin_key.read_bytes()),
                "as": f"system:serviceaccount:{namespace}:{name}",
            }
        path = self.workdir / f"sa-{namespace}-{name}{'-token' if token else ''}.kubeconfig"
        path.write_text(json.dumps(kubeconfig(self.server, ca_pem, user, f"{namespace}-{name}")))
        return path

    # --- nodes -----------------------------------------------------------------------------------

    def register_node(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        taints: Iterable[Mapping[str, str]] = (),
        capacity: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a Ready Node as a kubelet registers it, then let it take pods.

        The kubelet creates its Node with capacity, allocatable, conditions and the well-known
        labels; the TaintNodesByCondition admission plugin adds ``node.kubernetes.io/not-ready``,
        which the node lifecycle controller removes once it sees Ready — done here by hand, as that
        controller does not run (it would mark a Node without heartbeats unreachable).
        """
        resources = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        resources.update(capacity or {})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def condition(kind: str, status: str, reason: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **(labels or {}),
                },
            },
            "spec": {"taints": [dict(t) for t in taints]},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                    condition("Ready", "True", "KubeletReady"),
                ],
                "addresses": [{"type": "Hostname", "address": name}],
                "nodeInfo": {
                    "kubeletVersion": KUBERNETES_VERSION,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "none://e2e",
                    "kernelVersion": "",
                    "osImage": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                    "kubeProxyVersion": "",
                },
            },
        }
        self.kubectl("create", "-f", "-", input=json.dumps(node))
        self.kubectl("taint", "nodes", name, "node.kubernetes.io/not-ready:NoSchedule-")
        return self.kubectl_json("get", "node", name)  # type: ignore[no-any-return]

    def kubelet_status_update(
        self, name: str, *, device_plugin_capacity: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """One kubelet node-status sync: device-plugin resources into capacity, then allocatable
        = capacity for every resource (no reservations), which is how capacity an agent patched
        into the status (node-status EPC, ADR 0005) becomes schedulable on a real node.
        """
        node = self.kubectl_json("get", "node", name)
        capacity = {**node["status"]["capacity"], **(device_plugin_capacity or {})}
        patch = {"status": {"capacity": capacity, "allocatable": capacity}}
        self.kubectl(
            "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
        )
        return self.kubectl_json("get", "node", name)  # type: ignore[no-any-return]

    # --- processes and diagnostics ---------------------------------------------------------------

    def spawn(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> Component:
        """Start a peer (webhook, node agent, ...) whose log is shown with the control plane's
        when a test fails and which is stopped with the cluster if the test does not stop it."""
        component = Component(name, argv, self.workdir / f"{name}-{len(self.components)}.log", env)
        self.components.append(component)
        return component

    def logs(self, lines: int = 40) -> str:
        return "\n\n".join(
            f"--- {c.name} ({c.log_path}) ---\n{c.tail(lines)}" for c in self.components
        )

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()


def _write_key_pair(private: Path, public: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def start_cluster(workdir: Path, timeout: float = 120.0) -> Cluster:
    """Start the control plane in ``workdir``; on any failure stop what started and raise."""
    missing = missing_binaries()
    if missing:
        raise ClusterError(f"missing {', '.join(missing)} in {BIN}: run `bash e2e/build.sh`")
    pki = workdir / "pki"
    pki.mkdir(parents=True)
    # One CA for client certificates (--client-ca-file); the API server's serving certificate is
    # its own, self-generated in --cert-dir.
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(pki / "client-ca.crt"))

    def identity(user: str, group: str | None = None) -> trustme.LeafCert:
        # The API server reads the user from the CN and the group from O; trustme insists on a
        # SAN, which no one reads here.
        return client_ca.issue_cert("e2e-client", common_name=user, organization_name=group)

    admin = identity("e2e-admin", "system:masters")
    admin.cert_chain_pems[0].write_to_path(str(pki / "admin.crt"))
    admin.private_key_pem.write_to_path(str(pki / "admin.key"))
    _write_key_pair(pki / "sa.key", pki / "sa.pub")  # ServiceAccount token signing
    # The aggregation layer's front proxy, as kubeadm sets it up: the controller manager and the
    # scheduler look its CA up for their own authentication and log errors until it exists.
    proxy_ca = trustme.CA()
    proxy_ca.cert_pem.write_to_path(str(pki / "front-proxy-ca.crt"))
    proxy_client = proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    proxy_client.cert_chain_pems[0].write_to_path(str(pki / "front-proxy-client.crt"))
    proxy_client.private_key_pem.write_to_path(str(pki / "front-proxy-client.key"))

    components: list[Component] = []

    def start(name: str, *args: str) -> Component:
        component = Component(name, [str(BIN / name), *args], workdir / f"{name}.log")
        components.append(component)
        return component

    try:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = start(
            "etcd",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--listen-metrics-urls=",
            # Throwaway data: skipping fsync keeps the shared 2-core machine responsive.
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        with httpx.Client() as plain:
            _wait_healthy(etcd, f"{etcd_url}/health", plain, timeout)

        server = f"https://127.0.0.1:{api_port}"
        apiserver = start(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The `kubernetes` Service's endpoints may not be loopback, and nothing here needs them.
            "--endpoint-reconciler-type=none",
            f"--secure-port={api_port}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            "--authorization-mode=Node,RBAC",
            # Default plugins (PodSecurity, ServiceAccount, ...) plus NodeRestriction, as kubeadm.
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--profiling=false",
        )
        # The serving certificate is self-signed at start-up, so it can only be trusted once the
        # server answers; /readyz is public (system:public-info-viewer). The admin's verified
        # call after that proves the certificate, the client CA and the admin identity.
        with httpx.Client(verify=False) as anonymous:
            _wait_healthy(apiserver, f"{server}/readyz", anonymous, timeout)
        ca_file = workdir / "apiserver-certs" / "apiserver.crt"
        tls = ssl.create_default_context(cafile=str(ca_file))
        tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        with httpx.Client(verify=tls) as admin_client:
            _wait_healthy(apiserver, f"{server}/readyz?verbose", admin_client, timeout)

        ca_pem = ca_file.read_bytes()

        def write_kubeconfig(name: str, cert: trustme.LeafCert) -> Path:
            path = workdir / f"{name}.kubeconfig"
            path.write_text(json.dumps(kubeconfig(server, ca_pem, _client_user(cert), name)))
            return path

        admin_kubeconfig = write_kubeconfig("admin", admin)
        # Off-the-shelf identities: the bootstrap RBAC policy already binds these names.
        for name, user, extra in (
            (
                "kube-controller-manager",
                "system:kube-controller-manager",
                # Each controller as its own kube-system ServiceAccount, held to its own
                # bootstrap role (as kubeadm runs it), not as the manager's broad identity.
                [f"--controllers={','.join(CONTROLLERS)}", "--use-service-account-credentials"],
            ),
            ("kube-scheduler", "system:kube-scheduler", []),
        ):
            config = write_kubeconfig(name, identity(user))
            port = free_port()
            component = start(
                name,
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                *extra,
            )
            # Self-signed serving certificates; health needs no credentials. The scheduler's
            # /readyz waits for its informers, so the first pod of a test is not missed.
            check = "readyz" if name == "kube-scheduler" else "healthz"
            with httpx.Client(verify=False) as anonymous:
                _wait_healthy(component, f"https://127.0.0.1:{port}/{check}", anonymous, timeout)
        return Cluster(
            workdir=workdir,
            server=server,
            ca_file=ca_file,
            admin_kubeconfig=admin_kubeconfig,
            admin_cert=pki / "admin.crt",
            admin_key=pki / "admin.key",
            components=components,
        )
    except BaseException:
        for component in reversed(components):
            component.stop()
        raise


def confnode_command() -> list[str]:
    """The repo's ``confnode`` CLI from the virtualenv running the tests."""
    found = shutil.which("confnode", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "confnode"]


def node_agent_rbac(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """The shipped node-agent RBAC (``deploy/base/node-agent/rbac.yaml``), its ServiceAccount
    moved into ``namespace`` and its cluster-scoped objects renamed with ``-<suffix>``."""
    documents = list(yaml.safe_load_all((REPO / "deploy/base/node-agent/rbac.yaml").read_text()))
    for document in documents:
        metadata = document["metadata"]
        if document["kind"] == "ServiceAccount":
            metadata["namespace"] = namespace
        else:
            metadata["name"] = f"{metadata['name']}-{suffix}"
        if document["kind"] == "ClusterRoleBinding":
            document["roleRef"]["name"] = f"{document['roleRef']['name']}-{suffix}"
            for subject in document["subjects"]:
                subject["namespace"] = namespace
    return documents
