"""confnode: confidential-computing nodes for Kubernetes (Intel SGX DCAP)."""

from __future__ import annotations

from confnode.errors import (
    CollateralFetchError,
    ConfnodeError,
    InfrastructureError,
    InvalidCollateral,
    InvalidInput,
    InvalidQuote,
    VerificationError,
)

__all__ = [
    "CollateralFetchError",
    "ConfnodeError",
    "InfrastructureError",
    "InvalidCollateral",
    "InvalidInput",
    "InvalidQuote",
    "VerificationError",
]
