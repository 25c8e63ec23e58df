"""SGX admission webhook: pure ``mutate``/``validate`` over AdmissionReview v1, thin server."""

from __future__ import annotations

from confnode.webhook._admission import (
    NamespacePolicy,
    WebhookConfig,
    is_sgx_pod,
    mutate,
    mutate_pod,
    pod_violations,
    validate,
)
from confnode.webhook._errors import InvalidQuantity, WebhookError
from confnode.webhook._patch import diff
from confnode.webhook._quantity import EPC_RESOURCES, epc_bytes, format_epc, parse_quantity

__all__ = [
    "EPC_RESOURCES",
    "InvalidQuantity",
    "NamespacePolicy",
    "WebhookConfig",
    "WebhookError",
    "diff",
    "epc_bytes",
    "format_epc",
    "is_sgx_pod",
    "mutate",
    "mutate_pod",
    "parse_quantity",
    "pod_violations",
    "validate",
]
