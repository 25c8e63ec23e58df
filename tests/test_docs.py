"""Docs that cannot drift: the README's CLI reference and the troubleshooting table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import confnode.client
import confnode.verify
from confnode.errors import VerificationError

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = (REPO / "docs" / "operations.md").read_text()


def test_readme_cli_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "error",
    [
        name
        for name in confnode.verify.__all__
        if isinstance(getattr(confnode.verify, name), type)
        and issubclass(getattr(confnode.verify, name), VerificationError)
    ],
)
def test_every_verifier_error_is_in_the_troubleshooting_table(error: str) -> None:
    cls = getattr(confnode.verify, error)
    assert f"| `{error}` ({cls.step})" in OPERATIONS


@pytest.mark.parametrize(
    "error",
    [
        name
        for name, value in vars(confnode.client).items()
        if isinstance(value, type)
        and issubclass(value, confnode.client.AesmError)
        and value is not confnode.client.AesmError
    ],
)
def test_every_quoting_error_is_in_the_troubleshooting_table(error: str) -> None:
    assert f"| `{error}` |" in OPERATIONS
