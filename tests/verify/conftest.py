"""Fixtures: the real-hardware vector sets (see verify_vectors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from verify_vectors import VectorSet, oasis_collateral, utc

from confnode.collateral import (
    Collateral,
    SignedQeIdentity,
    SignedTcbInfo,
    parse_signature_der,
)


@pytest.fixture(scope="session")
def dcapqvl(vectors: Path) -> VectorSet:
    base = vectors / "Phala-Network_dcap-qvl" / "sample"
    return VectorSet(
        "dcap-qvl",
        (base / "sgx_quote").read_bytes(),
        (base / "sgx_quote_collateral.json").read_text(),
        (utc("2025-06-19T10:56:11Z"), utc("2025-07-19T10:01:18Z")),
    )


@pytest.fixture(scope="session")
def dcapqvl_root(vectors: Path) -> bytes:
    return (vectors / "Phala-Network_dcap-qvl" / "src" / "TrustedRootCA.der").read_bytes()


@pytest.fixture(scope="session")
def oasis_dir(vectors: Path) -> Path:
    return vectors / "oasisprotocol_oasis-core" / "go" / "common" / "sgx" / "pcs" / "testdata"


@pytest.fixture(scope="session")
def oasis(oasis_dir: Path) -> VectorSet:
    return VectorSet(
        "oasis",
        (oasis_dir / "quote_v3_ecdsa_p256_pck_chain.bin").read_bytes(),
        oasis_collateral(oasis_dir),
        (utc("2022-12-19T09:40:10Z"), utc("2023-01-15T12:45:36Z")),
    )


@pytest.fixture(scope="session")
def fortanix_dir(vectors: Path) -> Path:
    return vectors / "fortanix_rust-sgx" / "intel-sgx" / "pcs" / "tests" / "data"


@pytest.fixture(scope="session")
def fortanix(fortanix_dir: Path) -> VectorSet:
    """TCB Info v2 + QE Identity in Fortanix wrappers (DER signatures), processor CRL only."""
    tcb = json.loads((fortanix_dir / "00906ea10000.tcb").read_text())
    qe = json.loads((fortanix_dir / "qe3_identity.id").read_text())
    crl = json.loads((fortanix_dir / "processor.crl").read_text())
    collateral = Collateral.from_parts(
        tcb_info=SignedTcbInfo.from_parts(
            tcb["raw_tcb_info"], parse_signature_der(tcb["signature"])
        ),
        tcb_info_issuer_chain="".join(tcb["ca_chain"]),
        qe_identity=SignedQeIdentity.from_parts(
            qe["raw_enclave_identity"], parse_signature_der(qe["signature"])
        ),
        qe_identity_issuer_chain="".join(qe["ca_chain"]),
        pck_crl=crl["crl"],
        pck_crl_issuer_chain="".join(crl["ca_chain"]),
    )
    return VectorSet(
        "fortanix",
        (fortanix_dir / "quote.bin").read_bytes(),
        collateral.to_json(),
        (utc("2020-05-18T17:49:24Z"), utc("2020-06-17T17:49:21Z")),
    )
