"""``python -m confnode``: the same CLI as the ``confnode`` console script."""

from __future__ import annotations

from confnode.cli import main

main()
