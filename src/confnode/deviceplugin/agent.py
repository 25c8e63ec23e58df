"""The node agent: plans the resources, serves them, keeps them registered and healthy.

One supervisor loop polls (``os.stat``, no inotify dependency) every ``poll_interval``:

* a plugin socket that vanished (the kubelet wipes the directory on start) is served again;
* a new ``kubelet.sock`` (other inode or ctime) means a new kubelet: every resource registers
  again. Both together bring a restarted kubelet back to full capacity well within 1 s;
* every ``health_interval`` the driver probe decides Healthy/Unhealthy for all devices (the
  AESM socket pool also needs the quote-helper socket), and open ListAndWatch streams get a
  fresh full list. Node-status EPC capacity is removed while the devices are gone and put back
  when they return.

Another device plugin serving one of the same resource names (Intel's SGX plugin registers
``sgx.intel.com/enclave`` and ``/provision``) is refused at start and whenever it appears: the
kubelet would silently let the last registrant win (:func:`foreign_plugin_sockets`).

``/healthz`` passes while the agent's loop answers (a stuck loop serves no kubelet), ``/readyz``
once every resource is registered (:meth:`DevicePluginAgent.readiness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confnode.deviceplugin.errors import (
    DevicePluginError,
    PluginSocketInUse,
    ResourceServedElsewhere,
)
from confnode.deviceplugin.inventory import AESM_LABEL, AlwaysPresent, DriverProbe
from confnode.deviceplugin.model import (
    AESM_RESOURCE,
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
from confnode.deviceplugin.server import PluginEndpoint, register_with_kubelet, socket_is_live
from confnode.errors import InfrastructureError, InvalidInput
from confnode.metrics import NodeAgentMetrics

__all__ = [
    "DEFAULT_AESM_SOCKET",
    "DEFAULT_PLUGIN_DIR",
    "KUBELET_SOCKET",
    "AgentConfig",
    "DevicePluginAgent",
    "ResourcePlan",
    "foreign_plugin_sockets",
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
    aesm_resource: str = AESM_RESOURCE
    #: ``None``: choose automatically (:func:`choose_epc_mode`).
    epc_mode: EpcMode | None = None
    list_budget_bytes: int = DEFAULT_LIST_BUDGET_BYTES
    #: Shared devices per pool: the most SGX containers the node runs at once (kubelet max pods).
    enclave_limit: int = 110
    provision_limit: int = 110
    aesm_limit: int = 110
    #: Host path of the quote-helper socket, served as the opt-in AESM pool (its directory is
    #: mounted); ``None``: no quote helper on this node, no AESM pool.
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
    """EPC as devices or node-status capacity; the enclave pool in both modes, so one pod spec
    (EPC by name plus ``sgx.intel.com/enclave: 1``, added by the webhook) works on every node;
    provision where the device exists; the AESM socket pool where a quote helper is configured.
    """
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
    if config.aesm_socket is not None:
        resources.append(
            DeviceResource.aesm(
                node, config.aesm_resource, config.aesm_limit, os.fspath(config.aesm_socket.parent)
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


def foreign_plugin_sockets(plugin_dir: Path, resource_names: Iterable[str]) -> dict[str, Path]:
    """Resource name → live socket on which another plugin serves it.

    The device-plugin API has no call that names a plugin's resource, so this goes by the
    socket name the common Go framework gives it — ``<domain>-<name>.sock``, e.g. Intel's
    ``sgx.intel.com-enclave.sock`` — and counts a socket only while a process accepts
    connections on it (a stale file left by an uninstalled plugin does not). confnode's own
    sockets are prefixed ``confnode-`` and never match.
    """
    found: dict[str, Path] = {}
    for name in resource_names:
        path = plugin_dir / (name.replace("/", "-") + ".sock")
        if path.exists() and socket_is_live(path):
            found[name] = path
    return found


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
                hint="set --node-name (env NODE_NAME); run in-cluster or pass --kubeconfig",
            )
        self.driver = driver or AlwaysPresent()
        self.metrics = metrics or NodeAgentMetrics()
        self.patcher = patcher
        self.pod_resources = pod_resources
        self.kubelet_socket = config.plugin_dir / KUBELET_SOCKET
        self.endpoints = tuple(PluginEndpoint(r, config.plugin_dir) for r in self.plan.resources)
        self.kubelet_restarts = 0
        self.registrations = 0
        self._pending: set[PluginEndpoint] = set()
        self._retry_at: dict[PluginEndpoint, tuple[float, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sgx_present = True
        self._publisher: NodePublisher | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop :meth:`run` runs on (``None`` before), for checks from other threads."""
        return self._loop

    def readiness(self) -> str | None:
        """``None`` once every resource is served and registered with the current kubelet, else
        what is missing. Call it on the agent's loop (:func:`confnode.metrics.on_loop`)."""
        if self._loop is None:
            return "starting"
        missing = sorted(
            e.resource.name for e in self.endpoints if not e.serving or e in self._pending
        )
        if not missing:
            return None
        if _identity(self.kubelet_socket) is None:
            return f"no kubelet socket at {self.kubelet_socket}; not registered: " + ", ".join(
                missing
            )
        return "not registered with the kubelet yet: " + ", ".join(missing)

    def refuse_foreign_plugins(self) -> None:
        """Raise :class:`ResourceServedElsewhere` when another plugin serves one of our names."""
        found = foreign_plugin_sockets(
            self.config.plugin_dir, (r.name for r in self.plan.resources)
        )
        if found:
            names = ", ".join(f"{name} (on {path})" for name, path in sorted(found.items()))
            raise ResourceServedElsewhere(
                f"another device plugin already serves {names}; the kubelet would let whichever "
                "registers last take the resource over silently"
            )

    def _aesm_socket_present(self) -> bool:
        path = self.config.aesm_socket
        return path is not None and path.exists()

    def _health(self, resource: DeviceResource, present: bool) -> tuple[bool, str]:
        """Healthy, or why not: the AESM pool is Healthy only while the quote-helper socket
        exists, so the scheduler sends opted-in pods only to nodes whose helper is up."""
        if not present:
            return False, "the SGX device nodes are gone"
        if resource.kind is ResourceKind.AESM and not self._aesm_socket_present():
            return False, f"no quote-helper socket at {self.config.aesm_socket}"
        return True, ""

    async def run(self) -> None:
        """Serve, register and supervise until cancelled; sockets are removed on the way out."""
        self.metrics.set_epc_capacity(self.node.epc_by_numa)
        self.metrics.set_mode(self.config.epc_resource, str(self.plan.mode))
        self.refuse_foreign_plugins()
        self._loop = asyncio.get_running_loop()
        present = self._sgx_present = self.driver.present()
        for endpoint in self.endpoints:
            healthy, reason = self._health(endpoint.resource, present)
            await endpoint.set_healthy(healthy, reason)
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
                self._publisher = NodePublisher(
                    self.patcher,
                    self.config.node_name,
                    self.plan.capacity,
                    self.current_labels if self.config.node_labels else None,
                    present=lambda: self._sgx_present,
                    interval=self.config.repatch_interval,
                    on_result=self._patched,
                )
                tasks.append(asyncio.create_task(self._publisher.run(), name="node-status"))
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
            labels[AESM_LABEL] = "true" if self._aesm_socket_present() else "false"
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
        self.refuse_foreign_plugins()
        present = self.driver.present()
        if present != self._sgx_present:
            self._sgx_present = present
            if self._publisher is not None and self.plan.capacity:
                log.warning(
                    "SGX devices %s: %s node-status EPC capacity",
                    "back" if present else "gone",
                    "publishing" if present else "removing",
                )
                self._publisher.wake()
        for endpoint in self.endpoints:
            healthy, reason = self._health(endpoint.resource, present)
            if await endpoint.set_healthy(healthy, reason):
                log.warning(
                    "%s: %d devices now %s",
                    endpoint.resource.name,
                    endpoint.resource.count,
                    "Healthy" if healthy else f"Unhealthy ({reason})",
                )
                self.metrics.set_devices(
                    endpoint.resource.name, count=endpoint.resource.count, healthy=healthy
                )

    async def refresh_allocations(self) -> None:
        if self.pod_resources is None:
            return
        try:
            response = await self.pod_resources.list_response()
            # Megabytes on a busy node: walked in a thread so Allocate and ListAndWatch go on.
            allocations = await asyncio.to_thread(
                epc_allocations, response, self.plan.epc_unit_bytes
            )
        except (InfrastructureError, InvalidInput) as error:
            log.warning("EPC allocations not refreshed: %s", error)
            self.metrics.pod_resources_errors.inc()
            return
        self.metrics.set_allocations(allocations)

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
