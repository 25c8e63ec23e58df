"""Signed TCB Info / QE Identity: the exact signed bytes, the raw signature and the parsed model.

Intel signs the bytes of the ``"tcbInfo"`` / ``"enclaveIdentity"`` value exactly as PCS serves
them. The body is therefore kept as those bytes (cut out of the response, never re-serialised)
and the model is parsed from the very same bytes, so what is verified is what is interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confnode.collateral._decode import (
    extract_signed_value,
    parse_json_object,
    parse_signature_hex,
)
from confnode.collateral._models import (
    EnclaveIdentity,
    TcbInfo,
    parse_enclave_identity,
    parse_tcb_info,
)
from confnode.errors import InvalidCollateral

__all__ = ["SignedQeIdentity", "SignedTcbInfo"]

_SIGNATURE_SIZE = 64


def _body_bytes(body: str | bytes, what: str) -> bytes:
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidCollateral(f"{what}: body is not encodable as UTF-8") from None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise InvalidCollateral(f"{what}: expected the body as str or bytes, found {type(body)}")


def _check_signature(signature: bytes, what: str) -> bytes:
    if not isinstance(signature, bytes | bytearray) or len(signature) != _SIGNATURE_SIZE:
        size = len(signature) if isinstance(signature, bytes | bytearray) else type(signature)
        raise InvalidCollateral(f"{what}: signature must be 64 bytes raw r||s, found {size}")
    return bytes(signature)


def _check_fields(body: object, signature: object, what: str) -> None:
    """Constructor invariant: immutable bytes (so instances hash) and a 64-byte signature."""
    if not isinstance(body, bytes):
        raise InvalidCollateral(f"{what}: body must be bytes, found {type(body).__name__}")
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_SIZE:
        raise InvalidCollateral(f"{what}: signature must be 64 bytes raw r||s")


def _split_pcs_body(document: str | bytes, key: str, what: str) -> tuple[bytes, bytes, Any]:
    body, value, members = extract_signed_value(document, key, what=what)
    if "signature" not in members:
        raise InvalidCollateral(f"{what}: PCS response has no top-level 'signature' member")
    signature = members["signature"]
    if not isinstance(signature, str):
        raise InvalidCollateral(
            f"{what}: 'signature' must be a hex string, found {type(signature).__name__}"
        )
    return body, parse_signature_hex(signature, what=f"{what} signature"), value


def _pcs_document(key: str, body: bytes, signature: bytes) -> bytes:
    return (
        b'{"' + key.encode() + b'":' + body + b',"signature":"' + signature.hex().encode() + b'"}'
    )


@dataclass(frozen=True, slots=True)
class SignedTcbInfo:
    """TCB Info with the exact bytes Intel signed (``body``) and the 64-byte ``r‖s`` signature."""

    body: bytes
    signature: bytes
    info: TcbInfo

    def __post_init__(self) -> None:
        _check_fields(self.body, self.signature, "TCB Info")

    @classmethod
    def from_pcs_body(cls, document: str | bytes) -> SignedTcbInfo:
        """From a PCS/PCCS ``/tcb`` response body ``{"tcbInfo": {...}, "signature": "<hex>"}``."""
        body, signature, value = _split_pcs_body(document, "tcbInfo", "TCB Info")
        return cls(body=body, signature=signature, info=parse_tcb_info(value))

    @classmethod
    def from_parts(cls, body: str | bytes, signature: bytes) -> SignedTcbInfo:
        """From the raw signed body (as dcap-qvl bundles store it) and a 64-byte signature."""
        raw = _body_bytes(body, "TCB Info")
        signature = _check_signature(signature, "TCB Info")
        return cls(
            body=raw,
            signature=signature,
            info=parse_tcb_info(parse_json_object(raw, what="TCB Info")),
        )

    @property
    def body_text(self) -> str:
        """The signed body as text (it is UTF-8 JSON by construction)."""
        return self.body.decode("utf-8")

    def to_pcs_body(self) -> bytes:
        """A PCS-style response body carrying exactly these signed bytes."""
        return _pcs_document("tcbInfo", self.body, self.signature)


@dataclass(frozen=True, slots=True)
class SignedQeIdentity:
    """QE Identity with the exact bytes Intel signed (``body``) and the 64-byte signature."""

    body: bytes
    signature: bytes
    identity: EnclaveIdentity

    def __post_init__(self) -> None:
        _check_fields(self.body, self.signature, "QE Identity")

    @classmethod
    def from_pcs_body(cls, document: str | bytes) -> SignedQeIdentity:
        """From a PCS/PCCS ``/qe/identity`` body ``{"enclaveIdentity": {...}, "signature": …}``."""
        body, signature, value = _split_pcs_body(document, "enclaveIdentity", "QE Identity")
        return cls(body=body, signature=signature, identity=parse_enclave_identity(value))

    @classmethod
    def from_parts(cls, body: str | bytes, signature: bytes) -> SignedQeIdentity:
        """From the raw signed body (as dcap-qvl bundles store it) and a 64-byte signature."""
        raw = _body_bytes(body, "QE Identity")
        signature = _check_signature(signature, "QE Identity")
        identity = parse_enclave_identity(parse_json_object(raw, what="QE Identity"))
        return cls(body=raw, signature=signature, identity=identity)

    @property
    def body_text(self) -> str:
        """The signed body as text (it is UTF-8 JSON by construction)."""
        return self.body.decode("utf-8")

    def to_pcs_body(self) -> bytes:
        """A PCS-style response body carrying exactly these signed bytes."""
        return _pcs_document("enclaveIdentity", self.body, self.signature)
