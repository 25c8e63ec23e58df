"""Intel SGX/TDX DCAP verification collateral: decoding, models and the 9-part bundle.

Pure parsing: bytes and text in, frozen dataclasses out, :class:`confnode.InvalidCollateral` on
malformed input. Signatures are *not* checked here (that is ``confnode.verify``), but everything
needed to check them exactly is kept: the signed JSON bodies as the bytes Intel signed.
"""

from __future__ import annotations

from confnode.collateral._bundle import ChainInput, Collateral, CrlInput
from confnode.collateral._decode import (
    clear_parse_caches,
    extract_signed_value,
    normalise_pem_chain,
    parse_certificate_der,
    parse_crl,
    parse_json_object,
    parse_pem_chain,
    parse_signature_der,
    parse_signature_hex,
    signature_to_der,
)
from confnode.collateral._models import (
    SUPPORTED_ENCLAVE_IDENTITY_VERSIONS,
    SUPPORTED_TCB_INFO_VERSIONS,
    EnclaveIdentity,
    QeTcbLevel,
    TcbInfo,
    TcbLevel,
    TcbStatus,
    TdxModule,
    TdxModuleIdentity,
    parse_enclave_identity,
    parse_tcb_info,
)
from confnode.collateral._signed import SignedQeIdentity, SignedTcbInfo

__all__ = [
    "SUPPORTED_ENCLAVE_IDENTITY_VERSIONS",
    "SUPPORTED_TCB_INFO_VERSIONS",
    "ChainInput",
    "Collateral",
    "CrlInput",
    "EnclaveIdentity",
    "QeTcbLevel",
    "SignedQeIdentity",
    "SignedTcbInfo",
    "TcbInfo",
    "TcbLevel",
    "TcbStatus",
    "TdxModule",
    "TdxModuleIdentity",
    "clear_parse_caches",
    "extract_signed_value",
    "normalise_pem_chain",
    "parse_certificate_der",
    "parse_crl",
    "parse_enclave_identity",
    "parse_json_object",
    "parse_pem_chain",
    "parse_signature_der",
    "parse_signature_hex",
    "parse_tcb_info",
    "signature_to_der",
]
