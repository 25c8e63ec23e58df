"""Per-component Prometheus registries (never the global one, which collides across tests)."""

from __future__ import annotations

from confnode.metrics.node import NodeAgentMetrics, serve_metrics

__all__ = ["NodeAgentMetrics", "serve_metrics"]
