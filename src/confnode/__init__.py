"""confnode: confidential-computing nodes for Kubernetes (Intel SGX DCAP).

The stable Python API is the evidence core: parse a quote, load collateral, verify SGX and TDX
quotes as Intel's QVL does. Everything else is importable from its package but not promised.

The evidence core is imported on first use (PEP 562), not with the package: daemons that never
verify (the node agent, the webhook) would otherwise pay for it in start-up time and memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from confnode.errors import (
    CollateralFetchError,
    ConfnodeError,
    InfrastructureError,
    InvalidCollateral,
    InvalidInput,
    InvalidQuote,
    VerificationError,
)

if TYPE_CHECKING:
    from confnode.collateral import Collateral, TcbStatus
    from confnode.sgx import Quote, parse_quote
    from confnode.verify import (
        QuoteRevoked,
        VerificationResult,
        VerifiedQuote,
        VerifiedTd,
        VerifiedTdQuote,
        verify_quote,
    )

_LAZY = {
    "Collateral": "confnode.collateral",
    "TcbStatus": "confnode.collateral",
    "Quote": "confnode.sgx",
    "parse_quote": "confnode.sgx",
    "QuoteRevoked": "confnode.verify",
    "VerificationResult": "confnode.verify",
    "VerifiedQuote": "confnode.verify",
    "VerifiedTd": "confnode.verify",
    "VerifiedTdQuote": "confnode.verify",
    "verify_quote": "confnode.verify",
}

__all__ = [
    "Collateral",
    "CollateralFetchError",
    "ConfnodeError",
    "InfrastructureError",
    "InvalidCollateral",
    "InvalidInput",
    "InvalidQuote",
    "Quote",
    "QuoteRevoked",
    "TcbStatus",
    "VerificationError",
    "VerificationResult",
    "VerifiedQuote",
    "VerifiedTd",
    "VerifiedTdQuote",
    "parse_quote",
    "verify_quote",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'confnode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
