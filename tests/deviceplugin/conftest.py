"""A kubelet stub over real gRPC on unix sockets, and helpers to run the agent in-loop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from dp_grpc import deviceplugin_grpc as api_pb2_grpc

from confnode._proto.deviceplugin.v1beta1 import api_pb2
from confnode.deviceplugin import AgentConfig, DevicePluginAgent, SgxNode

CHECKPOINT = "kubelet_internal_checkpoint"


@dataclass
class Registration:
    at: float
    request: api_pb2.RegisterRequest
    endpoint_existed: bool


@dataclass
class KubeletStub:
    """Serves ``v1beta1.Registration`` on ``<dir>/kubelet.sock`` and dials plugins like a kubelet.

    ``restart()`` does what a starting kubelet does: the old server goes away, every socket in the
    directory except the checkpoint is deleted, and a new ``kubelet.sock`` appears.
    """

    directory: Path
    registrations: list[Registration] = field(default_factory=list)
    _server: grpc.aio.Server | None = None
    _new: asyncio.Condition = field(default_factory=asyncio.Condition)
    reject_with: grpc.StatusCode | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "kubelet.sock"

    async def start(self) -> float:
        stub = self

        class _Registration(api_pb2_grpc.RegistrationServicer):
            async def Register(self, request, context):  # type: ignore[no-untyped-def]
                existed = (stub.directory / request.endpoint).exists()
                if stub.reject_with is not None:
                    await context.abort(stub.reject_with, "resource name already taken")
                async with stub._new:
                    stub.registrations.append(Registration(time.monotonic(), request, existed))
                    stub._new.notify_all()
                return api_pb2.Empty()

        server = grpc.aio.server()
        api_pb2_grpc.add_RegistrationServicer_to_server(_Registration(), server)
        server.add_insecure_port(f"unix:{self.socket}")
        await server.start()
        self._server = server
        return time.monotonic()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def restart(self) -> float:
        """Simulate a kubelet restart; returns the moment the new kubelet.sock was served."""
        await self.stop()
        for entry in self.directory.iterdir():
            if entry.name != CHECKPOINT and not entry.is_dir():
                entry.unlink()
        return await self.start()

    async def wait_registrations(self, count: int, timeout: float = 5.0) -> list[Registration]:
        async with self._new:
            await asyncio.wait_for(
                self._new.wait_for(lambda: len(self.registrations) >= count), timeout
            )
        return self.registrations[:count]

    @contextlib.asynccontextmanager
    async def dial(self, endpoint: str) -> AsyncIterator[api_pb2_grpc.DevicePluginStub]:
        """A DevicePlugin client for ``<dir>/<endpoint>``, as the kubelet builds it."""
        async with grpc.aio.insecure_channel(f"unix:{self.directory / endpoint}") as channel:
            yield api_pb2_grpc.DevicePluginStub(channel)


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    """A short directory path: unix socket paths are limited to 107 bytes."""
    short = Path(tempfile.mkdtemp(prefix="cn-dp-", dir="/tmp"))
    (short / CHECKPOINT).write_text("{}")
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
async def kubelet(plugin_dir: Path) -> AsyncIterator[KubeletStub]:
    stub = KubeletStub(plugin_dir)
    await stub.start()
    yield stub
    await stub.stop()


def fast_config(plugin_dir: Path, **overrides: object) -> AgentConfig:
    """Short poll intervals so a hundred restarts take seconds."""
    values: dict[str, object] = {
        "plugin_dir": plugin_dir,
        "poll_interval": 0.005,
        "health_interval": 0.01,
        "register_timeout": 2.0,
        "aesm_socket": None,
    }
    values.update(overrides)
    return AgentConfig(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(agent: DevicePluginAgent) -> AsyncIterator[DevicePluginAgent]:
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def run_agent() -> Callable[..., contextlib.AbstractAsyncContextManager[DevicePluginAgent]]:
    """``async with run_agent(agent):`` runs the agent as a task and cancels it on exit."""
    return running


@pytest.fixture
def config_for() -> Callable[..., AgentConfig]:
    """``config_for(plugin_dir, **overrides)``: an AgentConfig with test-speed intervals."""
    return fast_config


@pytest.fixture
def sim_node() -> SgxNode:
    return SgxNode.simulated_node(28 << 20)
