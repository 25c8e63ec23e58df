"""Pure admission decisions, tested without HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from confnode.cli._webhook import _namespace_policies
from confnode.errors import InvalidInput
from confnode.webhook import (
    NamespacePolicy,
    WebhookConfig,
    WebhookError,
    diff,
    epc_bytes,
    mutate,
    validate,
)

AZURE = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
ENCLAVE = "sgx.intel.com/enclave"
AESM = "confnode.io/aesm-socket"
INTEL = "sgx.intel.com/epc"
ALIBABA = "alibabacloud.com/sgx_epc_MiB"


def review(
    pod: dict[str, Any], operation: str = "CREATE", namespace: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": operation, "namespace": namespace, "object": pod},
    }


def pod(
    *containers: dict[str, Any], labels: dict[str, str] | None = None, **annotations: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p"}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": list(containers)},
    }


def container(
    name: str = "app", limits: dict[str, Any] | None = None, requests: dict[str, Any] | None = None
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if limits is not None:
        resources["limits"] = limits
    if requests is not None:
        resources["requests"] = requests
    return {"name": name, "image": "busybox", "resources": resources}


def patched(
    pod_: dict[str, Any], config: WebhookConfig
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    response = mutate(review(pod_), config)["response"]
    assert response["allowed"] is True
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return jsonpatch.apply_patch(pod_, ops), ops


def test_non_sgx_pod_untouched() -> None:
    response = mutate(review(pod(container(limits={"cpu": "1"}))), WebhookConfig())["response"]
    assert response == {"uid": "u-1", "allowed": True}


def test_intel_bytes_converted_to_azure_mib_rounding_up() -> None:
    result, _ = patched(
        pod(container(limits={INTEL: "10Mi", "cpu": "1"}), container("b", limits={INTEL: "1"})),
        WebhookConfig(),
    )
    first, second = result["spec"]["containers"]
    assert first["resources"]["limits"] == {"cpu": "1", AZURE: "10", ENCLAVE: "1"}
    assert first["resources"]["requests"] == {AZURE: "10", ENCLAVE: "1"}
    # One byte still needs a whole MiB.
    assert second["resources"]["limits"] == {AZURE: "1", ENCLAVE: "1"}
    assert result["metadata"]["annotations"]["confnode.io/epc-mib"] == "11"


def test_azure_mib_converted_to_intel_quantity() -> None:
    result, _ = patched(pod(container(limits={ALIBABA: "16"})), WebhookConfig(epc_resource=INTEL))
    assert result["spec"]["containers"][0]["resources"]["limits"] == {INTEL: "16Mi", ENCLAVE: "1"}


def test_scheduling_added() -> None:
    result, _ = patched(pod(container(limits={AZURE: "4"}), container("sidecar")), WebhookConfig())
    spec = result["spec"]
    assert {"key": "confnode.io/sgx", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [{"key": "confnode.io/sgx", "operator": "In", "values": ["true"]}]}
    ]


@pytest.mark.parametrize(
    "annotations",
    [{"confnode.io/aesm-socket": "true"}, {"sgx.intel.com/quote-provider": "aesmd"}],
)
def test_aesm_opt_in_is_a_resource_on_the_sgx_containers_only(
    annotations: dict[str, str],
) -> None:
    """Allocate of the resource mounts the socket and sets SGX_AESM_ADDR: the webhook adds no
    volume (Pod Security baseline refuses hostPath) and no env of its own."""
    result, _ = patched(
        pod(container(limits={AZURE: "4"}), container("sidecar"), **annotations), WebhookConfig()
    )
    spec = result["spec"]
    app, sidecar = spec["containers"]
    for section in ("limits", "requests"):
        assert app["resources"][section] == {AZURE: "4", ENCLAVE: "1", AESM: "1"}
    assert sidecar["resources"] == {}
    assert "volumes" not in spec
    assert "env" not in app and "volumeMounts" not in app


def test_without_opt_in_no_aesm_resource() -> None:
    result, _ = patched(pod(container(limits={AZURE: "4"})), WebhookConfig())
    assert AESM not in result["spec"]["containers"][0]["resources"]["limits"]


def test_labelled_pod_without_epc_opting_in_gets_the_socket_in_every_container() -> None:
    result, _ = patched(
        pod(
            container(),
            container("b"),
            labels={"confnode.io/sgx": "true"},
            **{"confnode.io/aesm-socket": "true"},
        ),
        WebhookConfig(),
    )
    for c in result["spec"]["containers"]:
        assert c["resources"] == {"requests": {AESM: "1"}, "limits": {AESM: "1"}}


def test_affinity_requirement_anded_into_every_term() -> None:
    p = pod(container(limits={AZURE: "4"}))
    p["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                ]
            }
        }
    }
    result, _ = patched(p, WebhookConfig())
    terms = result["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    sgx = {"key": "confnode.io/sgx", "operator": "In", "values": ["true"]}
    assert all(sgx in term["matchExpressions"] for term in terms)
    assert terms[0]["matchExpressions"][0]["key"] == "zone"
    assert terms[1]["matchFields"][0]["values"] == ["n1"]


def test_device_resource_added_by_default_and_renamable() -> None:
    """One pod spec for every node size: the enclave resource is added whatever the EPC mode."""
    for config, device in (
        (WebhookConfig(epc_resource=INTEL), ENCLAVE),
        (
            WebhookConfig(epc_resource=INTEL, device_resource="confnode.io/sgx-enclave"),
            "confnode.io/sgx-enclave",
        ),
    ):
        result, _ = patched(pod(container(limits={INTEL: "1Gi"})), config)
        limits = result["spec"]["containers"][0]["resources"]["limits"]
        assert limits == {INTEL: "1Gi", device: "1"}  # EPC already exact


def test_init_container_with_epc_gets_the_device_too() -> None:
    p = pod(container())
    p["spec"]["initContainers"] = [container("init", limits={AZURE: "2"})]
    result, _ = patched(p, WebhookConfig())
    assert result["spec"]["initContainers"][0]["resources"]["limits"] == {AZURE: "2", ENCLAVE: "1"}
    assert result["spec"]["containers"][0]["resources"] == {}


def test_remutation_is_empty_patch_and_escapes_slashes() -> None:
    first, ops = patched(pod(container(limits={INTEL: "8Mi"})), WebhookConfig())
    paths = [op["path"] for op in ops]
    assert any("kubernetes.azure.com~1sgx_epc_mem_in_MiB" in path for path in paths)
    again = mutate(review(first), WebhookConfig())["response"]
    assert "patch" not in again


def test_labelled_pod_without_epc_gets_scheduling_only() -> None:
    result, _ = patched(pod(container(), labels={"confnode.io/sgx": "true"}), WebhookConfig())
    assert result["spec"]["tolerations"][0]["key"] == "confnode.io/sgx"
    assert result["spec"]["containers"][0]["resources"] == {}


@pytest.mark.parametrize(
    "odd",
    [
        {"apiVersion": "v1", "kind": "Pod"},
        {"metadata": None, "spec": None},
        {"metadata": {"labels": None, "annotations": None}, "spec": {"containers": None}},
        {
            "metadata": {"labels": {"confnode.io/sgx": "true"}},
            "spec": {"containers": [None, 3, {"resources": None}]},
        },
        {
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"limits": None, "requests": {AZURE: "2"}}}
                ]
            }
        },
        {"spec": {"containers": [{"name": "a", "resources": {"limits": {AZURE: "lots"}}}]}},
    ],
)
def test_odd_specs_never_crash(odd: dict[str, Any]) -> None:
    for decide in (mutate, validate):
        result = decide(review(odd), WebhookConfig())
        assert result["response"]["uid"] == "u-1"


def test_requests_only_copied_to_limits() -> None:
    p = {
        "spec": {
            "containers": [{"name": "a", "resources": {"limits": None, "requests": {AZURE: "2"}}}]
        }
    }
    result, _ = patched(p, WebhookConfig())
    assert result["spec"]["containers"][0]["resources"] == {
        "limits": {AZURE: "2", ENCLAVE: "1"},
        "requests": {AZURE: "2", ENCLAVE: "1"},
    }


@pytest.mark.parametrize(
    ("pod_", "config", "reason"),
    [
        (pod(container(limits={AZURE: "10", INTEL: "10Mi"})), WebhookConfig(), "conflicting names"),
        (
            pod(container(limits={AZURE: "10"}, requests={AZURE: "5"})),
            WebhookConfig(),
            "must equal limits",
        ),
        (
            pod(container(limits={AZURE: "300"})),
            WebhookConfig(max_node_epc_mib=256),
            "largest node offers 256 MiB",
        ),
        (pod(container(limits={AZURE: "x"})), WebhookConfig(), "not a Kubernetes quantity"),
        (pod(container(limits={INTEL: "1e31"})), WebhookConfig(), "exponent beyond ±30"),
        (pod(container(limits={AZURE: "-1"})), WebhookConfig(), "negative EPC"),
        (pod(container(limits={INTEL: "1Mi"})), WebhookConfig(), "without SGX device access"),
    ],
)
def test_validation_denials(pod_: dict[str, Any], config: WebhookConfig, reason: str) -> None:
    response = validate(review(pod_), config)["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert reason in response["status"]["message"]


def test_namespace_enclave_policy() -> None:
    mre = "ab" * 32
    config = WebhookConfig(
        namespaces={"prod": NamespacePolicy(forbid_debug=True, allowed_mrenclaves=frozenset({mre}))}
    )
    ok = pod(container(limits={AZURE: "1", ENCLAVE: "1"}), **{"confnode.io/enclave-mrenclave": mre})
    assert validate(review(ok, namespace="prod"), config)["response"]["allowed"] is True
    assert validate(review(ok, namespace="dev"), config)["response"]["allowed"] is True
    debug = pod(
        container(limits={AZURE: "1", ENCLAVE: "1"}),
        **{"confnode.io/enclave-mrenclave": mre, "confnode.io/enclave-debug": "true"},
    )
    assert (
        "forbids debug"
        in validate(review(debug, namespace="prod"), config)["response"]["status"]["message"]
    )
    other = pod(
        container(limits={AZURE: "1", ENCLAVE: "1"}), **{"confnode.io/enclave-mrenclave": "cd" * 32}
    )
    assert (
        "allows MRENCLAVE"
        in validate(review(other, namespace="prod"), config)["response"]["status"]["message"]
    )


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_only_create_is_judged(operation: str) -> None:
    """A pod admitted earlier (or under older rules) must be able to drop its finalizer: Jobs
    remove batch.kubernetes.io/job-tracking from every pod, Terminating pods wait for it."""
    p = pod(container(limits={INTEL: "1Mi"}))
    assert "patch" not in mutate(review(p, operation), WebhookConfig())["response"]
    denied = pod(container(limits={AZURE: "2"}, requests={AZURE: "1"}))
    assert validate(review(denied), WebhookConfig())["response"]["allowed"] is False
    assert validate(review(denied, operation), WebhookConfig())["response"]["allowed"] is True


def test_review_without_uid_is_a_webhook_error() -> None:
    with pytest.raises(WebhookError, match=r"request\.uid"):
        mutate({"request": {}}, WebhookConfig())


def test_diff_round_trips_with_independent_patch_library() -> None:
    old = {"a/b": [1, 2], "c~d": {"x": 1}, "gone": True, "l": [1, 2, 3]}
    new = {"a/b": [1, 2, 3], "c~d": {"x": 2, "y": None}, "l": [3]}
    assert jsonpatch.apply_patch(old, diff(old, new)) == new
    assert diff(new, new) == []


@pytest.mark.parametrize(
    ("resource", "value", "expected"),
    [
        (INTEL, "1048576.00000000000000000000000001", (1 << 20) + 1),  # never rounded down
        (INTEL, "123456789012345678901234567891", 123456789012345678901234567891),
        (AZURE, "1.0000000000000000000000000001", (1 << 20) + 1),
        (INTEL, "0", 0),
        (AZURE, "0.5", 1 << 19),
        (INTEL, "1m", 1),  # a thousandth of a byte still needs a whole byte
    ],
)
def test_epc_conversion_is_exact_and_rounds_up(resource: str, value: str, expected: int) -> None:
    assert epc_bytes(resource, value) == expected


def test_long_fractional_quantity_converts_to_the_next_mib() -> None:
    result, _ = patched(
        pod(container(limits={INTEL: "1048576.00000000000000000000000001"})), WebhookConfig()
    )
    assert result["spec"]["containers"][0]["resources"]["limits"] == {AZURE: "2", ENCLAVE: "1"}


def _policies(tmp_path: Path, document: Any) -> dict[str, NamespacePolicy]:
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(document))
    return _namespace_policies(path)


def test_namespace_policy_file_is_read_strictly(tmp_path: Path) -> None:
    mre = "AB" * 32
    policies = _policies(tmp_path, {"prod": {"forbidDebug": True, "allowedMrenclaves": [mre]}})
    assert policies["prod"] == NamespacePolicy(True, frozenset({mre.lower()}), frozenset())
    for bad, reason in [
        ({"prod": {"forbidDebug": "false"}}, "expected true or false"),
        ({"prod": {"allowedMrenclaves": mre}}, "64-digit MRENCLAVE"),  # a string, not a list
        ({"prod": {"allowedMrsigners": ["cd"]}}, "64-digit MRSIGNER"),
        ({"prod": {"allowedMrEnclaves": [mre]}}, "unknown keys"),  # a typo must not disable it
        ({"prod": []}, "expected an object"),
        ([], "keyed by namespace"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            _policies(tmp_path, bad)


def test_label_must_be_exactly_true_like_the_object_selector() -> None:
    loud = pod(container(), labels={"confnode.io/sgx": "True"})
    assert "patch" not in mutate(review(loud), WebhookConfig())["response"]


def test_epc_annotation_counts_init_containers_as_the_scheduler_does() -> None:
    """Init containers run one at a time, next to the sidecars started before them."""
    p = pod(container("app", limits={AZURE: "4"}))
    p["spec"]["initContainers"] = [
        dict(container("sidecar", limits={AZURE: "2"}), restartPolicy="Always"),
        container("setup", limits={AZURE: "10"}),
        container("small", limits={AZURE: "1"}),
    ]
    result, _ = patched(p, WebhookConfig())
    assert result["metadata"]["annotations"]["confnode.io/epc-mib"] == "12"  # 2 + 10, not 17
    p["spec"]["initContainers"] = [container("setup", limits={AZURE: "3"})]
    result, _ = patched(p, WebhookConfig())
    assert result["metadata"]["annotations"]["confnode.io/epc-mib"] == "4"  # the app's 4 > 3
