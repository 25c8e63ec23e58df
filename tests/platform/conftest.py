"""Fixtures building the fake SGX hosts of :mod:`platform_trees` in temp dirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from platform_trees import SPECS, Tree, build_tree


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[[str], Tree]:
    """Build the named fake host (see ``SPECS``) in a fresh directory."""

    def make(name: str) -> Tree:
        return build_tree(tmp_path / name, SPECS[name])

    return make
