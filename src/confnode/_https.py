"""Serving an ASGI app over HTTPS with certificates that reload when their files change.

uvicorn has no certificate reload of its own. We hand uvicorn one ``SSLContext`` through
``ssl_context_factory``; its SNI callback (called for every ClientHello, with or without a server
name) switches each handshake to the context holding the current certificate. A changed Secret is
loaded into a fresh context that replaces the current one only once it loaded completely: calling
``load_cert_chain`` again on a live context would leave it with the new certificate and no key
when the new key is bad (a half-written update), failing every handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from confnode.errors import InvalidInput


class ReloadingTLS:
    """A server ``SSLContext`` kept in step with a certificate/key file pair."""

    def __init__(self, cert_file: str | Path, key_file: str | Path) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.reloads = 0
        self._stamp = self._current_stamp()
        self._current = self._load()
        #: The context given to uvicorn; each handshake is moved to the current one.
        self.context = self._load()
        self.context.sni_callback = self._select

    def _select(self, connection: Any, _server_name: str | None, _context: Any) -> None:
        connection.context = self._current

    def _current_stamp(self) -> tuple[int, int]:
        try:
            return (self.cert_file.stat().st_mtime_ns, self.key_file.stat().st_mtime_ns)
        except OSError as error:
            raise InvalidInput(f"cannot read TLS certificate/key: {error}") from error

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            raise InvalidInput(
                f"cannot load TLS certificate {self.cert_file} with key {self.key_file}: {error}"
            ) from error
        return context

    def maybe_reload(self) -> bool:
        """Reload when either file changed; keep serving the old pair if the new one is bad."""
        try:
            stamp = self._current_stamp()
        except InvalidInput:
            return False
        if stamp == self._stamp:
            return False
        try:
            self._current = self._load()
        except InvalidInput:
            return False  # half-written Secret update: try again on the next poll
        self._stamp = stamp
        self.reloads += 1
        return True

    async def watch(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.maybe_reload()


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    tls: ReloadingTLS | None,
    log_level: str = "warning",
    **extra: Any,
) -> uvicorn.Config:
    """A uvicorn config that serves ``app`` with ``tls`` (or plain HTTP when it is ``None``)."""
    factory: Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None
    if tls is not None:
        factory = lambda _config, _default: tls.context  # noqa: E731
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_context_factory=factory,
        log_level=log_level,
        access_log=False,
        **extra,
    )


async def serve(
    config: uvicorn.Config, tls: ReloadingTLS | None, reload_interval: float = 2.0
) -> None:
    """Run uvicorn until it stops, reloading certificates in the background."""
    server = uvicorn.Server(config)
    watcher = asyncio.create_task(tls.watch(reload_interval)) if tls is not None else None
    try:
        await server.serve()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
