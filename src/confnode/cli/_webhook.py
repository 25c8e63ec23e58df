"""``confnode webhook serve``: the SGX admission webhook."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from string import hexdigits
from typing import Any

import click

from confnode._https import ReloadingTLS, serve, uvicorn_config
from confnode.cli._common import err_console, main_group
from confnode.errors import InvalidInput
from confnode.webhook import EPC_RESOURCES, NamespacePolicy, WebhookConfig
from confnode.webhook.server import create_app

_POLICY_LISTS = {"allowedMrenclaves": "MRENCLAVE", "allowedMrsigners": "MRSIGNER"}


def _policy(namespace: str, rules: Any) -> NamespacePolicy:
    """One namespace's rules; anything unexpected is an error, never a silently weaker policy."""
    if not isinstance(rules, dict):
        raise ValueError(f"{namespace}: expected an object, found {rules!r}")
    unknown = sorted(set(rules) - {"forbidDebug", *_POLICY_LISTS})
    if unknown:
        raise ValueError(f"{namespace}: unknown keys {unknown}")
    forbid_debug = rules.get("forbidDebug", False)
    if not isinstance(forbid_debug, bool):
        raise ValueError(f"{namespace}.forbidDebug: expected true or false, found {forbid_debug!r}")
    allowed: dict[str, frozenset[str]] = {}
    for key, what in _POLICY_LISTS.items():
        values = rules.get(key, [])
        if not isinstance(values, list) or not all(
            isinstance(v, str) and len(v) == 64 and all(c in hexdigits for c in v) for v in values
        ):
            raise ValueError(f"{namespace}.{key}: expected a list of 64-digit {what} hex strings")
        allowed[key] = frozenset(v.lower() for v in values)
    return NamespacePolicy(
        forbid_debug=forbid_debug,
        allowed_mrenclaves=allowed["allowedMrenclaves"],
        allowed_mrsigners=allowed["allowedMrsigners"],
    )


def _namespace_policies(path: Path | None) -> dict[str, NamespacePolicy]:
    """Read ``{"<namespace>": {"forbidDebug": bool, "allowedMrenclaves": [...], ...}}``."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text())
        if not isinstance(document, dict):
            raise ValueError(f"expected an object keyed by namespace, found {document!r}")
        return {namespace: _policy(namespace, rules) for namespace, rules in document.items()}
    except (OSError, ValueError) as error:
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
    default="sgx.intel.com/enclave",
    show_default=True,
    help="Enclave device resource added to every EPC container (the agent's --enclave-resource).",
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
    device_resource: str,
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
