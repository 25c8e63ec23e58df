"""``confnode sim init|quote|root`` end to end, checked with dcap-qvl."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dcap_qvl
import pytest
from click.testing import CliRunner

from confnode.cli import main_group
from confnode.collateral import Collateral
from confnode.sgx import parse_quote
from confnode.sim import SimPlatform


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main_group, list(args))
    return result.exit_code, result.output


def test_init_quote_root_then_verify(tmp_path: Path, sim_at: datetime) -> None:
    state = tmp_path / "state"
    code, out = _run(
        "sim", "init", "--state", str(state), "--insecure-fixed-seed", "cli", "--tcb", "OutOfDate"
    )
    assert code == 0, out
    assert "OutOfDate" in out and "SIMULATED" in out
    quote_path, bundle, root = tmp_path / "q.bin", tmp_path / "c.json", tmp_path / "root.der"
    code, out = _run(
        "sim", "quote", "--state", str(state), "--report-data", "0xc0ffee",
        "--mr-enclave", "aa" * 32, "--mr-signer", "bb" * 32, "--isv-svn", "4",
        "--out", str(quote_path), "--collateral-out", str(bundle),
        "--at", sim_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert code == 0, out
    code, out = _run("sim", "root", "--state", str(state), "--out", str(root))
    assert code == 0, out
    assert root.read_bytes() == SimPlatform(state).root_certificate()
    quote = quote_path.read_bytes()
    body = parse_quote(quote).body
    assert body.mr_enclave == b"\xaa" * 32 and body.isv_svn == 4
    assert body.report_data == bytes.fromhex("c0ffee").ljust(64, b"\0")
    assert set(json.loads(bundle.read_text())) >= {"tcb_info", "pck_crl", "root_ca_crl"}
    report = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(bundle.read_text()),
        root.read_bytes(),
        int(sim_at.timestamp()),
    )
    assert report.status == "OutOfDate"


def test_debug_flag_sets_debug(tmp_path: Path) -> None:
    assert _run("sim", "init", "--state", str(tmp_path))[0] == 0
    out = tmp_path / "q.bin"
    assert _run("sim", "quote", "--state", str(tmp_path), "--debug", "--out", str(out))[0] == 0
    assert parse_quote(out.read_bytes()).body.attributes.debug


def test_errors_exit_with_the_right_codes(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    code, out = _run("sim", "quote", "--state", str(missing), "--out", str(tmp_path / "q"))
    assert code == 3 and "sim init" in out
    assert _run("sim", "init", "--state", str(tmp_path), "--tcb", "UpToDate")[0] == 0
    code, out = _run("sim", "init", "--state", str(tmp_path), "--tcb", "Revoked")
    assert code == 2 and "tcb='UpToDate'" in out
    code, out = _run(
        "sim",
        "quote",
        "--state",
        str(tmp_path),
        "--mr-enclave",
        "abc",
        "--out",
        str(tmp_path / "q"),
    )
    assert code == 2 and "--mr-enclave" in out
    code, out = _run(
        "sim", "quote", "--state", str(tmp_path), "--report-data", "00" * 65,
        "--out", str(tmp_path / "q"),
    )  # fmt: skip
    assert code == 2 and "at most 64" in out
    code, out = _run("pccs", "serve", "--state", str(tmp_path))
    assert code == 2 and "--sim" in out


def _sim_files(tmp_path: Path, at: datetime, *init: str) -> tuple[Path, Path, Path]:
    state = tmp_path / "state"
    assert _run("sim", "init", "--state", str(state), *init)[0] == 0
    quote, bundle, root = tmp_path / "q.bin", tmp_path / "c.json", tmp_path / "root.der"
    code, out = _run(
        "sim", "quote", "--state", str(state), "--out", str(quote),
        "--collateral-out", str(bundle), "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert code == 0, out
    assert _run("sim", "root", "--state", str(state), "--out", str(root))[0] == 0
    return quote, bundle, root


@pytest.mark.parametrize(
    ("init", "status", "exit_code"),
    [
        ((), "UpToDate", 0),
        (("--tcb", "ConfigurationAndSWHardeningNeeded", "--ca", "platform"),
         "ConfigurationAndSWHardeningNeeded", 0),
        (("--tcb", "OutOfDate"), "OutOfDate", 0),
        (("--tcb", "Revoked"), "Revoked", 1),
        (("--revoke-pck",), "Revoked", 1),
    ],
)  # fmt: skip
def test_confnode_quote_verify_with_the_simulated_root(
    tmp_path: Path, sim_at: datetime, init: tuple[str, ...], status: str, exit_code: int
) -> None:
    quote, bundle, root = _sim_files(tmp_path, sim_at, *init)
    at = sim_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ["quote", "verify", str(quote), "--collateral", str(bundle), "--at", at, "--json"]
    code, out = _run(*args, "--trust-root", str(root))
    assert code == exit_code, out
    verdict = json.loads(out)
    assert verdict["status"] == status
    code, out = _run(*args)  # the simulated root is not trusted by default
    assert code == 1 and "error" in json.loads(out)


def test_expired_collateral_is_reported(tmp_path: Path, sim_at: datetime) -> None:
    state, quote, bundle = tmp_path / "s", tmp_path / "q.bin", tmp_path / "c.json"
    assert _run("sim", "init", "--state", str(state))[0] == 0
    code, out = _run(
        "sim", "quote", "--state", str(state), "--out", str(quote), "--collateral-out",
        str(bundle), "--issue-date", "2026-01-01", "--next-update", "2026-02-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0, out
    collateral = Collateral.from_json(bundle.read_text())
    assert collateral.earliest_next_update == datetime(2026, 2, 1, tzinfo=UTC)
    assert collateral.tcb_info.info.issue_date == datetime(2026, 1, 1, tzinfo=UTC)
    root = tmp_path / "root.der"
    assert _run("sim", "root", "--state", str(state), "--out", str(root))[0] == 0
    args = ["quote", "verify", str(quote), "--collateral", str(bundle), "--trust-root", str(root)]
    at = ["--at", sim_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "--json"]
    code, out = _run(*args, *at)
    assert code != 0, out  # sim_at is after nextUpdate
    code, out = _run(*args, *at, "--allow-expired-collateral")
    assert code == 0 and json.loads(out)["collateral_expired"] is True
