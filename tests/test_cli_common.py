"""The CLI's single error exit: one line plus a hint, the right exit code, no traceback."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from confnode.cli._common import ConfnodeGroup
from confnode.errors import (
    ConfnodeError,
    InfrastructureError,
    InvalidQuote,
    VerificationError,
)


def _app(error: ConfnodeError) -> click.Group:
    @click.group(cls=ConfnodeGroup)
    def root() -> None:
        pass

    @root.command()
    def boom() -> None:
        raise error

    return root


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidQuote("too short", field="header", offset=0), 2),
        (
            VerificationError("signature mismatch", step="quote-signature", hint="check the quote"),
            1,
        ),
        (InfrastructureError("PCCS unreachable"), 3),
    ],
)
def test_errors_become_one_line_and_exit_code(error: ConfnodeError, code: int) -> None:
    result = CliRunner().invoke(_app(error), ["boom"])
    assert result.exit_code == code
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error (")
    assert error.message in lines[0]
    assert "Traceback" not in result.output
    if error.hint:
        assert lines[1] == f"hint: {error.hint}"
    else:
        assert len(lines) == 1


def test_invalid_quote_names_field_and_offset() -> None:
    error = InvalidQuote("need 48 bytes, found 10", field="header", offset=0)
    assert error.message == "header at offset 0: need 48 bytes, found 10"
    assert (error.field, error.offset) == ("header", 0)
    assert isinstance(error, ValueError)


def test_long_messages_and_markup_stay_one_literal_line() -> None:
    message = "found [red]x[/red] " + "y" * 300
    result = CliRunner().invoke(_app(VerificationError(message)), ["boom"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].endswith(message)


def test_lazy_command_map_matches_what_the_modules_register() -> None:
    """Every command is reachable by name without importing the other command modules."""
    import importlib

    from confnode.cli._common import main_group

    for name, module in main_group.lazy.items():
        importlib.import_module(f"confnode.cli.{module}")
        assert name in main_group.commands, f"confnode.cli.{module} does not register {name!r}"
    assert set(main_group.commands) == set(main_group.lazy)
