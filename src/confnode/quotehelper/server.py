"""The AESM-wire-compatible daemon: asyncio unix-socket server in front of a quoting backend.

Per connection: read a 4-byte little-endian length (capped before any body byte is read), read
the body, answer once, close — as aesmd does. Connections are accepted concurrently; backend
calls run one at a time on a single worker thread (AESM's quoting queue). Whatever a client sends
or fails to send, the daemon either replies or closes the connection, and keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import socket
import stat
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from confnode.client import DEFAULT_SOCKET, AesmCode, code_name, encode_frame
from confnode.errors import InfrastructureError
from confnode.quotehelper.handler import AesmHandler, ParsedRequest, Reply, parse_request

__all__ = ["HelperMetrics", "QuoteHelperServer", "ServerConfig"]

log = logging.getLogger(__name__)

_PREFIX = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Daemon settings. Timeouts stay under the 15 s ``libsgx_quote_ex`` gives every call."""

    socket_path: Path = Path(DEFAULT_SOCKET)
    #: aesmd chmods its socket 0777; 0666 grants the same access without the execute bits.
    socket_mode: int = 0o666
    socket_group: str | None = None
    #: Budget for one backend call including its wait in the quoting queue.
    request_timeout: float = 10.0
    #: Budget for a client to deliver its whole frame (slow or truncated clients are cut off).
    read_timeout: float = 5.0
    write_timeout: float = 5.0
    #: Largest accepted body; the largest legitimate request is under 3 KB.
    max_frame: int = 64 * 1024
    #: Connections served at once; further ones are closed at accept (fd exhaustion guard).
    max_connections: int = 512
    backlog: int = 128


class HelperMetrics:
    """Prometheus metrics on the daemon's own registry (never the global default one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "confnode_quote_helper_requests",
            "AESM requests answered, by operation and errorCode.",
            ["operation", "code"],
            registry=self.registry,
        )
        self.quotes = Counter(
            "confnode_quote_helper_quotes_served",
            "Quotes returned to clients.",
            registry=self.registry,
        )
        self.errors = Counter(
            "confnode_quote_helper_errors",
            "Replies with a non-zero errorCode, by AESM error name.",
            ["operation", "error"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "confnode_quote_helper_dropped_connections",
            "Connections closed without a reply, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "confnode_quote_helper_request_seconds",
            "Time from a complete request frame to the reply being ready to send.",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.connections = Gauge(
            "confnode_quote_helper_connections",
            "Connections currently open.",
            registry=self.registry,
        )

    def observe(self, reply: Reply, seconds: float) -> None:
        self.requests.labels(reply.operation, str(reply.code)).inc()
        self.latency.labels(reply.operation).observe(seconds)
        if reply.code:
            self.errors.labels(reply.operation, code_name(reply.code)).inc()
        if reply.quote_served:
            self.quotes.inc()


class QuoteHelperServer:
    """Serve ``handler`` on a unix socket. Use :meth:`start`/:meth:`stop` or :meth:`run`."""

    def __init__(
        self,
        handler: AesmHandler,
        config: ServerConfig,
        metrics: HelperMetrics | None = None,
    ) -> None:
        self.handler = handler
        self.config = config
        self.metrics = metrics if metrics is not None else HelperMetrics()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quoting")
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inode: tuple[int, int] | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- health (the kubelet's probes, via confnode.metrics.on_loop) ----------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the server runs on once started, for checks from the metrics thread."""
        return self._loop

    def readiness(self) -> str | None:
        """``None`` while clients can reach the helper: accepting on the socket file it bound
        (one deleted or replaced by another process leaves every client without quotes)."""
        if self._server is None or not self._server.is_serving():
            return "not serving (the backend is warming up, or the helper is stopping)"
        path = self.config.socket_path
        try:
            st = path.lstat()
        except OSError:
            return f"{path} is gone: clients cannot connect"
        if (st.st_dev, st.st_ino) != self._inode:
            return f"{path} is no longer the socket this helper bound"
        return None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm the backend, bind the socket (replacing a stale one, never a live one), accept.

        Warming asks the QE for its target info and quote size once, so a broken backend fails
        here with a clear error instead of on a client's first 15-second call.
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._warm_up)
            sock = self._bind()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._server = await asyncio.start_unix_server(
            self._on_connection, sock=sock, backlog=self.config.backlog
        )
        self._loop = loop
        log.info(
            "quote helper serving %s (backend %s)",
            self.config.socket_path,
            self.handler.backend.name,
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace``), remove the socket."""
        if self._server is not None:
            self._server.close()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            wait = self.config.request_timeout if grace is None else grace
            _, late = await asyncio.wait(pending, timeout=wait)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._unlink_own_socket()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`), then shut down gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self._stopping.wait()
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self.stop()

    def _warm_up(self) -> None:
        backend = self.handler.backend
        backend.target_info()
        backend.quote_size()

    def request_stop(self) -> None:
        self._stopping.set()

    # -- socket ----------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        path = self.config.socket_path
        gid = None if self.config.socket_group is None else _group_id(self.config.socket_group)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            mode = path.lstat().st_mode
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise InfrastructureError(
                f"cannot serve {path}: {exc}", hint="choose a --socket in a usable directory"
            ) from exc
        else:
            if not stat.S_ISSOCK(mode):
                raise InfrastructureError(
                    f"{path} exists and is not a socket; refusing to replace it",
                    hint="remove the file or choose another --socket",
                )
            if _is_live(path):
                raise InfrastructureError(
                    f"{path} is already served by another process (aesmd or a quote helper)",
                    hint="stop the other service or choose another --socket",
                )
            try:
                path.unlink()
            except OSError as exc:
                raise InfrastructureError(f"cannot replace the stale socket {path}: {exc}") from exc
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            sock.bind(str(path))
            bound = True
            os.chmod(path, self.config.socket_mode)
            if gid is not None:
                os.chown(path, -1, gid)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if bound:
                # Only our own file: a failed bind means the path belongs to someone else.
                with contextlib.suppress(OSError):
                    path.unlink()
            raise InfrastructureError(f"cannot serve {path}: {exc}") from exc
        st = path.stat()
        self._inode = (st.st_dev, st.st_ino)
        return sock

    def _unlink_own_socket(self) -> None:
        """Remove the socket file only if it is still the one this server created."""
        if self._inode is None:
            return
        path = self.config.socket_path
        with contextlib.suppress(OSError):
            st = path.lstat()
            if (st.st_dev, st.st_ino) == self._inode:
                path.unlink()
        self._inode = None

    # -- connections -----------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= self.config.max_connections or task is None:
            self.metrics.dropped.labels("overload").inc()
            await _close(writer)
            return
        self._tasks.add(task)
        self.metrics.connections.inc()
        try:
            await self._serve(reader, writer)
        except Exception:
            # The daemon never dies of one connection; log and move on.
            log.exception("unexpected error serving a connection")
        finally:
            self._tasks.discard(task)
            self.metrics.connections.dec()
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await self._read_frame(reader)
        if body is None:
            return
        started = time.perf_counter()
        request = parse_request(body)
        if request is None:
            # AESM logs "Malformed request received" and closes without a reply.
            self.metrics.dropped.labels("malformed").inc()
            return
        reply = await self._execute(request)
        # Recorded before writing, so a client that has its reply also sees it counted.
        self.metrics.observe(reply, time.perf_counter() - started)
        try:
            writer.write(encode_frame(reply.body))
            await asyncio.wait_for(writer.drain(), self.config.write_timeout)
        except (TimeoutError, ConnectionError):
            self.metrics.dropped.labels("write-failed").inc()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            async with asyncio.timeout(self.config.read_timeout):
                (length,) = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
                if length > self.config.max_frame:
                    self.metrics.dropped.labels("oversized").inc()
                    return None
                return await reader.readexactly(length)
        except TimeoutError:
            self.metrics.dropped.labels("read-timeout").inc()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.metrics.dropped.labels("truncated").inc()
        return None

    async def _execute(self, request: ParsedRequest) -> Reply:
        deadline = time.monotonic() + self.config.request_timeout
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._run_if_current, request, deadline)
        try:
            reply = await asyncio.wait_for(future, self.config.request_timeout)
        except TimeoutError:
            reply = None
        if reply is None:
            log.warning(
                "%s: no backend answer within %g s", request.operation, self.config.request_timeout
            )
            return self.handler.error_reply(request, AesmCode.BUSY)
        return reply

    def _run_if_current(self, request: ParsedRequest, deadline: float) -> Reply | None:
        """Runs on the quoting thread; skips work whose caller has already been answered."""
        if time.monotonic() >= deadline:
            return None
        return self.handler.execute(request)


def _is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except BlockingIOError:
        # EAGAIN: a listener is there but its backlog is full (a busy aesmd), not a stale file.
        return True
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise InfrastructureError(f"socket group {group!r} does not exist on this host") from exc


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
