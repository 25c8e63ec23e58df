"""A simulated platform and its PCS/PCCS service on 127.0.0.1 (``serve_app``: uvicorn thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import pytest

from confnode.pccs.server import create_app
from confnode.sim import SimPlatform

PCCS_AT = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def pccs_at() -> datetime:
    return PCCS_AT


@pytest.fixture(scope="session")
def pccs_platform() -> SimPlatform:
    return SimPlatform(seed="pccs tests", tcb="SWHardeningNeeded", ca="platform")


@pytest.fixture(scope="session")
def live_pccs(
    pccs_platform: SimPlatform, serve_app: Callable[..., AbstractContextManager[str]]
) -> Iterator[str]:
    """Base URL of the simulated PCCS, serving collateral as of ``PCCS_AT``."""
    with serve_app(create_app(pccs_platform, clock=lambda: PCCS_AT)) as url:
        yield url
