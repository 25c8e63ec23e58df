"""The quote helper's ``/healthz`` and ``/readyz`` (the kubelet's probes on the metrics port):
ready while it accepts on the socket file it bound, which is what AESM clients connect to."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
from qh_harness import RunningHelper

from confnode.metrics import on_loop, serve_metrics_and_health
from confnode.quotehelper import AesmHandler, QuoteHelperServer, ServerConfig, SimBackend


def _probes(helper: RunningHelper) -> tuple[httpx.Response, httpx.Response]:
    server = helper.server
    http, thread = serve_metrics_and_health(
        server.metrics.registry,
        0,
        "127.0.0.1",
        live=on_loop(lambda: server.loop, server.readiness, before_start=None),
        ready=on_loop(lambda: server.loop, server.readiness),
    )
    try:
        base = f"http://127.0.0.1:{http.server_port}"
        return httpx.get(f"{base}/healthz", timeout=5), httpx.get(f"{base}/readyz", timeout=5)
    finally:
        http.shutdown()
        thread.join(5)


def test_ready_and_live_while_serving_its_socket(helper: RunningHelper) -> None:
    live, ready = _probes(helper)
    assert (live.status_code, ready.status_code) == (200, 200)
    assert ready.text == "ok\n"


def test_a_deleted_socket_fails_both_probes(helper: RunningHelper) -> None:
    """Clients only know the path: with the file gone the helper serves nobody, and a restart
    (liveness) binds it again."""
    helper.socket_path.unlink()
    live, ready = _probes(helper)
    assert (live.status_code, ready.status_code) == (503, 503)
    assert ready.text == f"{helper.socket_path} is gone: clients cannot connect\n"


def test_a_socket_replaced_by_another_process_fails_readiness(helper: RunningHelper) -> None:
    helper.socket_path.unlink()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(helper.socket_path))
    try:
        _live, ready = _probes(helper)
    finally:
        other.close()
    assert ready.status_code == 503
    assert "no longer the socket this helper bound" in ready.text


def test_not_ready_before_start_but_alive(platform, short_dir) -> None:
    server = QuoteHelperServer(
        AesmHandler(SimBackend(platform.quoting_enclave)),
        ServerConfig(socket_path=short_dir / "aesm.socket"),
    )
    assert on_loop(lambda: server.loop, server.readiness)() == "starting"
    assert on_loop(lambda: server.loop, server.readiness, before_start=None)() is None


def test_cli_serves_the_probes_on_the_metrics_port(short_dir) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "confnode",
            "quote-helper",
            "--backend=sim",
            f"--socket={short_dir / 'aesm.socket'}",
            f"--metrics-port={port}",
            "--metrics-address=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = None
    try:
        for _ in range(300):
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if ready.status_code == 200:
                break
            time.sleep(0.05)
        live = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    finally:
        process.terminate()
        process.wait(10)
    assert ready is not None and ready.status_code == 200
    assert live.status_code == 200
    assert "confnode_quote_helper_connections" in metrics.text
