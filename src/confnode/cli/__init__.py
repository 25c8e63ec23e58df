"""The ``confnode`` command line.

Library code never prints or exits; this package turns results into tables/JSON and every
:class:`confnode.ConfnodeError` into one line plus a hint. Exit codes: 0 success, 1 verification
or policy failure (or a failed health check), 2 usage error or malformed input, 3 infrastructure
failure.

Each command group lives in its own module and registers itself on ``main_group`` when imported.
"""

from __future__ import annotations

from typing import Any

from confnode.cli._common import main_group

# Command name → the module that registers it (imported on first use, see ConfnodeGroup).
main_group.lazy.update(
    {
        "attestation": "_attestation",
        "collateral": "_sim",
        "demo": "_demo",
        "device-plugin": "_node",
        "doctor": "_node",
        "node": "_quotehelper",
        "pccs": "_sim",
        "plugin": "_node",
        "quote": "_quote",
        "quote-helper": "_quotehelper",
        "sample-app": "_sample",
        "sim": "_sim",
        "webhook": "_webhook",
    }
)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return main_group.main(args=argv, prog_name="confnode")


__all__ = ["main"]
