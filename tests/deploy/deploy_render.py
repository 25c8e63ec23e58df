"""The shipped kustomize targets as ``kubectl kustomize`` renders them, for the deploy tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: cannot render kustomize overlays")
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render(target: str, *components: str, tmp_path: Path | None = None) -> list[dict[str, Any]]:
    """An overlay as shipped, or wrapped in a kustomization that adds ``components`` (what an
    operator's own overlay does; kustomize wants relative paths)."""
    if not components:
        return _kustomize(DEPLOY / target)
    assert tmp_path is not None
    wrapper = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / target, tmp_path)],
        "components": [os.path.relpath(DEPLOY / c, tmp_path) for c in components],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(wrapper))
    return _kustomize(tmp_path)
