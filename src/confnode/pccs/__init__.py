"""PCS/PCCS-compatible collateral service (for the simulated platform) and caching client."""

from __future__ import annotations

from confnode.pccs.client import (
    CollateralClient,
    Fetcher,
    FetchResponse,
    HttpxFetcher,
    TdxRoutes,
    api_base,
    offline_collateral_client,
    quote_collateral_key,
    tdx_collateral_client,
)

__all__ = [
    "CollateralClient",
    "FetchResponse",
    "Fetcher",
    "HttpxFetcher",
    "TdxRoutes",
    "api_base",
    "offline_collateral_client",
    "quote_collateral_key",
    "tdx_collateral_client",
]
