"""Every overlay renders with kustomize and is valid for current Kubernetes minor versions.

Beyond schema validity: every confnode container's arguments name real CLI options and runs the
released image, containers are locked down (no privilege escalation, read-only root, no
capabilities, seccomp), and the webhook configurations can only block pods that opted into SGX.
How the API server itself treats these objects is tested against a real one in ``e2e/``.
"""

from __future__ import annotations

import json
import shlex
from importlib.metadata import version as package_version
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import kubernetes_validate
import pytest
from deploy_render import DEPLOY, render

from confnode.cli._common import main_group
from confnode.deviceplugin.nodestatus import MANAGED_LABEL_KEYS
from confnode.webhook import EPC_RESOURCES

TARGETS = [
    "overlays/sim",
    "overlays/hardware",
    "overlays/cert-manager",
    "overlays/nfd",
    "samples",
    "examples",
]
K8S_VERSIONS = ["1.34", "1.35", "1.36", "1.37"]

# Custom resources have no schema in kubernetes-validate: check them against the fields we use.
_STR = {"type": "string"}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "NodeFeatureRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "nfd.k8s-sigs.io/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["rules"],
                "additionalProperties": False,
                "properties": {
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "matchFeatures"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _STR,
                                "labels": {"type": "object", "additionalProperties": _STR},
                                "extendedResources": {
                                    "type": "object",
                                    "additionalProperties": _STR,
                                },
                                "matchFeatures": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["feature"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "feature": _STR,
                                            "matchExpressions": {"type": "object"},
                                            "matchName": {"type": "object"},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
    "Issuer": {
        "type": "object",
        "required": ["apiVersion", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "spec": {"type": "object", "minProperties": 1},
        },
    },
    "Certificate": {
        "type": "object",
        "required": ["apiVersion", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "spec": {
                "type": "object",
                "required": ["secretName", "issuerRef"],
                # A serving certificate names its DNS names; a CA certificate its common name.
                "anyOf": [
                    {"required": ["dnsNames"]},
                    {"required": ["isCA", "commonName"], "properties": {"isCA": {"const": True}}},
                ],
                "properties": {
                    "isCA": {"type": "boolean"},
                    "commonName": _STR,
                    "secretName": _STR,
                    "dnsNames": {"type": "array", "items": _STR, "minItems": 1},
                    "issuerRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": _STR, "kind": {"enum": ["Issuer", "ClusterIssuer"]}},
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    kind = doc["kind"]
    if kind in ("Deployment", "DaemonSet", "StatefulSet"):
        return [doc["spec"]["template"]["spec"]]
    if kind == "Job":
        return [doc["spec"]["template"]["spec"]]
    return []


def _all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


RELEASED = {
    name: f"ghcr.io/confnode/{name}:{package_version('confnode')}"
    for name in ("confnode", "confnode-dcap")
}


def test_every_confnode_container_runs_the_released_image(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Kustomize's image transformer rewrites only what it sees: a container added by an overlay's
    patch keeps the bare name unless that overlay rewrites it too — and "confnode" pulls from
    Docker Hub."""
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            for container in _all_containers(spec):
                image = container["image"]
                name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
                where = f"{target} {doc['metadata']['name']}/{container['name']}"
                if name in RELEASED:
                    assert image == RELEASED[name], f"{where}: {image}"
                else:  # third-party sample images are fully qualified
                    assert "." in image.split("/", 1)[0], f"{where}: {image}"


def test_schema_valid(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _target, docs = rendered
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def _check_cli(argv: list[str], where: str) -> None:
    """Resolve the subcommand path and check every --option exists on the final command."""
    command: click.Command = main_group
    rest = list(argv)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"{where}: unknown command {rest[0]!r} in {argv}"
        command, rest = sub, rest[1:]
    known = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    for token in rest:
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            assert name in known, f"{where}: {command.name} has no option {name} ({sorted(known)})"


def _confnode_invocations(container: dict[str, Any]) -> list[list[str]]:
    """The confnode argument vectors a container runs (directly or inside ``sh -c``)."""
    command = container.get("command")
    if command is None:
        return [list(container.get("args", []))]
    if command[:2] != ["sh", "-c"]:
        return [command[1:] + list(container.get("args", []))] if command[0] == "confnode" else []
    lexer = shlex.shlex(command[2], posix=True, punctuation_chars=True)
    calls: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            calls.append([])
        elif token in (">", ">>", "<"):
            skip_next = True  # the redirection target is a file name, not an argument
        elif skip_next:
            skip_next = False
        else:
            calls[-1].append(token)
    return [call[1:] for call in calls if call and call[0] == "confnode"]


def test_confnode_arguments_exist(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    checked = 0
    for doc in docs:
        for spec in _pod_specs(doc):
            for container in _all_containers(spec):
                if not container["image"].startswith("ghcr.io/confnode/confnode"):
                    continue
                for argv in _confnode_invocations(container):
                    _check_cli(argv, f"{target} {doc['metadata']['name']}/{container['name']}")
                    checked += 1
    assert checked or target == "examples"  # examples hold only an HPA


def test_containers_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            where = f"{target} {doc['kind']}/{doc['metadata']['name']}"
            if target != "samples":
                assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            for container in spec.get("initContainers", []) + spec["containers"]:
                context = container.get("securityContext", {})
                assert context.get("allowPrivilegeEscalation") is False, where
                assert context.get("capabilities", {}).get("drop") == ["ALL"], where
                if target != "samples":
                    assert context.get("readOnlyRootFilesystem") is True, where
                if container in spec["containers"]:
                    resources = container.get("resources", {})
                    assert resources.get("requests") and resources.get("limits"), where


def test_webhooks_only_block_opted_in_pods() -> None:
    docs = render("overlays/cert-manager")
    configs = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]
    assert {d["kind"] for d in configs} == {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    for config in configs:
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        for hook in config["webhooks"]:
            excluded = {
                value
                for expression in hook["namespaceSelector"]["matchExpressions"]
                if expression["operator"] == "NotIn"
                for value in expression["values"]
            }
            assert {"kube-system", "disabled"} <= excluded
            # CREATE only: updates of running pods (a Job dropping its finalizer) must never wait
            # for the webhook, nor be refused when it is down.
            assert [r["operations"] for r in hook["rules"]] == [["CREATE"]], hook["name"]
            selector = hook["objectSelector"]
            if hook["failurePolicy"] == "Fail":
                assert selector == {"matchLabels": {"confnode.io/sgx": "true"}}
            else:
                assert hook["failurePolicy"] == "Ignore"
                assert selector["matchExpressions"][0]["operator"] == "NotIn"
                # A hung webhook must not cost every pod in the cluster: only pods that request
                # EPC are sent (matchConditions run in the API server), with the shortest timeout.
                assert hook["timeoutSeconds"] == 1
                (condition,) = hook["matchConditions"]
                assert all(name in condition["expression"] for name in EPC_RESOURCES)


def test_epc_without_device_is_refused_in_the_api_server(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """The ValidatingAdmissionPolicy backs the Ignore-path webhook in every overlay; what it
    refuses is tested on a real API server (e2e/test_webhook.py)."""
    target, docs = rendered
    if target in ("samples", "examples"):
        return
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert sorted(policies) == ["confnode-epc-device", "confnode-provision"], target
    assert sorted((b["spec"]["policyName"], b["spec"]["validationActions"]) for b in bindings) == [
        ("confnode-epc-device", ["Deny"]),
        ("confnode-provision", ["Deny"]),
    ]
    text = json.dumps(policies["confnode-epc-device"]["spec"])
    assert all(name in text for name in EPC_RESOURCES)
    webhook = next(
        d for d in docs if d["kind"] == "Deployment" and "webhook" in d["metadata"]["name"]
    )
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    device = next(
        a.split("=", 1)[1] for a in container["args"] if a.startswith("--device-resource=")
    )
    assert f"'{device}' in c.resources.limits" in text


def test_every_epc_container_asks_for_the_enclave_device(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Pods in confnode-system are outside the webhook: one spec must work on every node size, so
    EPC always comes with the enclave device resource (the only source of /dev/sgx_enclave in
    node-status mode)."""
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            labels = doc["spec"]["template"]["metadata"].get("labels", {})
            for container in _all_containers(spec):
                limits = container.get("resources", {}).get("limits", {})
                if set(limits) & set(EPC_RESOURCES):
                    where = f"{target} {doc['metadata']['name']}/{container['name']}"
                    if target == "samples":  # workloads: the fail-closed webhook path adds it
                        assert labels.get("confnode.io/sgx") == "true", where
                    else:
                        assert limits.get("sgx.intel.com/enclave") == "1", where


def _quote_helper(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "confnode-quote-helper"
    )


def test_dcap_quote_helper_has_its_libraries_and_qcnl_config(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """``--backend dcap`` loads libsgx_dcap_ql.so.1, whose quote provider reads
    /etc/sgx_default_qcnl.conf: only the confnode-dcap image has them, and the config must name a
    PCCS a pod can reach."""
    target, docs = rendered
    if target in ("samples", "examples"):
        return
    spec = _quote_helper(docs)
    helper = next(c for c in spec["containers"] if c["name"] == "quote-helper")
    if "--backend=dcap" not in helper["args"]:
        assert target == "overlays/sim"
        return
    assert helper["image"] == RELEASED["confnode-dcap"], target
    mount = next(
        m for m in helper["volumeMounts"] if m["mountPath"] == "/etc/sgx_default_qcnl.conf"
    )
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    config_map = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    )
    qcnl = json.loads(config_map["data"][mount["subPath"]])
    host = urlsplit(qcnl["pccs_url"]).hostname
    assert host not in (None, "localhost", "127.0.0.1"), qcnl["pccs_url"]
    assert qcnl["pccs_url"].endswith("/sgx/certification/v4/")
    dockerfile = (DEPLOY / "images" / "dcap" / "Dockerfile").read_text()
    assert "libsgx-dcap-ql" in dockerfile and "libsgx-dcap-default-qpl" in dockerfile


def test_non_root_device_users_check_device_ownership_first(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Host SGX device nodes are root 0600/0660: a non-root container can open the ones it is
    given only when the runtime hands them over (device_ownership_from_security_context). An
    earlier init container with the same devices says so instead of a failing first quote."""
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            checked: set[str] = set()
            for container in _all_containers(spec):
                limits = container.get("resources", {}).get("limits", {})
                devices = {
                    r for r in limits if r.startswith("sgx.intel.com/") and r not in EPC_RESOURCES
                }
                script = " ".join(container.get("command", []))
                if "device_ownership_from_security_context" in script:
                    checked |= devices
                elif devices and _run_as_user(spec, container) != 0 and target != "samples":
                    where = f"{target} {doc['metadata']['name']}/{container['name']}"
                    assert devices <= checked, where


def test_daemonsets_select_a_label_present_at_boot(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """The node agent writes the confnode.io/sgx* labels itself: a DaemonSet selecting on them
    never starts on a new or autoscaled node (and the agent could evict itself)."""
    target, docs = rendered
    for doc in docs:
        if doc["kind"] != "DaemonSet":
            continue
        spec = doc["spec"]["template"]["spec"]
        keys = set(spec.get("nodeSelector", {}))
        affinity = spec.get("affinity", {}).get("nodeAffinity", {})
        for term in affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get(
            "nodeSelectorTerms", []
        ):
            keys |= {e["key"] for e in term.get("matchExpressions", [])}
        assert not keys & set(MANAGED_LABEL_KEYS), (target, doc["metadata"]["name"], keys)


def test_one_epc_source_per_overlay(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Two sources (NFD's extended resource and the agent's) would let the scheduler count EPC
    twice under two names."""
    target, docs = rendered
    if target in ("samples", "examples"):
        return
    sources: list[str] = []
    for doc in docs:
        if doc["kind"] == "NodeFeatureRule":
            for rule in doc["spec"]["rules"]:
                sources += [r for r in rule.get("extendedResources", {}) if r in EPC_RESOURCES]
        for spec in _pod_specs(doc):
            for container in _all_containers(spec):
                for argv in _confnode_invocations(container):
                    if argv[:1] == ["device-plugin"]:
                        names = [
                            a.split("=", 1)[1] for a in argv if a.startswith("--resource-name=")
                        ]
                        sources += names or ["kubernetes.azure.com/sgx_epc_mem_in_MiB"]
    assert len(sources) == 1, (target, sources)


def test_no_autoscaler_scales_on_epc(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """A pod's EPC is its request, a constant: an HPA on it never moves or jumps to maxReplicas."""
    target, docs = rendered
    for doc in docs:
        if doc["kind"] == "HorizontalPodAutoscaler":
            text = json.dumps(doc["spec"]["metrics"]).lower()
            assert "epc" not in text, (target, doc["metadata"]["name"])


def test_own_namespace_is_exempt_from_webhooks() -> None:
    namespace = next(d for d in render("overlays/sim") if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["confnode.io/webhook"] == "disabled"


def _run_as_user(spec: dict[str, Any], container: dict[str, Any]) -> int | None:
    for context in (container.get("securityContext", {}), spec.get("securityContext", {})):
        if "runAsUser" in context:
            return int(context["runAsUser"])
    return None


def test_non_root_writers_of_host_paths_get_them_chowned_first(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """kubelet creates hostPath directories root-owned: a non-root container can write one only
    after an earlier root init container chowned it (its command names the mount path)."""
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            host_paths = {v["name"] for v in spec.get("volumes", []) if "hostPath" in v}
            prepared: set[str] = set()
            for container in spec.get("initContainers", []) + spec["containers"]:
                where = f"{target} {doc['metadata']['name']}/{container['name']}"
                uid = _run_as_user(spec, container)
                script = " ".join(container.get("command", []))
                for mount in container.get("volumeMounts", []):
                    if mount["name"] not in host_paths or mount.get("readOnly"):
                        continue
                    if uid == 0:
                        if "chown" in script and mount["mountPath"] in script:
                            prepared.add(mount["name"])
                    else:
                        assert mount["name"] in prepared, f"{where} cannot write {mount}"


def test_probe_sees_the_platform_state_it_quotes_for(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
                for argv in _confnode_invocations(container):
                    if argv[:2] != ["node", "probe"]:
                        continue
                    state = [a.split("=", 1)[1] for a in argv if a.startswith("--state=")]
                    assert state, f"{target} {doc['metadata']['name']}: probe without --state"
                    assert any(state[0].startswith(m) for m in mounts), (target, state, mounts)


def test_containerised_host_detection_uses_the_cpuid_instruction(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Through a /host/dev mount the device cgroup refuses /dev/cpu/*/cpuid: use the instruction."""
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                for argv in _confnode_invocations(container):
                    if any(a.startswith("--dev-root=") and a != "--dev-root=/dev" for a in argv):
                        assert "--cpuid=native" in argv, f"{target} {container['name']}: {argv}"


def test_node_agent_may_only_patch_nodes() -> None:
    """The agent's API calls are PATCH nodes/<self> (labels) and nodes/<self>/status (EPC)."""
    role = next(
        d
        for d in render("overlays/sim")
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "confnode-node-agent"
    )
    assert sorted((r["resources"], r["verbs"]) for r in role["rules"]) == [
        (["nodes"], ["patch"]),
        (["nodes/status"], ["patch"]),
    ]


def test_attestation_issuer_is_its_service(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Tokens name the service as iss (relying parties fetch its /certs), never 0.0.0.0."""
    target, docs = rendered
    services = {
        f"{d['metadata']['name']}.{d['metadata']['namespace']}.svc"
        for d in docs
        if d["kind"] == "Service"
    }
    names = {n for d in docs if d["kind"] == "Certificate" for n in d["spec"].get("dnsNames", [])}
    for doc in docs:
        for spec in _pod_specs(doc):
            for container in spec["containers"]:
                for argv in _confnode_invocations(container):
                    if argv[:2] != ["attestation", "serve"]:
                        continue
                    issuer = [a.split("=", 1)[1] for a in argv if a.startswith("--issuer=")]
                    assert issuer, f"{target}: attestation serve without --issuer"
                    host = urlsplit(issuer[0]).hostname
                    assert host in services and host in names, (target, issuer, services)


def test_every_namespaced_object_lands_in_confnode_system(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Certificates, the Issuer and the sim PCCS must sit next to the pods that mount their
    Secrets and the URLs that name them (…confnode-system.svc), not in kubectl's namespace."""
    target, docs = rendered
    if target in ("samples", "examples"):
        return
    cluster_scoped = {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "NodeFeatureRule",
    }
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            where = f"{target} {doc['kind']}/{doc['metadata']['name']}"
            assert doc["metadata"].get("namespace") == "confnode-system", where


def test_node_checks_see_the_quote_helper_socket(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """doctor and the agent label confnode.io/sgx.aesm from the socket: they must both see it."""
    target, docs = rendered
    for doc in docs:
        for spec in _pod_specs(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                for argv in _confnode_invocations(container):
                    simulated = any(a.startswith("--sim-epc") for a in argv)
                    if argv[:1] not in (["doctor"], ["device-plugin"]) or simulated:
                        continue
                    socket = next(
                        (a.split("=", 1)[1] for a in argv if a.startswith("--aesm-socket=")),
                        "/var/run/aesmd/aesm.socket",
                    )
                    assert str(PurePosixPath(socket).parent) in mounts, (target, container["name"])


def test_webhooks_trust_a_ca_that_outlives_serving_certificate_renewals() -> None:
    """cainjector copies ca.crt of the named Certificate's Secret: with a self-signed serving
    certificate that is the leaf itself, which changes (new key) at every renewal."""
    docs = render("overlays/cert-manager")
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for config in (d for d in docs if d["kind"].endswith("WebhookConfiguration")):
        source = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        serving = by_kind_name[("Certificate", source.split("/", 1)[1])]
        issuer = by_kind_name[("Issuer", serving["spec"]["issuerRef"]["name"])]
        ca_secret = issuer["spec"]["ca"]["secretName"]
        (ca,) = [
            d for d in docs if d["kind"] == "Certificate" and d["spec"]["secretName"] == ca_secret
        ]
        assert ca["spec"]["isCA"] is True
        assert "rotationPolicy" not in ca["spec"]["privateKey"]  # the root's key stays


def test_critical_pods_have_a_priority_class_quota(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """API servers that limit critical priority classes (GKE) admit such pods outside
    kube-system only where a ResourceQuota with a matching PriorityClass scope exists."""
    target, docs = rendered
    quotas = {
        (d["metadata"]["namespace"], value)
        for d in docs
        if d["kind"] == "ResourceQuota"
        for e in d["spec"].get("scopeSelector", {}).get("matchExpressions", [])
        if e["scopeName"] == "PriorityClass" and e["operator"] == "In"
        for value in e["values"]
    }
    for doc in docs:
        for spec in _pod_specs(doc):
            priority = spec.get("priorityClassName", "")
            namespace = doc["metadata"].get("namespace")
            if priority.startswith("system-") and namespace != "kube-system":
                assert (namespace, priority) in quotas, (target, doc["metadata"]["name"])


def test_no_replica_count_beside_an_autoscaler() -> None:
    """`kubectl apply` would reset an HPA-scaled Deployment to the manifest's replicas."""
    docs = [d for target in TARGETS for d in render(target)]
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in scaled:
            assert "replicas" not in doc["spec"], doc["metadata"]["name"]
