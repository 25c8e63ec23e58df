"""Header names and encodings shared by the PCS/PCCS server and client (sgx-dcap.md §5)."""

from __future__ import annotations

from urllib.parse import quote, unquote

API_PREFIX = "/sgx/certification/v4"
#: Intel PCS/PCCS serve TDX TCB Info and the TD QE identity here; CRLs stay under API_PREFIX.
TDX_API_PREFIX = "/tdx/certification/v4"

PCK_CRL_ISSUER_CHAIN = "SGX-PCK-CRL-Issuer-Chain"
TCB_INFO_ISSUER_CHAIN = "TCB-Info-Issuer-Chain"
#: PCS v3 spelling of the TCB Info issuer-chain header.
TCB_INFO_ISSUER_CHAIN_V3 = "SGX-TCB-Info-Issuer-Chain"
ENCLAVE_IDENTITY_ISSUER_CHAIN = "SGX-Enclave-Identity-Issuer-Chain"
PCK_CERT_ISSUER_CHAIN = "SGX-PCK-Certificate-Issuer-Chain"
PCK_CERT_CA_TYPE = "SGX-PCK-Certificate-CA-Type"
TCBM = "SGX-TCBm"
FMSPC = "SGX-FMSPC"


def encode_chain(pem: str) -> str:
    """Percent-encode a PEM chain for a header, as Intel's PCS does (encodeURIComponent)."""
    return quote(pem, safe="")


def decode_chain(value: str) -> str:
    return unquote(value)
