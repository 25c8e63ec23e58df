"""Shared CLI plumbing: the root group, the single error exit, console helpers."""

from __future__ import annotations

import importlib
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
    """A click group whose commands turn :class:`ConfnodeError` into a one-line exit.

    ``lazy`` maps command names to the ``confnode.cli`` module that registers them; a module is
    imported only when one of its commands is used, so a daemon (the node agent, the webhook)
    does not load the verifier, the attestation service and gRPC it never calls.
    """

    lazy: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            importlib.import_module(f"confnode.cli.{self.lazy[cmd_name]}")
        return super().get_command(ctx, cmd_name)

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
