"""Shared fixtures. Real-hardware DCAP vectors are read in place from ../shared/dcap-vectors."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

REPO = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("CONFNODE_DCAP_VECTORS", REPO.parent / "shared" / "dcap-vectors"))


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Root of the shared DCAP vector set; tests that need it skip clearly when it is absent."""
    if not VECTORS.is_dir():
        pytest.skip(f"DCAP vectors not found at {VECTORS} (set CONFNODE_DCAP_VECTORS)")
    return VECTORS


@contextmanager
def _serve_app(app: Any, *, sock: socket.socket | None = None, **config: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread on 127.0.0.1 (a free port, or the bound ``sock``) and
    yield its base URL (``https`` when ``ssl_certfile`` is configured); stop it afterwards."""
    config.setdefault("log_level", "warning")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **config))
    kwargs = {"sockets": [sock]} if sock is not None else {}
    thread = threading.Thread(target=server.run, kwargs=kwargs, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    bound = sock if sock is not None else server.servers[0].sockets[0]
    scheme = "https" if config.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://127.0.0.1:{bound.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_app() -> Callable[..., AbstractContextManager[str]]:
    """``with serve_app(app, sock=None, **uvicorn_config) as url:`` runs ``app`` on loopback."""
    return _serve_app
