"""``confnode demo``: the whole system on the simulated default, as far as it is built."""

from __future__ import annotations

from confnode.cli._common import console, main_group


@main_group.command()
def demo() -> None:
    """Run the end-to-end demonstration."""
    console.print("[bold]confnode demo[/]")
