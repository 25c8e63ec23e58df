"""``confnode quote verify``: exit codes, JSON shape, one-line failures."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from verify_testpki import LEAF_SERIAL, NOW, TDX_RELAUNCH, Scenario

import confnode.cli  # noqa: F401  (registers every command group)
from confnode.cli._common import main_group
from confnode.cli._vectors import VectorSet

AT = "--at"


def invoke(*args: str | Path) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(main_group, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _files(tmp_path: Path, vs: VectorSet) -> tuple[Path, Path]:
    quote = tmp_path / "quote.bin"
    quote.write_bytes(vs.quote)
    bundle = tmp_path / "collateral.json"
    bundle.write_text(vs.collateral_json)
    return quote, bundle


def _scenario_args(tmp_path: Path, scenario: Scenario) -> list[str | Path]:
    """``quote verify`` arguments for a minted scenario: its quote, bundle and root as files."""
    raw, collateral, root = scenario.build()
    (tmp_path / "q.bin").write_bytes(raw)
    (tmp_path / "c.json").write_text(collateral.to_json())
    (tmp_path / "root.der").write_bytes(root)
    return [
        "quote",
        "verify",
        tmp_path / "q.bin",
        "--collateral",
        tmp_path / "c.json",
        AT,
        NOW.isoformat(),
        "--trust-root",
        tmp_path / "root.der",
    ]


def test_verify_json_success(tmp_path: Path, dcapqvl: VectorSet) -> None:
    quote, bundle = _files(tmp_path, dcapqvl)
    code, out, _ = invoke(
        "quote", "verify", quote, "--collateral", bundle, AT, "2025-07-04T00:00:00Z", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "ConfigurationAndSWHardeningNeeded"
    assert doc["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert doc["qe_status"] == "UpToDate"
    assert doc["fmspc"] == "00A067110000"
    assert doc["crl_checked"] is True
    assert doc["enclave"]["debug"] is False


def test_verify_table_and_hex_input(tmp_path: Path, dcapqvl: VectorSet) -> None:
    quote, bundle = _files(tmp_path, dcapqvl)
    quote.write_text("0x" + dcapqvl.quote.hex() + "\n")
    code, out, _ = invoke("quote", "verify", quote, "--collateral", bundle, AT, "2025-07-04")
    assert code == 0
    assert "ConfigurationAndSWHardeningNeeded" in out
    assert "00A067110000" in out
    assert "INTEL-SA-00615" in out


def test_verify_failure_is_one_line_exit_1(tmp_path: Path, dcapqvl: VectorSet) -> None:
    quote, bundle = _files(tmp_path, dcapqvl)
    code, out, err = invoke("quote", "verify", quote, "--collateral", bundle, AT, "2026-01-01")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "collateral-expired" in lines[0] and "hint:" in lines[0]
    code, out, _ = invoke(
        "quote", "verify", quote, "--collateral", bundle, AT, "2026-01-01", "--json"
    )
    assert code == 1
    error = json.loads(out)["error"]
    assert error["step"] == "collateral-expired"
    assert "earliest expiration 2025-07-19T10:01:18Z" in error["message"]


def test_verify_allow_expired(tmp_path: Path, dcapqvl: VectorSet) -> None:
    quote, bundle = _files(tmp_path, dcapqvl)
    code, out, _ = invoke(
        "quote",
        "verify",
        quote,
        "--collateral",
        bundle,
        AT,
        "2026-01-01",
        "--allow-expired-collateral",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["collateral_expired"] is True


def test_verify_malformed_input_exit_2(tmp_path: Path, dcapqvl: VectorSet) -> None:
    quote, bundle = _files(tmp_path, dcapqvl)
    quote.write_bytes(dcapqvl.quote[:500])
    code, out, _ = invoke("quote", "verify", quote, "--collateral", bundle, "--json")
    assert code == 2
    assert json.loads(out)["error"]["step"] == "quote-parse"
    bundle.write_text("{}")
    quote.write_bytes(dcapqvl.quote)
    code, out, _ = invoke("quote", "verify", quote, "--collateral", bundle, "--json")
    assert code == 2
    assert json.loads(out)["error"]["step"] == "collateral-parse"
    code, _, _ = invoke("quote", "verify", quote, "--collateral", bundle, AT, "tomorrow")
    assert code == 2


def test_verify_skip_crl_and_trust_root(tmp_path: Path) -> None:
    raw, collateral, root = Scenario(with_crls=False).build()
    quote = tmp_path / "q.bin"
    quote.write_bytes(raw)
    bundle = tmp_path / "c.json"
    bundle.write_text(collateral.to_json())
    root_file = tmp_path / "root.der"
    root_file.write_bytes(root)
    base = ["quote", "verify", quote, "--collateral", bundle, AT, NOW.isoformat()]
    code, out, _ = invoke(*base, "--trust-root", root_file, "--json")
    assert code == 1
    assert json.loads(out)["error"]["step"] == "crl-missing"
    code, out, _ = invoke(*base, "--trust-root", root_file, "--insecure-skip-crl", "--json")
    assert code == 0
    assert json.loads(out)["crl_checked"] is False
    code, out, _ = invoke(*base, "--insecure-skip-crl", "--json")
    assert code == 1
    assert json.loads(out)["error"]["step"] == "root-ca"


def test_verify_revoked_exits_1_with_status(tmp_path: Path) -> None:
    args = _scenario_args(tmp_path, Scenario(pck_revoked=(LEAF_SERIAL,)))
    code, out, _ = invoke(*args, "--json")
    assert code == 1
    assert json.loads(out)["status"] == "Revoked"
    code, out, err = invoke(*args)
    assert code == 1
    assert "Revoked" in out
    assert "PCK certificate" in err


def test_crafted_certificate_names_are_shown_literally(tmp_path: Path) -> None:
    """Names from the quote reach rich: a "[/x]" in a CN must neither crash nor be eaten."""
    code, out, err = invoke(*_scenario_args(tmp_path, Scenario(leaf_cn="Evil [/x] [bold]SGX")))
    assert (code, out) == (1, "")
    assert "leaf CN is 'Evil [/x] [bold]SGX'" in err
    code, out, _ = invoke("quote", "inspect", tmp_path / "q.bin")
    assert code == 0
    assert "Evil [/x] [bold]SGX" in out


def test_verify_tdx_quote(tmp_path: Path, dcapqvl_tdx: VectorSet) -> None:
    quote, bundle = _files(tmp_path, dcapqvl_tdx)
    code, out, _ = invoke(
        "quote", "verify", quote, "--collateral", bundle, AT, "2025-07-04T00:00:00Z", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert (doc["tee"], doc["status"], doc["tdx_status"]) == ("TDX", "UpToDate", "UpToDate")
    assert doc["tdx_module"]["identity_id"] == "TDX_01"
    assert doc["td"]["mr_td"].startswith("91eb2b44")
    assert set(doc["td"]) >= {"rtmr0", "rtmr3", "mr_seam", "td_attributes", "xfam"}
    code, out, _ = invoke("quote", "verify", quote, "--collateral", bundle, AT, "2025-07-04")
    assert code == 0
    assert "TDX quote verification" in out and "MRTD" in out and "TDX_01" in out


def test_verify_tdx_relaunch_advised_table(tmp_path: Path) -> None:
    code, out, _ = invoke(*_scenario_args(tmp_path, TDX_RELAUNCH))
    assert code == 0
    assert "TDRelaunchAdvised" in out and "MRSERVICETD" in out
    code, out, _ = invoke("quote", "inspect", tmp_path / "q.bin", "--json")
    assert code == 0
    assert json.loads(out)["tee"] == "TDX"
