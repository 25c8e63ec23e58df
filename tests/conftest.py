"""Shared fixtures. Real-hardware DCAP vectors are read in place from ../shared/dcap-vectors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("CONFNODE_DCAP_VECTORS", REPO.parent / "shared" / "dcap-vectors"))


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Root of the shared DCAP vector set; tests that need it skip clearly when it is absent."""
    if not VECTORS.is_dir():
        pytest.skip(f"DCAP vectors not found at {VECTORS} (set CONFNODE_DCAP_VECTORS)")
    return VECTORS
