"""Fixtures: the real-hardware vector sets, loaded as the demo loads them (cli._vectors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from confnode.cli import _vectors
from confnode.cli._vectors import VectorSet


@pytest.fixture(scope="session")
def dcapqvl(vectors: Path) -> VectorSet:
    return _vectors.dcapqvl(vectors)


@pytest.fixture(scope="session")
def dcapqvl_tdx(vectors: Path) -> VectorSet:
    return _vectors.dcapqvl_tdx(vectors)


@pytest.fixture(scope="session")
def dcapqvl_root(vectors: Path) -> bytes:
    return (vectors / "Phala-Network_dcap-qvl" / "src" / "TrustedRootCA.der").read_bytes()


@pytest.fixture(scope="session")
def oasis_dir(vectors: Path) -> Path:
    return _vectors.oasis_dir(vectors)


@pytest.fixture(scope="session")
def oasis(vectors: Path) -> VectorSet:
    return _vectors.oasis(vectors)


@pytest.fixture(scope="session")
def fortanix_dir(vectors: Path) -> Path:
    return _vectors.fortanix_dir(vectors)


@pytest.fixture(scope="session")
def fortanix(vectors: Path) -> VectorSet:
    """TCB Info v2 + QE Identity in Fortanix wrappers (DER signatures), processor CRL only."""
    return _vectors.fortanix(vectors)
