"""Fixtures for collateral tests: paths into the shared real-hardware vector set."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dcap_qvl_dir(vectors: Path) -> Path:
    return vectors / "Phala-Network_dcap-qvl" / "sample"


@pytest.fixture(scope="session")
def oasis_dir(vectors: Path) -> Path:
    return vectors / "oasisprotocol_oasis-core" / "go" / "common" / "sgx" / "pcs" / "testdata"


@pytest.fixture(scope="session")
def fortanix_dir(vectors: Path) -> Path:
    return vectors / "fortanix_rust-sgx" / "intel-sgx" / "pcs" / "tests" / "data"
