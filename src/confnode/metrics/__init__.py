"""Per-component Prometheus registries (never the global one, which collides across tests),
served with the daemons' health endpoints."""

from __future__ import annotations

from confnode.metrics.health import Check, health_app, on_loop, serve_metrics_and_health
from confnode.metrics.node import NodeAgentMetrics, serve_metrics

__all__ = [
    "Check",
    "NodeAgentMetrics",
    "health_app",
    "on_loop",
    "serve_metrics",
    "serve_metrics_and_health",
]
