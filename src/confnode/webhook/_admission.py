"""Pure admission decisions for SGX pods: ``mutate(review)`` and ``validate(review)``.

Both take an AdmissionReview v1 request (a dict, as decoded from JSON) and return the
AdmissionReview v1 response dict. They never raise for odd pod specs — nil maps, missing
containers, wrong types are read as empty — and raise :class:`WebhookError` only when the review
itself is unusable (no ``request.uid``), which the server answers with HTTP 400.

An SGX pod is one labelled ``confnode.io/sgx: "true"`` or with a container asking for EPC under a
known vendor name. Everything else passes untouched.

Mutations (CREATE only; a pod's spec is immutable on UPDATE):

1. EPC is expressed in the resource this cluster advertises, converting units between vendor names.
2. EPC requests = limits (the missing one is copied from the other).
3. Every EPC container gets the enclave device resource, whatever the node's EPC mode, so one pod
   spec runs on every node size and never without ``/dev/sgx_enclave`` (intel-device-plugins
   #1695).
4. Pods opting into out-of-process quoting (annotation ``confnode.io/aesm-socket: "true"``) get
   the ``confnode.io/aesm-socket`` resource in every SGX container; the device plugin's Allocate
   for it mounts the quote-helper socket directory and sets ``SGX_AESM_ADDR=1``. No volume is
   added: a hostPath volume is refused by Pod Security baseline and restricted.
5. The SGX node taint is tolerated and the pod is pinned to SGX nodes by node affinity.

Validation (CREATE only: updates of a running pod — dropping a finalizer, a label — must never be
held up by rules or by the webhook being down) rejects EPC larger than the largest node offers,
conflicting vendor names in one container, EPC requests ≠ limits, an EPC container without the
device resource, and — per namespace — debug enclaves or enclave identities outside an allow-list.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confnode.webhook._errors import InvalidQuantity, WebhookError
from confnode.webhook._patch import diff
from confnode.webhook._quantity import EPC_RESOURCES, MIB, epc_bytes, format_epc

SGX_LABEL = "confnode.io/sgx"
#: Opt-in to out-of-process quoting, and the extended resource whose Allocate grants it.
AESM_ANNOTATION = "confnode.io/aesm-socket"
AESM_RESOURCE = "confnode.io/aesm-socket"
#: Intel's webhook annotation; the value ``aesmd`` means the same opt-in.
INTEL_QUOTE_ANNOTATION = "sgx.intel.com/quote-provider"
ENCLAVE_RESOURCE = "sgx.intel.com/enclave"
EPC_ANNOTATION = "confnode.io/epc-mib"
DEBUG_ANNOTATION = "confnode.io/enclave-debug"
MRENCLAVE_ANNOTATION = "confnode.io/enclave-mrenclave"
MRSIGNER_ANNOTATION = "confnode.io/enclave-mrsigner"


@dataclass(frozen=True, slots=True)
class NamespacePolicy:
    """Optional per-namespace rules on the enclave a pod declares through annotations."""

    forbid_debug: bool = False
    allowed_mrenclaves: frozenset[str] = frozenset()
    allowed_mrsigners: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What this cluster advertises, as set up by the node agent."""

    #: The EPC resource the node agent advertises (one of ``EPC_RESOURCES``).
    epc_resource: str = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
    #: Device resource that grants the SGX device nodes; the node agent serves it in both EPC
    #: modes (its ``--enclave-resource``).
    device_resource: str = ENCLAVE_RESOURCE
    #: Largest EPC any node offers, in MiB; ``None`` disables the check.
    max_node_epc_mib: int | None = None
    node_label: str = SGX_LABEL
    taint_key: str = SGX_LABEL
    namespaces: Mapping[str, NamespacePolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epc_resource not in EPC_RESOURCES:
            known = ", ".join(sorted(EPC_RESOURCES))
            raise ValueError(f"unknown EPC resource {self.epc_resource!r} (known: {known})")


# --- reading odd specs safely -------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        for container in _list(spec.get(key)):
            if isinstance(container, dict):
                yield container


def _epc_names(container: dict[str, Any]) -> set[str]:
    resources = _dict(container.get("resources"))
    names: set[str] = set()
    for section in ("requests", "limits"):
        names.update(name for name in _dict(resources.get(section)) if name in EPC_RESOURCES)
    return names


def _wants_quoting(pod: dict[str, Any]) -> bool:
    annotations = _dict(_dict(pod.get("metadata")).get("annotations"))
    return (
        str(annotations.get(AESM_ANNOTATION, "")).lower() == "true"
        or annotations.get(INTEL_QUOTE_ANNOTATION) == "aesmd"
    )


def is_sgx_pod(pod: Any, config: WebhookConfig) -> bool:
    pod = _dict(pod)
    labels = _dict(_dict(pod.get("metadata")).get("labels"))
    # Exactly "true", as the webhook configuration's objectSelector matches it: a pod labelled
    # "True" would otherwise be treated as SGX here but routed to the fail-open entry.
    if labels.get(config.node_label) == "true":
        return True
    return any(_epc_names(c) for c in _containers(_dict(pod.get("spec"))))


# --- mutation ----------------------------------------------------------------------------------


def _container_epc(container: dict[str, Any]) -> tuple[int | None, int | None]:
    """(request, limit) EPC bytes of a container with a single vendor name."""
    resources = _dict(container.get("resources"))
    out: list[int | None] = []
    for section in ("requests", "limits"):
        values = _dict(resources.get(section))
        found = [epc_bytes(n, values[n]) for n in values if n in EPC_RESOURCES]
        out.append(found[0] if found else None)
    return out[0], out[1]


def _mutate_container(container: dict[str, Any], config: WebhookConfig) -> int:
    """Rewrite one container's EPC in the advertised unit; returns its EPC bytes (0 if none)."""
    names = _epc_names(container)
    if not names or len(names) > 1:
        return 0  # no EPC, or conflicting names: validation rejects, mutation keeps its hands off
    try:
        request, limit = _container_epc(container)
    except InvalidQuantity:
        return 0
    request = limit if request is None else request
    limit = request if limit is None else limit
    assert request is not None and limit is not None
    resources = container.get("resources")
    if not isinstance(resources, dict):
        resources = container["resources"] = {}
    for section, amount in (("requests", request), ("limits", limit)):
        values = resources.get(section)
        if not isinstance(values, dict):
            values = resources[section] = {}
        for name in list(values):
            if name in EPC_RESOURCES and name != config.epc_resource:
                del values[name]
        wanted = format_epc(config.epc_resource, amount)
        current = values.get(config.epc_resource)
        if current is None or epc_bytes(config.epc_resource, current) != epc_bytes(
            config.epc_resource, wanted
        ):
            values[config.epc_resource] = wanted
        values.setdefault(config.device_resource, "1")
    return limit


def _ensure_aesm_socket(sgx_containers: list[dict[str, Any]]) -> None:
    for container in sgx_containers:
        resources = container.get("resources")
        if not isinstance(resources, dict):
            resources = container["resources"] = {}
        for section in ("requests", "limits"):
            values = resources.get(section)
            if not isinstance(values, dict):
                values = resources[section] = {}
            values.setdefault(AESM_RESOURCE, "1")


def _ensure_scheduling(spec: dict[str, Any], config: WebhookConfig) -> None:
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = spec["tolerations"] = []
    if not any(
        isinstance(t, dict) and t.get("key") == config.taint_key and t.get("operator") == "Exists"
        for t in tolerations
    ):
        tolerations.append({"key": config.taint_key, "operator": "Exists", "effect": "NoSchedule"})

    requirement = {"key": config.node_label, "operator": "In", "values": ["true"]}
    affinity = spec.get("affinity")
    if not isinstance(affinity, dict):
        affinity = spec["affinity"] = {}
    node_affinity = affinity.get("nodeAffinity")
    if not isinstance(node_affinity, dict):
        node_affinity = affinity["nodeAffinity"] = {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(required, dict):
        required = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {}
    terms = required.get("nodeSelectorTerms")
    if not isinstance(terms, list) or not terms:
        terms = required["nodeSelectorTerms"] = [{}]
    # Terms are ORed: the SGX requirement must be ANDed into every one of them.
    for index, term in enumerate(terms):
        if not isinstance(term, dict):
            term = terms[index] = {}
        expressions = term.get("matchExpressions")
        if not isinstance(expressions, list):
            expressions = term["matchExpressions"] = []
        if requirement not in expressions:
            expressions.append(dict(requirement, values=["true"]))


def _effective_mib(spec: dict[str, Any], mib: dict[int, int]) -> int:
    """The pod's EPC as the scheduler counts it: init containers run one at a time (next to the
    sidecars — ``restartPolicy: Always`` — started before them), so the pod needs the larger of
    the biggest init step and the app containers plus all sidecars, not the sum of everything."""
    sidecars = peak = 0
    for container in _list(spec.get("initContainers")):
        if not isinstance(container, dict):
            continue
        if container.get("restartPolicy") == "Always":
            sidecars += mib[id(container)]
        else:
            peak = max(peak, sidecars + mib[id(container)])
    apps = sum(mib[id(c)] for c in _list(spec.get("containers")) if isinstance(c, dict))
    return max(peak, apps + sidecars)


def mutate_pod(pod: dict[str, Any], config: WebhookConfig) -> dict[str, Any]:
    """Return the mutated copy of an SGX pod (the input is not modified)."""
    pod = copy.deepcopy(pod)
    if not isinstance(pod.get("spec"), dict):
        pod["spec"] = {}
    spec = pod["spec"]
    sgx_containers: list[dict[str, Any]] = []
    mib: dict[int, int] = {}  # per container, in whole MiB as the scheduler counts units
    for container in _containers(spec):
        amount = _mutate_container(container, config)
        mib[id(container)] = -(-amount // MIB)
        if amount or _epc_names(container):
            sgx_containers.append(container)
    total = _effective_mib(spec, mib)
    if not sgx_containers:  # labelled pod without EPC: it talks to enclaves but runs none itself
        sgx_containers = [c for c in _list(spec.get("containers")) if isinstance(c, dict)]
    if _wants_quoting(pod):
        _ensure_aesm_socket(sgx_containers)
    _ensure_scheduling(spec, config)
    if total:
        metadata = pod.get("metadata")
        if not isinstance(metadata, dict):
            metadata = pod["metadata"] = {}
        annotations = metadata.get("annotations")
        if not isinstance(annotations, dict):
            annotations = metadata["annotations"] = {}
        annotations[EPC_ANNOTATION] = str(total)
    return pod


# --- validation --------------------------------------------------------------------------------


def pod_violations(pod: dict[str, Any], namespace: str, config: WebhookConfig) -> list[str]:
    """Reasons to reject an SGX pod; empty when it is acceptable."""
    problems: list[str] = []
    spec = _dict(pod.get("spec"))
    for container in _containers(spec):
        name = container.get("name", "?")
        names = _epc_names(container)
        if len(names) > 1:
            problems.append(
                f"container {name}: EPC requested under conflicting names {sorted(names)}; "
                "use exactly one"
            )
            continue
        if not names:
            continue
        try:
            request, limit = _container_epc(container)
        except InvalidQuantity as error:
            problems.append(f"container {name}: {error.message}")
            continue
        # The API server defaults a missing request to the limit (and a limit-less extended
        # resource request is invalid anyway), so only two explicit, different values conflict.
        if request is not None and limit is not None and request != limit:
            problems.append(
                f"container {name}: EPC requests ({request} B) must equal limits ({limit} B); "
                "extended resources cannot be overcommitted"
            )
        amount = max(request or 0, limit or 0)
        if config.max_node_epc_mib is not None and amount > config.max_node_epc_mib * MIB:
            problems.append(
                f"container {name}: asks for {-(-amount // MIB)} MiB EPC, the largest node "
                f"offers {config.max_node_epc_mib} MiB"
            )
        limits = _dict(_dict(container.get("resources")).get("limits"))
        if config.device_resource not in limits:
            problems.append(
                f"container {name}: requests EPC without {config.device_resource}; it would "
                "run without SGX device access"
            )
    policy = config.namespaces.get(namespace)
    if policy is not None:
        annotations = _dict(_dict(pod.get("metadata")).get("annotations"))
        if policy.forbid_debug and str(annotations.get(DEBUG_ANNOTATION, "")).lower() == "true":
            problems.append(f"namespace {namespace} forbids debug enclaves")
        for key, allowed, what in (
            (MRENCLAVE_ANNOTATION, policy.allowed_mrenclaves, "MRENCLAVE"),
            (MRSIGNER_ANNOTATION, policy.allowed_mrsigners, "MRSIGNER"),
        ):
            declared = annotations.get(key)
            if allowed and (not isinstance(declared, str) or declared.lower() not in allowed):
                problems.append(
                    f"namespace {namespace} allows {what} in {sorted(allowed)}, pod declares "
                    f"{declared!r}"
                )
    return problems


# --- AdmissionReview plumbing ------------------------------------------------------------------


def _request(review: Any) -> dict[str, Any]:
    request = _dict(_dict(review).get("request"))
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise WebhookError("AdmissionReview has no request.uid")
    return request


def _response(
    request: dict[str, Any],
    *,
    allowed: bool = True,
    patch: list[dict[str, Any]] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": request["uid"], "allowed": allowed}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    if message is not None:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def mutate(review: Any, config: WebhookConfig) -> dict[str, Any]:
    """AdmissionReview → AdmissionReview with a JSON patch for SGX pods on CREATE."""
    request = _request(review)
    pod = request.get("object")
    if (
        request.get("operation") != "CREATE"
        or not isinstance(pod, dict)
        or not is_sgx_pod(pod, config)
    ):
        return _response(request)
    return _response(request, patch=diff(pod, mutate_pod(pod, config)))


def validate(review: Any, config: WebhookConfig) -> dict[str, Any]:
    """AdmissionReview → AdmissionReview allowing or denying SGX pods on CREATE.

    Anything else is allowed: the spec that matters cannot change after CREATE, and re-judging a
    running pod by today's rules would keep it from dropping a finalizer (Jobs, Terminating pods).
    """
    request = _request(review)
    pod = request.get("object")
    if request.get("operation") != "CREATE" or not isinstance(pod, dict):
        return _response(request)
    if not is_sgx_pod(pod, config):
        return _response(request)
    namespace = str(request.get("namespace") or _dict(pod.get("metadata")).get("namespace") or "")
    problems = pod_violations(pod, namespace, config)
    if problems:
        return _response(request, allowed=False, message="; ".join(problems))
    return _response(request)
