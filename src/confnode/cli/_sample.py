"""``confnode sample-app``: the enclave-aware sample application, step by step with timings.

The rendering helpers (:func:`print_step`, :func:`claims_table`, :func:`summary_table`) are
public so ``confnode demo`` can show the sample the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from confnode.cli._common import console, main_group, print_json
from confnode.client import DEFAULT_SOCKET
from confnode.samples.enclave_app import (
    STEPS,
    EnclaveApp,
    KeyType,
    SampleResult,
    SampleStepError,
    Step,
    tls_context,
)

#: The claims worth showing after attestation (the token carries more).
SHOWN_CLAIMS = (
    "x-ms-attestation-type",
    "x-ms-sgx-mrenclave",
    "x-ms-sgx-mrsigner",
    "x-ms-sgx-product-id",
    "x-ms-sgx-svn",
    "x-ms-sgx-is-debuggable",
    "x-confnode-tcb-status",
    "x-confnode-advisory-ids",
    "x-confnode-collateral-expired",
    "x-confnode-simulated",
    "iss",
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def print_step(step: Step) -> None:
    """One finished step as a live line: number, name, time, what it produced."""
    console.print(
        f"[green]✔[/] [bold]{step.number}/{len(STEPS)} {escape(step.name):<9}[/]"
        f"{_ms(step.seconds)}  {escape(step.detail)}",
        highlight=False,
    )


def claims_table(claims: Mapping[str, Any]) -> Table:
    table = Table(title="attestation token claims", title_justify="left")
    table.add_column("claim")
    table.add_column("value", overflow="fold")
    for name in SHOWN_CLAIMS:
        if name in claims:
            value = claims[name]
            table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    return table


def summary_table(steps: tuple[Step, ...], failed: SampleStepError | None = None) -> Table:
    """Every step with its time and outcome; a failed run shows where it stopped."""
    table = Table(title="sample app summary", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("result")
    for step in steps:
        table.add_row(str(step.number), step.title, _ms(step.seconds).strip(), "[green]ok[/]")
    total = sum(step.seconds for step in steps)
    if failed is not None:
        number = len(steps) + 1
        table.add_row(
            str(number), STEPS[failed.step], _ms(failed.seconds).strip(), "[bold red]failed[/]"
        )
        total += failed.seconds
        for title in list(STEPS.values())[number:]:
            table.add_row("", title, "", "[dim]not run[/]")
    table.add_row("", "[bold]total[/]", f"[bold]{_ms(total).strip()}[/]", "")
    return table


def result_json(result: SampleResult) -> dict[str, Any]:
    return {
        "ok": True,
        "steps": [_step_json(step) for step in result.steps],
        "mr_enclave": result.mr_enclave.hex(),
        "mr_signer": result.mr_signer.hex(),
        "key": result.key_name,
        "released_kty": result.released_kty,
        "secret_sha256": result.secret_sha256,
        "claims": dict(result.claims),
    }


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "number": step.number,
        "name": step.name,
        "seconds": step.seconds,
        "detail": step.detail,
    }


@main_group.command("sample-app")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SOCKET,
    show_default=True,
    help="AESM socket of the quote helper.",
)
@click.option(
    "--sim-state",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's simulated platform (the quote helper's --state).",
)
@click.option("--attestation-url", required=True, help="Attestation service base URL.")
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificate (PEM) of the service's TLS certificate; default: system trust store.",
)
@click.option("--key", "key_name", default="sample-key", show_default=True, help="Key to release.")
@click.option(
    "--key-type",
    type=click.Choice(["EC", "RSA"], case_sensitive=False),
    default="EC",
    show_default=True,
    help="Enclave key pair: EC P-256 (ECDH-ES) or RSA-2048 (RSA-OAEP-256).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON only.")
def sample_app(
    socket_path: Path,
    sim_state: Path,
    attestation_url: str,
    ca_cert: Path | None,
    key_name: str,
    key_type: str,
    as_json: bool,
) -> None:
    """Run the enclave-aware sample: enclave, key pair, quote, attest, key release, decrypt.

    Each step is printed with its timing, then the token's claims and a summary table. Exits 0
    only when every step succeeded.
    """
    kind: KeyType = "RSA" if key_type.upper() == "RSA" else "EC"
    app = EnclaveApp(
        socket_path=socket_path,
        sim_state=sim_state,
        attestation_url=attestation_url,
        tls=tls_context(ca_cert),
        key_name=key_name,
        key_type=kind,
    )
    if not as_json:
        console.print(
            f"[bold]sample enclave app[/]: {escape(str(socket_path))} → "
            f"{escape(attestation_url)}, key {escape(key_name)!r}",
            highlight=False,
        )
    try:
        result = app.run(None if as_json else print_step)
    except SampleStepError as error:
        if as_json:
            print_json(
                {
                    "ok": False,
                    "failed_step": error.step,
                    "error": error.message,
                    "steps": [_step_json(step) for step in error.completed],
                }
            )
        else:
            console.print(f"[bold red]✘ {len(error.completed) + 1}/{len(STEPS)} {error.step}[/]")
            console.print(summary_table(error.completed, error))
        raise
    if as_json:
        print_json(result_json(result))
        return
    console.print(claims_table(result.claims))
    console.print(summary_table(result.steps))
    console.print(
        f"[bold green]all {len(result.steps)} steps succeeded[/]: key {escape(key_name)!r} "
        f"({result.released_kty}, SHA-256 {result.secret_sha256[:16]}…) released to enclave "
        f"{result.mr_enclave.hex()[:16]}…",
        highlight=False,
    )
