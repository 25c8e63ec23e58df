"""Fixtures for the real-Kubernetes tier; the API is documented in ``e2e/k8s.py``.

Under ``make e2e`` (``CONFNODE_E2E=1``) a missing binary fails the run; a plain ``pytest e2e``
without ``bash e2e/build.sh`` first skips with the command to run.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator

import pytest
from k8s import BIN, REQUIRED, Cluster, require_binaries, start_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_binaries()
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace whose ``default`` ServiceAccount exists (pods need it)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for_object("serviceaccount", "default", namespace=name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the control plane's logs to every failing test that used the cluster."""
    report = yield
    if report.failed and "cluster" in getattr(item, "fixturenames", ()):
        started = item.funcargs.get("cluster") if isinstance(item, pytest.Function) else None
        if isinstance(started, Cluster):
            report.sections.append(("control plane logs", started.logs()))
    return report


def pytest_report_header() -> str:
    return f"e2e binaries: {BIN} (required: {REQUIRED})"
