"""``confnode quote inspect``: tables, JSON, hex input forms, malformed input exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from confnode.cli import main
from confnode.cli._common import main_group
from confnode.cli._quote import decode_quote_input

PHALA = "Phala-Network_dcap-qvl/sample"
OASIS = "oasisprotocol_oasis-core/go/common/sgx/pcs/testdata"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main_group, ["quote", "inspect", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_for_the_worked_example(vectors: Path) -> None:
    code, out, _ = _run(str(vectors / PHALA / "sgx_quote"), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["tee"] == "SGX" and info["size"] == 4600
    assert info["header"]["version"] == 3 and info["header"]["vendor_is_intel"] is True
    assert info["body"]["mr_enclave"].startswith("33d8736d")
    assert info["body"]["attributes"]["debug"] is False
    assert info["body"]["attributes"]["names"] == ["INIT", "MODE64BIT"]
    assert info["qe_report"]["isv_svn"] == 10
    assert info["certification"]["type"] == 5 and len(info["certification"]["chain"]) == 3
    pck = info["pck_extension"]
    assert (pck["fmspc"], pck["pce_id"], pck["sgx_type"]) == ("00A067110000", "0000", 0)
    assert pck["tcb"]["comp_svns"][:6] == [11, 11, 2, 2, 255, 1] and pck["tcb"]["pcesvn"] == 13


def test_table_output(vectors: Path) -> None:
    code, out, _ = _run(str(vectors / "fortanix_rust-sgx/intel-sgx/pcs/tests/data/quote.bin"))
    assert code == 0
    for text in ("SGX quote v3", "Report body", "QE report", "PCK certificate SGX extension"):
        assert text in out
    assert "DEBUG enclave" in out and "00906EA10000" in out


def test_encrypted_ppid_quote(vectors: Path) -> None:
    code, out, _ = _run(str(vectors / OASIS / "quote_v3_ecdsa_p256_eppid.bin"), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["pck_extension"] is None
    assert info["certification"]["encrypted_ppid"]["pcesvn"] == 12


@pytest.mark.parametrize("name", ["tdx-quote.hex", "quote-from-tappd.hex"])
def test_hex_input_files(vectors: Path, name: str) -> None:
    code, out, _ = _run(str(vectors / PHALA / name), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["tee"] == "TDX" and info["trailing_bytes"] == 70
    assert info["body"]["td_report"] == "1.0"


def test_hex_variants_decode_to_the_same_bytes(vectors: Path) -> None:
    raw = (vectors / PHALA / "sgx_quote").read_bytes()
    hexed = raw.hex().encode()
    for text in (hexed, b"0x" + hexed + b"\n", b"  " + hexed[:100] + b"\n " + hexed[100:] + b"\t"):
        assert decode_quote_input(text) == raw
    assert decode_quote_input(raw) == raw


def test_malformed_input_exits_2_with_one_line(tmp_path: Path, vectors: Path) -> None:
    quote = tmp_path / "cut.bin"
    quote.write_bytes((vectors / PHALA / "sgx_quote").read_bytes()[:500])
    code, out, err = _run(str(quote))
    assert code == 2 and out == ""
    assert "InvalidQuote" in err and "signature_data_len" in err and "offset 432" in err
    assert "Traceback" not in err


def test_odd_hex_is_malformed(tmp_path: Path) -> None:
    quote = tmp_path / "odd.hex"
    quote.write_text("0x030")
    code, _, err = _run(str(quote))
    assert code == 2 and "odd number of digits" in err


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, _ = _run(str(tmp_path / "absent.bin"))
    assert code == 2


def test_registered_on_the_console_script() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["quote", "inspect", "--help"])
    assert exit_info.value.code == 0
