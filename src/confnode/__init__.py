"""confnode: confidential-computing nodes for Kubernetes (Intel SGX DCAP).

The stable Python API is the evidence core: parse a quote, load collateral, verify as Intel's
QVL does. Everything else is importable from its package but not promised.
"""

from __future__ import annotations

from confnode.collateral import Collateral, TcbStatus
from confnode.errors import (
    CollateralFetchError,
    ConfnodeError,
    InfrastructureError,
    InvalidCollateral,
    InvalidInput,
    InvalidQuote,
    VerificationError,
)
from confnode.sgx import Quote, parse_quote
from confnode.verify import VerifiedQuote, verify_quote

__all__ = [
    "Collateral",
    "CollateralFetchError",
    "ConfnodeError",
    "InfrastructureError",
    "InvalidCollateral",
    "InvalidInput",
    "InvalidQuote",
    "Quote",
    "TcbStatus",
    "VerificationError",
    "VerifiedQuote",
    "parse_quote",
    "verify_quote",
]
