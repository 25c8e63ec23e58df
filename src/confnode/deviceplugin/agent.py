"""The node agent: plans the resources, serves them, keeps them registered and healthy.

One supervisor loop polls (``os.stat``, no inotify dependency) every ``poll_interval``:

* a plugin socket that vanished (the kubelet wipes the directory on start) is served again;
* a new ``kubelet.sock`` (other inode or ctime) means a new kubelet: every resource registers
  again. Both together bring a restarted kubelet back to full capacity well within 1 s;
* every ``health_interval`` the driver probe decides Healthy/Unhealthy for all devices, and
  open ListAndWatch streams get a fresh full list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confnode.deviceplugin.errors import DevicePluginError, PluginSocketInUse
from confnode.deviceplugin.inventory import AESM_LABEL, AlwaysPresent, DriverProbe
from confnode.deviceplugin.model import (
    AKS_EPC_RESOURCE,
    DEFAULT_LIST_BUDGET_BYTES,
    ENCLAVE_RESOURCE,
    KUBELET_MAX_MESSAGE_BYTES,
    PROVISION_RESOURCE,
    DeviceResource,
    EpcMode,
    ResourceKind,
    SgxNode,
    choose_epc_mode,
)
from confnode.deviceplugin.nodestatus import NodePublisher, NodeStatusPatcher, epc_capacity
from confnode.deviceplugin.podresources import PodResourcesSource, epc_allocations
from confnode.deviceplugin.server import PluginEndpoint, register_with_kubelet
from confnode.errors import InfrastructureError
from confnode.metrics import NodeAgentMetrics

__all__ = [
    "DEFAULT_AESM_SOCKET",
    "DEFAULT_PLUGIN_DIR",
    "KUBELET_SOCKET",
    "AgentConfig",
    "DevicePluginAgent",
    "ResourcePlan",
    "plan_resources",
    "quote_helper_reachable",
]

log = logging.getLogger(__name__)

DEFAULT_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
KUBELET_SOCKET = "kubelet.sock"
DEFAULT_AESM_SOCKET = Path("/var/run/aesmd/aesm.socket")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    plugin_dir: Path = DEFAULT_PLUGIN_DIR
    epc_resource: str = AKS_EPC_RESOURCE
    enclave_resource: str = ENCLAVE_RESOURCE
    provision_resource: str = PROVISION_RESOURCE
    #: ``None``: choose automatically (:func:`choose_epc_mode`).
    epc_mode: EpcMode | None = None
    list_budget_bytes: int = DEFAULT_LIST_BUDGET_BYTES
    #: Shared devices per pool: the most SGX containers the node runs at once (kubelet max pods).
    enclave_limit: int = 110
    provision_limit: int = 110
    #: Host path of the quote-helper socket; its directory is mounted when it exists.
    aesm_socket: Path | None = DEFAULT_AESM_SOCKET
    node_name: str | None = None
    #: ``confnode.io/`` labels to keep on the Node (``--label-node``); empty: leave labels alone.
    node_labels: Mapping[str, str] = field(default_factory=dict)
    poll_interval: float = 0.1
    health_interval: float = 1.0
    register_timeout: float = 5.0
    repatch_interval: float = 60.0
    pod_resources_interval: float = 15.0
    quote_helper_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    """What the node advertises: plugin resources plus (node-status mode) patched capacity."""

    mode: EpcMode
    resources: tuple[DeviceResource, ...]
    capacity: dict[str, str] = field(default_factory=dict)

    @property
    def epc_unit_bytes(self) -> dict[str, int]:
        """Resource → bytes per device, for turning PodResources device IDs into EPC."""
        return {r.name: r.unit_bytes for r in self.resources if r.kind is ResourceKind.EPC}


def plan_resources(node: SgxNode, config: AgentConfig) -> ResourcePlan:
    mode = config.epc_mode or choose_epc_mode(
        node, config.epc_resource, budget_bytes=config.list_budget_bytes
    )
    resources: list[DeviceResource] = []
    capacity: dict[str, str] = {}
    if mode is EpcMode.DEVICES:
        epc = DeviceResource.epc(node, config.epc_resource)
        size = epc.list_size(healthy=False)
        if size > KUBELET_MAX_MESSAGE_BYTES:
            raise DevicePluginError(
                f"{epc.count} EPC devices need a {size}-byte ListAndWatch message, over the "
                f"kubelet's {KUBELET_MAX_MESSAGE_BYTES}-byte limit",
                hint="use --epc-mode node-status (or auto) on large-EPC nodes",
            )
        resources.append(epc)
    else:
        capacity = epc_capacity(node, config.epc_resource)
        resources.append(
            DeviceResource.pool(
                ResourceKind.ENCLAVE, node, config.enclave_resource, config.enclave_limit
            )
        )
    if node.simulated or node.provision_devices:
        resources.append(
            DeviceResource.pool(
                ResourceKind.PROVISION, node, config.provision_resource, config.provision_limit
            )
        )
    return ResourcePlan(mode, tuple(resources), capacity)


async def quote_helper_reachable(path: Path, timeout: float = 1.0) -> bool:
    """True when the quote-helper socket accepts a connection (nothing is sent)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(os.fspath(path)), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


class DevicePluginAgent:
    """Runs the plan until cancelled; the caller owns the event loop and signal handling."""

    def __init__(
        self,
        node: SgxNode,
        config: AgentConfig = AgentConfig(),
        *,
        driver: DriverProbe | None = None,
        metrics: NodeAgentMetrics | None = None,
        patcher: NodeStatusPatcher | None = None,
        pod_resources: PodResourcesSource | None = None,
    ) -> None:
        self.node = node
        self.config = config
        self.plan = plan_resources(node, config)
        if (self.plan.capacity or config.node_labels) and (patcher is None or not config.node_name):
            what = f"EPC mode {self.plan.mode} publishes {self.plan.capacity}"
            if not self.plan.capacity:
                what = f"labelling the node publishes {len(config.node_labels)} labels"
            raise DevicePluginError(
                f"{what} through the API server, but no node name or API-server client was given",
                hint="set --node-name (env NODE_NAME) and run in-cluster",
            )
        self.driver = driver or AlwaysPresent()
        self.metrics = metrics or NodeAgentMetrics()
        self.patcher = patcher
        self.pod_resources = pod_resources
        self.kubelet_socket = config.plugin_dir / KUBELET_SOCKET
        self.endpoints = tuple(
            PluginEndpoint(r, config.plugin_dir, aesm_dir=self._aesm_dir)
            for r in self.plan.resources
        )
        self.kubelet_restarts = 0
        self.registrations = 0
        self._pending: set[PluginEndpoint] = set()
        self._retry_at: dict[PluginEndpoint, tuple[float, float]] = {}

    def _aesm_dir(self) -> str | None:
        path = self.config.aesm_socket
        if path is not None and path.exists():
            return os.fspath(path.parent)
        return None

    async def run(self) -> None:
        """Serve, register and supervise until cancelled; sockets are removed on the way out."""
        self.metrics.set_epc_capacity(self.node.epc_by_numa)
        self.metrics.set_mode(self.config.epc_resource, str(self.plan.mode))
        healthy = self.driver.present()
        for endpoint in self.endpoints:
            await endpoint.set_healthy(healthy)
            self.metrics.set_devices(
                endpoint.resource.name, count=endpoint.resource.count, healthy=healthy
            )
            self.metrics.set_registered(endpoint.resource.name, False)
        tasks: list[asyncio.Task[None]] = []
        try:
            for endpoint in self.endpoints:
                await endpoint.serve()
                self._pending.add(endpoint)
            tasks.append(asyncio.create_task(self._supervise(), name="supervise"))
            publishes = self.plan.capacity or self.config.node_labels
            if publishes and self.patcher is not None and self.config.node_name:
                publisher = NodePublisher(
                    self.patcher,
                    self.config.node_name,
                    self.plan.capacity,
                    self.current_labels if self.config.node_labels else None,
                    interval=self.config.repatch_interval,
                    on_result=self._patched,
                )
                tasks.append(asyncio.create_task(publisher.run(), name="node-status"))
            if self.pod_resources is not None and self.plan.epc_unit_bytes:
                tasks.append(asyncio.create_task(self._watch_allocations(), name="podresources"))
            if self.config.aesm_socket is not None:
                tasks.append(asyncio.create_task(self._watch_quote_helper(), name="quote-helper"))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for endpoint in self.endpoints:
                # Only our own sockets: one another live process serves (PluginSocketInUse) or
                # a path we never bound stays as it is.
                served = endpoint.serving
                await endpoint.stop()
                if served:
                    with contextlib.suppress(FileNotFoundError):
                        endpoint.socket_path.unlink()

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        last_kubelet: tuple[int, int, int] | None = None
        next_health = loop.time() + self.config.health_interval
        while True:
            current = _identity(self.kubelet_socket)
            if current is not None and current != last_kubelet:
                if last_kubelet is not None:
                    self.kubelet_restarts += 1
                    self.metrics.kubelet_restarted()
                    log.info("new kubelet.sock: kubelet restarted, registering again")
                last_kubelet = current
                self._pending.update(self.endpoints)
                self._retry_at.clear()
            for endpoint in self.endpoints:
                if not endpoint.socket_present():
                    log.info("%s vanished; serving it again", endpoint.socket_path)
                    self.metrics.set_registered(endpoint.resource.name, False)
                    try:
                        await endpoint.serve()
                    except PluginSocketInUse:
                        raise
                    except DevicePluginError as error:
                        log.warning("%s (retrying)", error.message)
                        continue
                    self._pending.add(endpoint)
            if current is not None and self._pending:
                await self._register_pending(loop.time())
            if loop.time() >= next_health:
                await self.check_health()
                next_health = loop.time() + self.config.health_interval
            await asyncio.sleep(self.config.poll_interval)

    def current_labels(self) -> dict[str, str]:
        """The node labels to publish now: the AESM label follows the socket, which the
        quote-helper DaemonSet may create or remove after the agent started."""
        labels = dict(self.config.node_labels)
        if AESM_LABEL in labels:
            labels[AESM_LABEL] = "true" if self._aesm_dir() is not None else "false"
        return labels

    def _patched(self, ok: bool, error: Exception | None) -> None:
        self.metrics.node_status_patched(ok)
        if error is not None:
            log.warning("node capacity/labels not published: %s", error)

    async def _register_pending(self, now: float) -> None:
        for endpoint in sorted(self._pending, key=lambda e: e.resource.name):
            at, backoff = self._retry_at.get(endpoint, (0.0, self.config.poll_interval))
            if now < at:
                continue
            try:
                await register_with_kubelet(
                    self.kubelet_socket,
                    endpoint.register_request(),
                    timeout=self.config.register_timeout,
                )
            except DevicePluginError as error:
                log.warning("%s; retrying in %.2f s", error.message, backoff)
                self.metrics.registration_result(endpoint.resource.name, False)
                self._retry_at[endpoint] = (now + backoff, min(backoff * 2, 5.0))
                continue
            self._pending.discard(endpoint)
            self._retry_at.pop(endpoint, None)
            self.registrations += 1
            self.metrics.registration_result(endpoint.resource.name, True)
            log.info("registered %s as %s", endpoint.resource.name, endpoint.socket_path.name)

    async def check_health(self) -> None:
        healthy = self.driver.present()
        for endpoint in self.endpoints:
            if await endpoint.set_healthy(healthy):
                log.warning(
                    "%s: %d devices now %s",
                    endpoint.resource.name,
                    endpoint.resource.count,
                    "Healthy" if healthy else "Unhealthy (SGX device nodes are gone)",
                )
                self.metrics.set_devices(
                    endpoint.resource.name, count=endpoint.resource.count, healthy=healthy
                )

    async def refresh_allocations(self) -> None:
        if self.pod_resources is None:
            return
        try:
            assignments = await self.pod_resources.list_assignments()
        except InfrastructureError:
            self.metrics.pod_resources_errors.inc()
            return
        self.metrics.set_allocations(epc_allocations(assignments, self.plan.epc_unit_bytes))

    async def _watch_allocations(self) -> None:
        while True:
            await self.refresh_allocations()
            await asyncio.sleep(self.config.pod_resources_interval)

    async def _watch_quote_helper(self) -> None:
        path = self.config.aesm_socket
        while path is not None:
            self.metrics.set_quote_helper_up(await quote_helper_reachable(path))
            await asyncio.sleep(self.config.quote_helper_interval)

    @property
    def registered(self) -> Sequence[str]:
        """Resources registered with the current kubelet."""
        return [e.resource.name for e in self.endpoints if e not in self._pending]
