"""A simulated SGX platform shaped exactly like Intel's, for machines without SGX.

Simulated quotes and collateral chain to a *simulated* root CA (its subject says so) and go
through the same verifiers as real ones when that root is supplied as the trust anchor. Nothing
here is trusted by default anywhere.
"""

from __future__ import annotations

from confnode.sim.enclave import SimCpu, SimEnclave, SimEnclaveIdentity
from confnode.sim.platform import (
    DEFAULT_FMSPC,
    SIM_QE_MRSIGNER,
    SimConfig,
    SimPcsResponses,
    SimPlatform,
)
from confnode.sim.qe import (
    AESM_INVALID_REPORT,
    AESM_PARAMETER_ERROR,
    InvalidReportError,
    QuoteParameterError,
    QuotingError,
    SimQuotingEnclave,
)
from confnode.sim.tcb import PLATFORM_STATUSES, TCB_LEVELS

__all__ = [
    "AESM_INVALID_REPORT",
    "AESM_PARAMETER_ERROR",
    "DEFAULT_FMSPC",
    "PLATFORM_STATUSES",
    "SIM_QE_MRSIGNER",
    "TCB_LEVELS",
    "InvalidReportError",
    "QuoteParameterError",
    "QuotingError",
    "SimConfig",
    "SimCpu",
    "SimEnclave",
    "SimEnclaveIdentity",
    "SimPcsResponses",
    "SimPlatform",
    "SimQuotingEnclave",
]
