"""PCS/PCCS-compatible collateral service (for the simulated platform) and caching client."""

from __future__ import annotations

from confnode.pccs.client import (
    CollateralClient,
    Fetcher,
    FetchResponse,
    HttpxFetcher,
    api_base,
    quote_collateral_key,
)

__all__ = [
    "CollateralClient",
    "FetchResponse",
    "Fetcher",
    "HttpxFetcher",
    "api_base",
    "quote_collateral_key",
]
