"""``confnode webhook serve``: the SGX admission webhook."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from confnode._https import ReloadingTLS, serve, uvicorn_config
from confnode.cli._common import err_console, main_group
from confnode.errors import InvalidInput
from confnode.webhook import EPC_RESOURCES, NamespacePolicy, WebhookConfig
from confnode.webhook.server import create_app


def _namespace_policies(path: Path | None) -> dict[str, NamespacePolicy]:
    """Read ``{"<namespace>": {"forbidDebug": bool, "allowedMrenclaves": [...], ...}}``."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text())
        return {
            namespace: NamespacePolicy(
                forbid_debug=bool(rules.get("forbidDebug", False)),
                allowed_mrenclaves=frozenset(v.lower() for v in rules.get("allowedMrenclaves", [])),
                allowed_mrsigners=frozenset(v.lower() for v in rules.get("allowedMrsigners", [])),
            )
            for namespace, rules in document.items()
        }
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise InvalidInput(
            f"cannot read namespace policies from {path}: {error}",
            hint='expected {"<namespace>": {"forbidDebug": true, "allowedMrenclaves": ["<hex>"]}}',
        ) from error


@main_group.group()
def webhook() -> None:
    """SGX admission webhook (mutating + validating)."""


@webhook.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--epc-resource",
    type=click.Choice(sorted(EPC_RESOURCES)),
    default="kubernetes.azure.com/sgx_epc_mem_in_MiB",
    show_default=True,
    help="EPC resource the node agent advertises on this cluster.",
)
@click.option(
    "--device-resource",
    default=None,
    help="Enclave device resource to add when EPC is a node-status extended resource.",
)
@click.option("--max-node-epc-mib", type=int, default=None, help="Largest EPC any node offers.")
@click.option(
    "--namespace-policies",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with per-namespace enclave rules.",
)
def serve_command(
    host: str,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    epc_resource: str,
    device_resource: str | None,
    max_node_epc_mib: int | None,
    namespace_policies: Path | None,
) -> None:
    """Serve /mutate and /validate over HTTPS; certificates reload when their files change."""
    config = WebhookConfig(
        epc_resource=epc_resource,
        device_resource=device_resource,
        max_node_epc_mib=max_node_epc_mib,
        namespaces=_namespace_policies(namespace_policies),
    )
    tls = ReloadingTLS(tls_cert, tls_key)
    err_console.print(f"webhook listening on https://{host}:{port} (EPC as {epc_resource})")
    asyncio.run(serve(uvicorn_config(create_app(config), host=host, port=port, tls=tls), tls))
