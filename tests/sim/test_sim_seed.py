"""The simulated platform's seed is secret by default: random, kept 0600, never overwritten."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from confnode.cli import main_group
from confnode.errors import InvalidInput
from confnode.sim import SimPlatform


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main_group, list(args))
    return result.exit_code, result.output


def test_platforms_without_a_seed_do_not_share_keys() -> None:
    """With the old public default seed, anyone could derive the root and forge quotes."""
    a, b = SimPlatform(), SimPlatform()
    assert a.root_certificate() != b.root_certificate()
    assert len(a.config.seed_bytes) == 32 and a.config.seed_bytes != b.config.seed_bytes


def test_random_seed_is_persisted_privately_and_reloaded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = SimPlatform(state)
    config = state / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["seed"] == first.config.seed
    assert SimPlatform(state).root_certificate() == first.root_certificate()
    assert not list(state.glob(".*.tmp"))


def test_saving_over_an_existing_platform_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    original = SimPlatform(state)
    with pytest.raises(InvalidInput, match="refusing to overwrite its seed"):
        SimPlatform().save(state)
    assert SimPlatform(state).config.seed == original.config.seed


def test_cli_init_is_random_unless_a_fixed_seed_is_asked_for(tmp_path: Path) -> None:
    for name in ("a", "b"):
        code, out = _run("sim", "init", "--state", str(tmp_path / name))
        assert code == 0, out
    assert (
        SimPlatform(tmp_path / "a").root_certificate()
        != SimPlatform(tmp_path / "b").root_certificate()
    )
    for name in ("c", "d"):
        code, out = _run(
            "sim", "init", "--state", str(tmp_path / name), "--insecure-fixed-seed", "t"
        )
        assert code == 0, out
    assert (
        SimPlatform(tmp_path / "c").root_certificate()
        == SimPlatform(tmp_path / "d").root_certificate()
    )
    code, out = _run("sim", "init", "--state", str(tmp_path / "e"), "--seed", "x")
    assert code != 0 and "No such option" in out


def test_cli_seed_file_shares_a_secret_seed(tmp_path: Path) -> None:
    secret = tmp_path / "seed"
    secret.write_text("c2VjcmV0LXNoYXJlZC1ieS1vbmUtY2x1c3Rlcg==\n")
    for name in ("n1", "n2"):
        code, out = _run("sim", "init", "--state", str(tmp_path / name), "--seed-file", str(secret))
        assert code == 0, out
    assert (
        SimPlatform(tmp_path / "n1").root_certificate()
        == SimPlatform(tmp_path / "n2").root_certificate()
    )
    short = tmp_path / "short"
    short.write_text("changeme")
    code, out = _run("sim", "init", "--state", str(tmp_path / "s"), "--seed-file", str(short))
    assert code != 0 and "at least 16" in out
    code, out = _run(
        "sim", "init", "--state", str(tmp_path / "x"),
        "--seed-file", str(secret), "--insecure-fixed-seed", "t",
    )  # fmt: skip
    assert code != 0 and "mutually exclusive" in out
