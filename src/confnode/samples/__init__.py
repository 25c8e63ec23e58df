"""Sample applications that use confnode the way a workload on a confidential node would.

:mod:`confnode.samples.enclave_app` is the enclave-aware app of ``make demo``: it binds a fresh
key into a quote obtained over the AESM socket, attests it and receives a released key.
"""

from __future__ import annotations

from confnode.samples.enclave_app import (
    SAMPLE_MR_ENCLAVE,
    SAMPLE_MR_SIGNER,
    STEPS,
    EnclaveApp,
    SampleInfrastructureError,
    SampleInputError,
    SampleResult,
    SampleStepError,
    SampleVerificationError,
    Step,
)

__all__ = [
    "SAMPLE_MR_ENCLAVE",
    "SAMPLE_MR_SIGNER",
    "STEPS",
    "EnclaveApp",
    "SampleInfrastructureError",
    "SampleInputError",
    "SampleResult",
    "SampleStepError",
    "SampleVerificationError",
    "Step",
]
