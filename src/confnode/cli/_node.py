"""``confnode doctor``, ``confnode device-plugin`` and ``confnode plugin probe``: the node agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich import box
from rich.table import Table

from confnode.cli._common import EXIT_FAILED, console, main_group, print_json
from confnode.errors import InfrastructureError
from confnode.platform import (
    DEFAULT_AESM_SOCKET,
    HostRoots,
    SgxPlatform,
    Status,
    cpuid_source_for,
    detect,
    format_bytes,
    node_labels,
    socket_peer,
    write_nfd_features,
)

if TYPE_CHECKING:
    from confnode.deviceplugin import ApiServerNodeStatusPatcher

_STATUS_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def _doctor_table(platform: SgxPlatform) -> Table:
    table = Table(title="SGX node capabilities", title_justify="left")
    table.add_column("Capability", no_wrap=True)
    table.add_column("Found")
    table.add_column("Status", no_wrap=True)
    table.add_column("How to fix")
    for finding in platform.findings:
        style = _STATUS_STYLE[finding.status]
        table.add_row(
            finding.capability,
            finding.found,
            f"[{style}]{finding.status}[/]",
            finding.fix or "",
        )
    return table


_F = TypeVar("_F", bound=Callable[..., Any])


def _host_options(command: _F) -> _F:
    """How a command sees the host: the CPUID source and the (hidden, for tests) host roots."""
    for option in reversed(
        (
            click.option(
                "--cpuid",
                "cpuid_mode",
                type=click.Choice(["auto", "native", "driver", "none"]),
                default="auto",
                show_default=True,
                help="CPUID source: the instruction (native), /dev/cpu/0/cpuid (driver), or none "
                "(cpuinfo only); auto: native on the live host, else the host roots' driver file.",
            ),
            click.option("--dev-root", default="/dev", hidden=True),
            click.option("--sys-root", default="/sys", hidden=True),
            click.option("--proc-root", default="/proc", hidden=True),
            click.option("--boot-root", default="/boot", hidden=True),
        )
    ):
        command = option(command)
    return command


@main_group.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option(
    "--nfd-features-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write node-feature-discovery local features (e.g. "
    "/etc/kubernetes/node-feature-discovery/features.d/confnode-sgx).",
)
@click.option(
    "--aesm-socket",
    default=DEFAULT_AESM_SOCKET,
    show_default=True,
    help="AESM / quote-helper socket: its presence is checked, and whether the process serving "
    "it can open the SGX device nodes.",
)
@_host_options
@click.pass_context
def doctor(
    ctx: click.Context,
    as_json: bool,
    nfd_features_file: Path | None,
    aesm_socket: str,
    cpuid_mode: str,
    dev_root: str,
    sys_root: str,
    proc_root: str,
    boot_root: str,
) -> None:
    """Check whether this node can run SGX enclaves, and say how to fix what is missing.

    Also checks that this process and the quote helper behind --aesm-socket can open the SGX
    device nodes (a non-root helper often cannot). Exits 1 when the node cannot run enclaves
    (use `confnode sim` to simulate instead).
    """
    roots = HostRoots(dev=dev_root, sys=sys_root, proc=proc_root, boot=boot_root)
    native = {"auto": None, "native": True, "driver": False}.get(cpuid_mode)
    cpuid = None if cpuid_mode == "none" else cpuid_source_for(roots, native=native)
    helper = socket_peer(aesm_socket, roots)
    platform = detect(roots, cpuid=cpuid, aesm_socket=aesm_socket, helper=helper)
    labels = node_labels(platform)
    if nfd_features_file is not None:
        try:
            write_nfd_features(nfd_features_file, platform)
        except OSError as exc:
            raise InfrastructureError(
                f"cannot write NFD features to {nfd_features_file}: {exc.strerror or exc}",
                hint="the directory must exist and be writable (nfd-worker reads "
                "/etc/kubernetes/node-feature-discovery/features.d)",
            ) from exc

    if as_json:
        print_json({**platform.to_dict(), "labels": labels})
    else:
        console.print(_doctor_table(platform))
        if platform.epc_by_numa:
            epc = Table(title="EPC per NUMA node", title_justify="left")
            epc.add_column("NUMA node", justify="right")
            epc.add_column("EPC", justify="right")
            epc.add_column("bytes", justify="right")
            for node, size in sorted(platform.epc_by_numa.items()):
                epc.add_row(str(node), format_bytes(size), str(size))
            console.print(epc)
        console.print("[bold]Node labels[/]")
        for key, value in labels.items():
            console.print(f"  {key}={value}", highlight=False, markup=False)
        if nfd_features_file is not None:
            console.print(f"NFD features written to {nfd_features_file}", highlight=False)
        if platform.can_run_enclaves:
            console.print("[green]This node can run SGX enclaves.[/]")
        else:
            console.print(
                "[bold red]No usable SGX on this node: it cannot run enclaves.[/] "
                "Use `confnode sim` for a simulated platform."
            )
    if not platform.can_run_enclaves:
        ctx.exit(EXIT_FAILED)


# --- device plugin and probe (helper E2) -------------------------------------------------------
# confnode.deviceplugin is imported inside the commands: it pulls in grpc, which other commands
# (and `confnode --help`) should not pay for.


def _plan_table(plan: Any, node: Any) -> Table:
    from confnode.deviceplugin import KUBELET_MAX_MESSAGE_BYTES

    epc = ", ".join(f"node {n}: {format_bytes(size)}" for n, size in node.epc_by_numa)
    sim = " (simulated)" if node.simulated else ""
    table = Table(
        title=f"EPC {epc}{sim}; mode {plan.mode}", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("Resource", overflow="fold")
    table.add_column("Devices", justify="right", no_wrap=True)
    table.add_column("Bytes", justify="right", no_wrap=True)
    table.add_column("% of 4MiB", justify="right", no_wrap=True)
    table.add_column("NUMA", no_wrap=True)
    for resource in plan.resources:
        size = resource.list_size(healthy=False)
        table.add_row(
            resource.name,
            str(resource.count),
            str(size),
            f"{100 * size / KUBELET_MAX_MESSAGE_BYTES:.2f}",
            "yes" if resource.prefers_allocation else "nil",
        )
    if plan.capacity:
        pairs = ", ".join(f"{name}={value}" for name, value in plan.capacity.items())
        table.caption = f"node status capacity (API server): {pairs}"
        table.caption_justify = "left"
    return table


def _plan_dict(plan: Any, node: Any) -> dict[str, Any]:
    return {
        "mode": str(plan.mode),
        "simulated": node.simulated,
        "epc_by_numa": {str(n): size for n, size in node.epc_by_numa},
        "resources": [
            {
                "name": r.name,
                "kind": str(r.kind),
                "devices": r.count,
                "list_and_watch_bytes": r.list_size(healthy=False),
                "topology": r.prefers_allocation,
            }
            for r in plan.resources
        ],
        "node_status_capacity": dict(plan.capacity),
    }


async def _run_agent(agent: Any) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(agent.run())
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


@main_group.command("device-plugin")
@click.option(
    "--device-plugin-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/var/lib/kubelet/device-plugins",
    show_default=True,
    help="Kubelet device-plugin directory (kubelet.sock and the plugin sockets).",
)
@click.option("--sim-epc", help="Simulate a node with this much EPC (e.g. 28MiB, 256GiB, 1TiB).")
@click.option("--sim-numa-nodes", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--resource-name",
    default="kubernetes.azure.com/sgx_epc_mem_in_MiB",
    show_default=True,
    help="EPC resource: the AKS name counts MiB; sgx.intel.com/epc counts bytes.",
)
@click.option("--enclave-resource", default="sgx.intel.com/enclave", show_default=True)
@click.option("--provision-resource", default="sgx.intel.com/provision", show_default=True)
@click.option("--enclave-limit", type=click.IntRange(1, 100_000), default=110, show_default=True)
@click.option("--provision-limit", type=click.IntRange(1, 100_000), default=110, show_default=True)
@click.option(
    "--aesm-limit",
    type=click.IntRange(1, 100_000),
    default=110,
    show_default=True,
    help="Containers per node that may hold confnode.io/aesm-socket (the quoting opt-in).",
)
@click.option(
    "--epc-mode",
    type=click.Choice(["auto", "devices", "node-status"]),
    default="auto",
    show_default=True,
    help="devices: one device per MiB; node-status: capacity patched through the API server.",
)
@click.option("--node-name", envvar="NODE_NAME", help="This node's name (node-status mode).")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reach the API server with this kubeconfig (current context; certificates, token, "
    "impersonation) instead of the in-cluster service account.",
)
@click.option(
    "--label-node",
    is_flag=True,
    help="Keep this node's confnode.io/ labels (docs/node-labels.md) current via the API server.",
)
@click.option(
    "--aesm-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    default="/var/run/aesmd/aesm.socket",
    show_default=True,
    help="Quote-helper socket, served as confnode.io/aesm-socket (Healthy while it exists): "
    "only containers holding it get its directory mounted and SGX_AESM_ADDR=1.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics, /healthz and /readyz (the kubelet's probes) on this port.",
)
@click.option(
    "--metrics-address", default="0.0.0.0", show_default=True, help="Bind address for metrics."
)
@click.option(
    "--pod-resources-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    default="/var/lib/kubelet/pod-resources/kubelet.sock",
    show_default=True,
    help="Kubelet PodResources socket, read for per-container EPC metrics.",
)
@click.option("--poll-interval", type=click.FloatRange(0.01, 5.0), default=0.1, show_default=True)
@click.option("--plan-only", is_flag=True, help="Print what would be advertised and exit.")
@click.option(
    "--remove-node-status",
    is_flag=True,
    help="Remove the EPC capacity (--resource-name) and the confnode.io/ labels from this "
    "node's Node object and exit: the uninstall step a stopping agent does not take.",
)
@click.option("--json", "as_json", is_flag=True, help="With --plan-only: print JSON.")
@_host_options
def device_plugin(
    device_plugin_dir: Path,
    sim_epc: str | None,
    sim_numa_nodes: int,
    resource_name: str,
    enclave_resource: str,
    provision_resource: str,
    enclave_limit: int,
    provision_limit: int,
    aesm_limit: int,
    epc_mode: str,
    node_name: str | None,
    kubeconfig: Path | None,
    label_node: bool,
    aesm_socket: Path,
    metrics_port: int | None,
    metrics_address: str,
    pod_resources_socket: Path,
    poll_interval: float,
    plan_only: bool,
    remove_node_status: bool,
    as_json: bool,
    cpuid_mode: str,
    dev_root: str,
    sys_root: str,
    proc_root: str,
    boot_root: str,
) -> None:
    """Run the SGX EPC device plugin (kubelet device-plugin API v1beta1).

    Serves each resource on its own socket, then registers with the kubelet; re-registers after
    kubelet restarts. Large EPC is published as node-status capacity (ADR 0005).
    """
    from confnode.deviceplugin import (
        AgentConfig,
        AlwaysPresent,
        DevicePluginAgent,
        DriverProbe,
        EpcMode,
        GrpcPodResourcesClient,
        SgxNode,
        detect_node,
        parse_size,
        plan_resources,
        simulated_node_labels,
    )
    from confnode.metrics import NodeAgentMetrics, on_loop, serve_metrics

    if remove_node_status:
        _remove_node_status(node_name, kubeconfig, resource_name)
        return
    driver: DriverProbe
    if sim_epc is not None:
        node = SgxNode.simulated_node(parse_size(sim_epc), sim_numa_nodes)
        driver = AlwaysPresent()
        labels = simulated_node_labels(node)
    else:
        roots = HostRoots(dev=dev_root, sys=sys_root, proc=proc_root, boot=boot_root)
        node, driver, labels = detect_node(roots, cpuid_mode, aesm_socket)
    config = AgentConfig(
        plugin_dir=device_plugin_dir,
        epc_resource=resource_name,
        enclave_resource=enclave_resource,
        provision_resource=provision_resource,
        epc_mode=None if epc_mode == "auto" else EpcMode(epc_mode),
        enclave_limit=enclave_limit,
        provision_limit=provision_limit,
        aesm_limit=aesm_limit,
        aesm_socket=aesm_socket,
        node_name=node_name,
        node_labels=labels if label_node else {},
        poll_interval=poll_interval,
    )
    plan = plan_resources(node, config)
    if plan_only:
        if as_json:
            print_json(_plan_dict(plan, node))
        else:
            console.print(_plan_table(plan, node))
        return
    if not device_plugin_dir.is_dir():
        raise InfrastructureError(
            f"device-plugin directory {device_plugin_dir} does not exist",
            hint="mount /var/lib/kubelet/device-plugins (hostPath) or pass --device-plugin-dir",
        )
    patcher = _api_server_patcher(kubeconfig) if plan.capacity or label_node else None
    metrics = NodeAgentMetrics()
    pod_resources = GrpcPodResourcesClient(pod_resources_socket) if metrics_port else None
    agent = DevicePluginAgent(
        node, config, driver=driver, metrics=metrics, patcher=patcher, pod_resources=pod_resources
    )
    console.print(_plan_table(plan, node))
    if metrics_port is not None:
        serve_metrics(
            metrics,
            metrics_port,
            metrics_address,
            live=on_loop(lambda: agent.loop, lambda: None, before_start=None),
            ready=on_loop(lambda: agent.loop, agent.readiness),
        )
        console.print(
            f"metrics on http://{metrics_address}:{metrics_port}/metrics, /healthz, /readyz",
            highlight=False,
        )
    console.print(f"serving in {device_plugin_dir}; Ctrl-C to stop", highlight=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_run_agent(agent))


def _api_server_patcher(kubeconfig: Path | None) -> ApiServerNodeStatusPatcher:
    """The patcher for ``--kubeconfig``, or the in-cluster service account without it."""
    from confnode.deviceplugin import ApiServerNodeStatusPatcher

    if kubeconfig is None:
        return ApiServerNodeStatusPatcher.from_environment()
    return ApiServerNodeStatusPatcher.from_kubeconfig(kubeconfig)


def _remove_node_status(node_name: str | None, kubeconfig: Path | None, resource: str) -> None:
    """Undo what the agent wrote to its Node: EPC capacity and every managed label."""
    if not node_name:
        raise InfrastructureError(
            "--remove-node-status needs the node's name",
            hint="set --node-name (env NODE_NAME)",
        )
    patcher = _api_server_patcher(kubeconfig)

    async def remove() -> None:
        try:
            await patcher.remove_capacity(node_name, [resource])
            await patcher.patch_labels(node_name, {})  # deletes every managed key
        finally:
            await patcher.aclose()

    asyncio.run(remove())
    console.print(
        f"removed {resource} and the confnode.io/ labels from node {node_name}", highlight=False
    )


@main_group.group("plugin")
def plugin_group() -> None:
    """Debug kubelet device plugins."""


def _probe_tables(result: Any) -> list[Table]:
    summary = Table(title=f"Device plugin at {result.socket}", title_justify="left")
    summary.add_column("Item", no_wrap=True)
    summary.add_column("Value")
    summary.add_row("pre_start_required", str(result.pre_start_required))
    summary.add_row(
        "get_preferred_allocation_available", str(result.get_preferred_allocation_available)
    )
    summary.add_row(
        "devices", f"{result.device_count} ({result.healthy} Healthy, {result.unhealthy} Unhealthy)"
    )
    summary.add_row(
        "NUMA topology",
        ", ".join(map(str, result.numa_nodes)) + f" ({result.devices_with_topology} devices)"
        if result.devices_with_topology
        else "nil",
    )
    style = "green" if result.fits_kubelet_limit else "bold red"
    summary.add_row(
        "ListAndWatch message",
        f"[{style}]{result.message_bytes} bytes = {result.message_percent:.2f} % of 4 MiB[/]",
    )
    if result.preferred is not None:
        summary.add_row("preferred allocation", " ".join(result.preferred))
    summary.add_row("Allocate request", " ".join(result.allocate_ids) or "—")
    if result.allocate_error:
        summary.add_row("Allocate error", f"[bold red]{result.allocate_error}[/]")
    tables = [summary]
    response = result.allocate_response or {}
    for container in response.get("container_responses", []):
        detail = Table(title="Sample Allocate response", title_justify="left")
        detail.add_column("Kind", no_wrap=True)
        detail.add_column("Container")
        detail.add_column("Host / value")
        detail.add_column("Options")
        for spec in container.get("devices", []):
            detail.add_row(
                "device",
                spec.get("container_path", ""),
                spec.get("host_path", ""),
                spec.get("permissions", ""),
            )
        for mount in container.get("mounts", []):
            detail.add_row(
                "mount",
                mount.get("container_path", ""),
                mount.get("host_path", ""),
                "ro" if mount.get("read_only") else "rw",
            )
        for key, value in sorted(container.get("envs", {}).items()):
            detail.add_row("env", key, value, "")
        for key, value in sorted(container.get("annotations", {}).items()):
            detail.add_row("annotation", key, value, "")
        tables.append(detail)
    return tables


@plugin_group.command("probe")
@click.option(
    "--socket",
    "socket_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plugin's unix socket (in the kubelet device-plugin directory).",
)
@click.option(
    "--allocate",
    "allocate_count",
    type=click.IntRange(1, 1_000_000),
    default=1,
    show_default=True,
    help="Devices in the sample Allocate.",
)
@click.option("--timeout", type=click.FloatRange(0.1, 120.0), default=5.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.pass_context
def plugin_probe(
    ctx: click.Context, socket_path: Path, allocate_count: int, timeout: float, as_json: bool
) -> None:
    """Talk to a device plugin as the kubelet would and show what it advertises.

    Exits 1 when the ListAndWatch message exceeds the kubelet's 4 MiB limit or Allocate fails.
    """
    from confnode.deviceplugin import probe_plugin

    result = asyncio.run(probe_plugin(socket_path, allocate_count=allocate_count, timeout=timeout))
    if as_json:
        print_json(result.to_dict())
    else:
        for table in _probe_tables(result):
            console.print(table)
    if not result.fits_kubelet_limit or result.allocate_error is not None:
        ctx.exit(EXIT_FAILED)
