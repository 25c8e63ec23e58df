"""Fixtures for the SGX codec tests: every real quote of the shared vector set, decoded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

PHALA = "Phala-Network_dcap-qvl/sample"
OASIS = "oasisprotocol_oasis-core/go/common/sgx/pcs/testdata"
FORTANIX = "fortanix_rust-sgx/intel-sgx/pcs/tests/data"


@dataclass(frozen=True)
class VectorQuote:
    """What README.txt of the vector set states about one quote file."""

    path: str
    version: int
    cert_type: int  # innermost certification data type
    trailing: int  # bytes after the signature data
    fmspc: str | None = None

    @property
    def hex_text(self) -> bool:
        return self.path.endswith(".hex")


VECTOR_QUOTES = (
    VectorQuote(f"{PHALA}/sgx_quote", 3, 5, 0, "00A067110000"),
    VectorQuote(f"{PHALA}/tdx_quote", 4, 5, 70),
    VectorQuote(f"{PHALA}/tdx_quote_outdated", 5, 5, 0, "90C06F000000"),
    VectorQuote(f"{PHALA}/tdx-quote.hex", 4, 5, 70),
    VectorQuote(f"{PHALA}/quote-from-tappd.hex", 4, 5, 70),
    VectorQuote(f"{OASIS}/quote_v3_ecdsa_p256_pck_chain.bin", 3, 5, 0, "00606A000000"),
    VectorQuote(f"{OASIS}/quote_v3_ecdsa_p256_eppid.bin", 3, 3, 0),
    VectorQuote(f"{OASIS}/quote_v4_tdx_ecdsa_p256.bin", 4, 5, 0),
    VectorQuote(f"{OASIS}/quote_v4_tdx_ecdsa_p256_out_of_date.bin", 4, 5, 0),
    VectorQuote(f"{OASIS}/quote_v4_tdx_ecdsa_p256_trailing.bin", 4, 5, 70),
    VectorQuote(f"{FORTANIX}/quote.bin", 3, 5, 0, "00906EA10000"),
)


def load_quote_bytes(root: Path, vector: VectorQuote) -> bytes:
    data = (root / vector.path).read_bytes()
    if not vector.hex_text:
        return data
    text = data.decode("ascii").strip()
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


@pytest.fixture(params=VECTOR_QUOTES, ids=lambda v: Path(v.path).name)
def vector_quote(request: pytest.FixtureRequest, vectors: Path) -> tuple[VectorQuote, bytes]:
    vector: VectorQuote = request.param
    return vector, load_quote_bytes(vectors, vector)


@pytest.fixture(scope="session")
def sgx_quote_bytes(vectors: Path) -> bytes:
    """The worked example of sgx-dcap.md §1.8."""
    return (vectors / PHALA / "sgx_quote").read_bytes()


@pytest.fixture(scope="session")
def tdx_v5_bytes(vectors: Path) -> bytes:
    return (vectors / PHALA / "tdx_quote_outdated").read_bytes()


@pytest.fixture(scope="session")
def real_quotes(vectors: Path) -> tuple[bytes, ...]:
    return tuple(load_quote_bytes(vectors, v) for v in VECTOR_QUOTES)
