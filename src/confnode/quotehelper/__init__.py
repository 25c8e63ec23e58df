"""AESM-wire-compatible quote helper: a daemon that serves ``/var/run/aesmd/aesm.socket``.

Unmodified SGX applications (DCAP ``libsgx_dcap_ql`` in out-of-process mode, Open Enclave,
Gramine) get ECDSA quotes from it as from Intel's aesmd. The wire rules live in
:mod:`~confnode.quotehelper.handler`, the socket server in :mod:`~confnode.quotehelper.server`,
and the quoting enclave behind a :class:`QuotingBackend`: ``sim`` (the simulated platform) or
``dcap`` (Intel's DCAP quote library through ctypes).
"""

from __future__ import annotations

from pathlib import Path

from confnode.errors import InvalidInput
from confnode.quotehelper.backend import BackendError, QuotingBackend
from confnode.quotehelper.dcap import DCAP_LIBRARY, DcapBackend, DcapUnavailable
from confnode.quotehelper.handler import AesmHandler, ParsedRequest, Reply, parse_request
from confnode.quotehelper.server import HelperMetrics, QuoteHelperServer, ServerConfig
from confnode.quotehelper.sim import SimBackend

__all__ = [
    "BACKENDS",
    "DCAP_LIBRARY",
    "AesmHandler",
    "BackendError",
    "DcapBackend",
    "DcapUnavailable",
    "HelperMetrics",
    "ParsedRequest",
    "QuoteHelperServer",
    "QuotingBackend",
    "Reply",
    "ServerConfig",
    "SimBackend",
    "make_backend",
    "parse_request",
]

BACKENDS = ("sim", "dcap")


def make_backend(
    name: str, *, state_dir: Path | None = None, dcap_library: str | Path = DCAP_LIBRARY
) -> QuotingBackend:
    """Build the named backend: ``sim`` from a simulated-platform state directory, ``dcap``
    from the DCAP quote library."""
    if name == "sim":
        return SimBackend.from_state(state_dir)
    if name == "dcap":
        return DcapBackend(dcap_library)
    raise InvalidInput(f"unknown quoting backend {name!r}; expected one of {', '.join(BACKENDS)}")
