"""Property tests over generated pods: patches apply, pods stay valid, re-mutation is empty."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import kubernetes_validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confnode.webhook import (
    EPC_RESOURCES,
    WebhookConfig,
    epc_bytes,
    format_epc,
    is_sgx_pod,
    mutate,
    validate,
)

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
EPC_VALUE = {
    "kubernetes.azure.com/sgx_epc_mem_in_MiB": st.integers(1, 4096).map(str),
    "alibabacloud.com/sgx_epc_MiB": st.integers(1, 4096).map(str),
    "sgx.intel.com/epc": st.one_of(
        st.integers(1, 4096).map(lambda n: f"{n}Mi"),
        st.integers(1, 8).map(lambda n: f"{n}Gi"),
        st.integers(1, 10**9).map(str),
        st.integers(1, 4096).map(lambda n: f"{n}Ki"),
    ),
}


@st.composite
def containers(draw: st.DrawFn, name: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": "registry.example/app:1"}
    resources: dict[str, Any] = {}
    if draw(st.booleans()):
        resources["limits"] = {"cpu": "100m"}
    if draw(st.booleans()):
        vendor = draw(st.sampled_from(sorted(EPC_RESOURCES)))
        value = draw(EPC_VALUE[vendor])
        where = draw(st.sampled_from(["limits", "requests", "both", "different"]))
        if where in ("limits", "requests"):
            resources.setdefault(where, {})[vendor] = value
        else:
            resources.setdefault("limits", {})[vendor] = value
            other = value if where == "both" else draw(EPC_VALUE[vendor])
            resources.setdefault("requests", {})[vendor] = other
    if resources or draw(st.booleans()):
        container["resources"] = resources
    if draw(st.booleans()):
        container["env"] = [{"name": "A", "value": "1"}]
    return container


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    spec: dict[str, Any] = {"containers": [draw(containers(n)) for n in names]}
    if draw(st.booleans()):
        spec["initContainers"] = [draw(containers("init-" + names[0]))]
    if draw(st.booleans()):
        spec["tolerations"] = [{"key": "other", "operator": "Exists"}]
    if draw(st.booleans()):
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        }
    if draw(st.booleans()):
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    metadata: dict[str, Any] = {"name": "p", "namespace": "default"}
    if draw(st.booleans()):
        metadata["labels"] = {"confnode.io/sgx": draw(st.sampled_from(["true", "false"]))}
    if draw(st.booleans()):
        metadata["annotations"] = {"confnode.io/aesm-socket": "true"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _review(pod: dict[str, Any]) -> dict[str, Any]:
    return {"request": {"uid": "1", "operation": "CREATE", "namespace": "default", "object": pod}}


def _patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(base64.b64decode(response["patch"])) if "patch" in response else []


CONFIGS = st.sampled_from(
    [
        WebhookConfig(),
        WebhookConfig(epc_resource="sgx.intel.com/epc", device_resource="confnode.io/sgx-enclave"),
        WebhookConfig(epc_resource="alibabacloud.com/sgx_epc_MiB"),
    ]
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods(), config=CONFIGS)
def test_generated_pods(pod: dict[str, Any], config: WebhookConfig) -> None:
    response = mutate(_review(pod), config)["response"]
    ops = _patch(response)
    if not is_sgx_pod(pod, config):
        assert ops == []
        return
    result = jsonpatch.apply_patch(pod, ops)
    kubernetes_validate.validate(result, "1.37", strict=True)
    # Volumes and environment come from Allocate, never from the webhook (Pod Security).
    assert result["spec"].get("volumes") == pod["spec"].get("volumes")
    for before, after in zip(_all(pod), _all(result), strict=True):
        assert after.get("env") == before.get("env")
        limits = after.get("resources", {}).get("limits", {})
        if set(limits) & set(EPC_RESOURCES):
            assert limits[config.device_resource] == "1"
    assert _patch(mutate(_review(result), config)["response"]) == []
    verdict = validate(_review(result), config)["response"]
    assert verdict["allowed"] is not _overcommitted(pod, config.epc_resource)


def _all(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod["spec"].get("initContainers", []) + pod["spec"]["containers"]  # type: ignore[no-any-return]


def _overcommitted(pod: dict[str, Any], target: str) -> bool:
    """Do EPC requests and limits still differ once expressed in the advertised unit?"""

    def advertised(name: str, value: str) -> int:
        return epc_bytes(target, format_epc(target, epc_bytes(name, value)))

    for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        resources = container.get("resources", {})
        for name in EPC_RESOURCES:
            limit, request = (resources.get(s, {}).get(name) for s in ("limits", "requests"))
            if limit and request and advertised(name, limit) != advertised(name, request):
                return True
    return False
