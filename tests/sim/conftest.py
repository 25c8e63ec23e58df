"""Fixtures for the simulated-platform tests: a fixed verification time and cached platforms."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from confnode.sim import SimPlatform

#: Verification time used throughout: inside every simulated certificate's validity.
AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.fixture(scope="session")
def sim_at() -> datetime:
    return AT


@pytest.fixture(scope="session")
def make_platform() -> Callable[..., SimPlatform]:
    """In-memory platforms, one per distinct configuration (creating one signs ~8 objects)."""
    cache: dict[tuple[tuple[str, Any], ...], SimPlatform] = {}

    def make(**kwargs: Any) -> SimPlatform:
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            cache[key] = SimPlatform(**kwargs)
        return cache[key]

    return make
