"""Run a quote helper on its own event loop in a background thread.

Tests then drive it with plain blocking sockets, as real AESM clients do. (A uniquely named
module rather than conftest.py, which other test areas also have: ``import conftest`` would be
ambiguous in a whole-suite run.)
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

from confnode.quotehelper import (
    AesmHandler,
    HelperMetrics,
    QuoteHelperServer,
    QuotingBackend,
    ServerConfig,
)


@dataclass
class RunningHelper:
    server: QuoteHelperServer
    socket_path: Path
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def metrics(self) -> HelperMetrics:
        return self.server.metrics

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(grace=2.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_helper(backend: QuotingBackend, directory: Path, **config: object) -> RunningHelper:
    socket_path = directory / "aesm.socket"
    server = QuoteHelperServer(
        AesmHandler(backend),
        ServerConfig(socket_path=socket_path, **config),  # type: ignore[arg-type]
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            loop.close()
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="quote-helper", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    return RunningHelper(server, socket_path, loop, thread)
