"""A simulated platform and its PCS/PCCS service on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import uvicorn

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
def live_pccs(pccs_platform: SimPlatform) -> Iterator[str]:
    """Base URL of the simulated PCCS, serving collateral as of ``PCCS_AT``."""
    app = create_app(pccs_platform, clock=lambda: PCCS_AT)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
