"""Shared CLI plumbing: the root group, the single error exit, console helpers."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from confnode.errors import ConfnodeError, InfrastructureError, InvalidInput, VerificationError

#: Exit codes shared by every command.
EXIT_OK = 0
EXIT_FAILED = 1  # verification/policy failure, failed health check
EXIT_USAGE = 2  # usage error or malformed input (click also uses 2 for usage errors)
EXIT_INFRA = 3  # a peer, file or device was unavailable

console = Console()
err_console = Console(stderr=True)


def exit_code_for(error: ConfnodeError) -> int:
    if isinstance(error, InvalidInput):
        return EXIT_USAGE
    if isinstance(error, VerificationError):
        return EXIT_FAILED
    if isinstance(error, InfrastructureError):
        return EXIT_INFRA
    return EXIT_FAILED


def fail(error: ConfnodeError) -> NoReturn:
    """Print one line (plus a hint line when there is one) and exit with the error's code."""
    kind = type(error).__name__
    # soft_wrap: the error stays one line however narrow the terminal (or a pipe) is.
    err_console.print(
        f"[bold red]error[/] ({kind}): {escape(error.message)}", highlight=False, soft_wrap=True
    )
    if error.hint:
        err_console.print(f"[dim]hint:[/] {escape(error.hint)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code_for(error))


def print_json(obj: Any) -> None:
    """Machine output goes to stdout as one JSON document, never through rich markup."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


class ConfnodeGroup(click.Group):
    """A click group whose commands turn :class:`ConfnodeError` into a one-line exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfnodeError as error:
            fail(error)


@click.group(cls=ConfnodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="confnode")
def main_group() -> None:
    """confnode: confidential-computing nodes for Kubernetes (Intel SGX DCAP).

    Node agent (SGX detection, EPC device plugin, metrics), AESM-compatible quote helper,
    DCAP quote verification and an MAA-compatible attestation service.
    """
