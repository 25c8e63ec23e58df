"""Metrics of the node agent (device plugin). Names and meanings: docs/metrics.md.

Callers push plain values in; this module knows nothing about gRPC or the kubelet, so the same
registry is fed by the agent and by tests. No pod-UID labels: pod/namespace/container names keep
series bounded by the node's pod count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge

from confnode.metrics.health import Check, serve_metrics_and_health

__all__ = ["AllocationSample", "NodeAgentMetrics", "serve_metrics"]


class AllocationSample(Protocol):
    """One container's EPC allocation (``confnode.deviceplugin.podresources.EpcAllocation``)."""

    @property
    def namespace(self) -> str: ...
    @property
    def pod(self) -> str: ...
    @property
    def container(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def bytes(self) -> int: ...


class NodeAgentMetrics:
    """The node agent's metric families, on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.epc_capacity = Gauge(
            "confnode_epc_capacity_bytes",
            "EPC of the node per NUMA node.",
            ["numa_node"],
            registry=r,
        )
        self.epc_mode = Gauge(
            "confnode_epc_advertise_mode",
            "1 for the way EPC is advertised (devices or node-status), per resource.",
            ["resource", "mode"],
            registry=r,
        )
        self.epc_allocated = Gauge(
            "confnode_epc_allocated_bytes",
            "EPC allocated to a container, from the kubelet PodResources API.",
            ["namespace", "pod", "container", "resource"],
            registry=r,
        )
        self.devices = Gauge(
            "confnode_device_plugin_devices",
            "Devices advertised through ListAndWatch by health.",
            ["resource", "health"],
            registry=r,
        )
        self.registered = Gauge(
            "confnode_device_plugin_registered",
            "1 while the resource is registered with the current kubelet.",
            ["resource"],
            registry=r,
        )
        self.registrations = Counter(
            "confnode_device_plugin_registrations",
            "Successful Register calls to the kubelet.",
            ["resource"],
            registry=r,
        )
        self.registration_failures = Counter(
            "confnode_device_plugin_registration_failures",
            "Failed Register calls to the kubelet.",
            ["resource"],
            registry=r,
        )
        self.kubelet_restarts = Counter(
            "confnode_kubelet_restarts",
            "Kubelet restarts seen (a new kubelet.sock).",
            registry=r,
        )
        self.quote_helper_up = Gauge(
            "confnode_quote_helper_up",
            "1 when the quote-helper (aesmd) socket accepts connections.",
            registry=r,
        )
        self.node_status_patches = Counter(
            "confnode_node_status_patches",
            "Rounds of node-status capacity / node label patches by result (ok/error).",
            ["result"],
            registry=r,
        )
        self.pod_resources_errors = Counter(
            "confnode_pod_resources_errors",
            "Failed PodResources List calls.",
            registry=r,
        )

    def set_epc_capacity(self, epc_by_numa: Iterable[tuple[int, int]]) -> None:
        for numa, size in epc_by_numa:
            self.epc_capacity.labels(numa_node=str(numa)).set(size)

    def set_mode(self, resource: str, mode: str) -> None:
        self.epc_mode.labels(resource=resource, mode=mode).set(1)

    def set_devices(self, resource: str, *, count: int, healthy: bool) -> None:
        self.devices.labels(resource=resource, health="Healthy").set(count if healthy else 0)
        self.devices.labels(resource=resource, health="Unhealthy").set(0 if healthy else count)

    def set_registered(self, resource: str, registered: bool) -> None:
        self.registered.labels(resource=resource).set(1 if registered else 0)

    def registration_result(self, resource: str, ok: bool) -> None:
        (self.registrations if ok else self.registration_failures).labels(resource=resource).inc()
        self.set_registered(resource, ok)

    def kubelet_restarted(self) -> None:
        self.kubelet_restarts.inc()

    def set_quote_helper_up(self, up: bool) -> None:
        self.quote_helper_up.set(1 if up else 0)

    def node_status_patched(self, ok: bool) -> None:
        self.node_status_patches.labels(result="ok" if ok else "error").inc()

    def set_allocations(self, allocations: Iterable[AllocationSample]) -> None:
        """Replace all allocation series, so containers that ended disappear."""
        fresh: Mapping[tuple[str, str, str, str], int] = {
            (a.namespace, a.pod, a.container, a.resource): a.bytes for a in allocations
        }
        self.epc_allocated.clear()
        for (namespace, pod, container, resource), value in fresh.items():
            self.epc_allocated.labels(
                namespace=namespace, pod=pod, container=container, resource=resource
            ).set(value)


def serve_metrics(
    metrics: NodeAgentMetrics, port: int, addr: str = "0.0.0.0", *, live: Check, ready: Check
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics``, ``/healthz`` (``live``) and ``/readyz`` (``ready``) from a daemon
    thread; returns the server and its thread."""
    return serve_metrics_and_health(metrics.registry, port, addr, live=live, ready=ready)
