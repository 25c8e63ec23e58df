"""The ``confnode`` command line.

Library code never prints or exits; this package turns results into tables/JSON and every
:class:`confnode.ConfnodeError` into one line plus a hint. Exit codes: 0 success, 1 verification
or policy failure (or a failed health check), 2 usage error or malformed input, 3 infrastructure
failure.

Each command group lives in its own module and registers itself on ``main_group`` when imported.
"""

from __future__ import annotations

from typing import Any

# Importing the command modules registers their commands on main_group.
from confnode.cli import (  # noqa: F401
    _attestation,
    _demo,
    _node,
    _quote,
    _quotehelper,
    _sample,
    _sim,
    _webhook,
)
from confnode.cli._common import main_group


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return main_group.main(args=argv, prog_name="confnode")


__all__ = ["main"]
