"""Fixtures: a simulated platform, and quote helpers serving it on short-lived sockets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from qh_harness import RunningHelper, start_helper
from qh_independent import AesmProto, compile_proto

from confnode.quotehelper import QuotingBackend, SimBackend
from confnode.sim import SimPlatform


@pytest.fixture(scope="session")
def aesm() -> AesmProto:
    """Request/Response classes compiled from messages.proto inside the test run."""
    return compile_proto()


@pytest.fixture(scope="session")
def platform() -> SimPlatform:
    return SimPlatform()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for unix sockets (sun_path is limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="qh-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_helper(short_dir: Path) -> Iterator[Callable[..., RunningHelper]]:
    helpers: list[RunningHelper] = []

    def make(backend: QuotingBackend, **config: object) -> RunningHelper:
        sub = Path(tempfile.mkdtemp(dir=short_dir))
        helper = start_helper(backend, sub, **config)
        helpers.append(helper)
        return helper

    yield make
    for helper in helpers:
        helper.stop()


@pytest.fixture
def helper(platform: SimPlatform, make_helper: Callable[..., RunningHelper]) -> RunningHelper:
    """A sim-backed quote helper on a fresh socket."""
    return make_helper(SimBackend(platform.quoting_enclave))
