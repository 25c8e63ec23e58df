"""``/healthz`` and ``/readyz`` beside ``/metrics`` on the daemons' one HTTP port.

The kubelet probes them: liveness restarts a daemon that stopped working, readiness holds a
rolling update until the new pod does its job. A check returns ``None`` when it passes, else
why not, which becomes the 503 body (``kubectl describe pod`` shows it in the probe event).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = ["Check", "health_app", "on_loop", "serve_metrics_and_health"]

#: ``None``: healthy/ready; a string: why not.
Check = Callable[[], "str | None"]

_WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def on_loop(
    loop: Callable[[], asyncio.AbstractEventLoop | None],
    check: Callable[[], str | None],
    *,
    timeout: float = 5.0,
    before_start: str | None = "starting",
) -> Check:
    """A check evaluated on the daemon's event loop, from the HTTP thread.

    Running it there reads the daemon's state consistently and fails when the loop is stuck (a
    wedged loop serves neither the kubelet nor clients, though the HTTP thread would still
    answer). ``loop`` returns the running loop, or ``None`` before it started: ``before_start``
    is then the answer.
    """

    def run() -> str | None:
        running = loop()
        if running is None or running.is_closed():
            return before_start

        async def evaluate() -> str | None:
            return check()

        try:
            future = asyncio.run_coroutine_threadsafe(evaluate(), running)
        except RuntimeError:  # closed between the test above and here
            return before_start
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            return f"event loop did not answer within {timeout:g} s"

    return run


def health_app(registry: CollectorRegistry, *, live: Check, ready: Check) -> _WsgiApp:
    """WSGI app: ``/healthz`` (live), ``/readyz`` (ready), and the metrics on every other path
    (as ``prometheus_client`` serves them, so existing scrape configs keep working)."""
    metrics = make_wsgi_app(registry)
    checks = {"/healthz": live, "/readyz": ready}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            served: Iterable[bytes] = metrics(environ, start_response)
            return served
        try:
            problem = check()
        except Exception as error:  # a failing check is an unhealthy daemon, not a 500
            problem = f"check failed: {error!r}"
        status = "200 OK" if problem is None else "503 Service Unavailable"
        body = b"ok\n" if problem is None else problem.encode() + b"\n"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the daemon's log."""


def serve_metrics_and_health(
    registry: CollectorRegistry, port: int, addr: str, *, live: Check, ready: Check
) -> tuple[WSGIServer, threading.Thread]:
    """Serve :func:`health_app` from a daemon thread; returns the server and its thread."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    server = make_server(
        addr, port, health_app(registry, live=live, ready=ready), Server, handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics-health", daemon=True)
    thread.start()
    return server, thread
