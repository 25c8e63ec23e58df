"""``confnode sim td-quote`` and the simulated PCCS's TDX routes, checked with dcap-qvl."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import dcap_qvl
import httpx
import pytest
from click.testing import CliRunner

from confnode.cli import main_group
from confnode.sgx import TdReportBody, parse_quote
from confnode.sim import SimPlatform
from confnode.sim.tdx import DEFAULT_MR_TD, DEFAULT_RTMRS, SimTdxPlatform


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main_group, list(args))
    return result.exit_code, result.output


def _verify(quote: bytes, bundle: str, root: bytes, at: datetime) -> dcap_qvl.VerifiedReport:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(bundle)
    return dcap_qvl.verify_with_root_ca(quote, collateral, root, int(at.timestamp()))


def test_td_quote_with_measurements_verifies(tmp_path: Path, sim_at: datetime) -> None:
    state = tmp_path / "state"
    assert _run("sim", "init", "--state", str(state), "--tcb", "SWHardeningNeeded")[0] == 0
    quote_path, bundle = tmp_path / "q.bin", tmp_path / "c.json"
    code, out = _run(
        "sim", "td-quote", "--state", str(state), "--report-data", "0xc0ffee",
        "--mr-td", "aa" * 48, "--rtmr", "1=" + "bb" * 48, "--rtmr", "3=" + "cc" * 48,
        "--td15", "--out", str(quote_path), "--collateral-out", str(bundle),
        "--at", sim_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert code == 0, out
    quote = parse_quote(quote_path.read_bytes())
    body = quote.body
    assert isinstance(body, TdReportBody) and body.is_td15 and quote.version == 5
    assert body.mr_td == b"\xaa" * 48
    assert body.rt_mr == (DEFAULT_RTMRS[0], b"\xbb" * 48, DEFAULT_RTMRS[2], b"\xcc" * 48)
    assert body.report_data == bytes.fromhex("c0ffee").ljust(64, b"\0")
    root = SimPlatform(state).root_certificate()
    report = _verify(quote.raw, bundle.read_text(), root, sim_at)
    assert report.status == "SWHardeningNeeded"  # the platform's status, for TDs too


def test_td_quote_options_override_the_platform(tmp_path: Path, sim_at: datetime) -> None:
    assert _run("sim", "init", "--state", str(tmp_path))[0] == 0
    out, bundle = tmp_path / "q.bin", tmp_path / "c.json"
    code, text = _run(
        "sim", "td-quote", "--state", str(tmp_path), "--tcb", "OutOfDate", "--module-svn", "4",
        "--out", str(out), "--collateral-out", str(bundle),
        "--at", sim_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert code == 0, text
    body = parse_quote(out.read_bytes()).body
    assert isinstance(body, TdReportBody) and not body.is_td15
    assert body.mr_td == DEFAULT_MR_TD and body.tee_tcb_svn[0] == 4
    report = _verify(
        out.read_bytes(), bundle.read_text(), SimPlatform(tmp_path).root_certificate(), sim_at
    )
    assert report.status == "OutOfDate"


def test_a_td_launched_under_an_older_module(tmp_path: Path, sim_at: datetime) -> None:
    assert _run("sim", "init", "--state", str(tmp_path))[0] == 0
    out, bundle = tmp_path / "q.bin", tmp_path / "c.json"
    code, text = _run(
        "sim", "td-quote", "--state", str(tmp_path), "--td15", "--launch-module-svn", "4",
        "--out", str(out), "--collateral-out", str(bundle),
        "--at", sim_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert code == 0, text
    root = SimPlatform(tmp_path).root_certificate()
    assert _verify(out.read_bytes(), bundle.read_text(), root, sim_at).status == "TDRelaunchAdvised"
    code, text = _run(
        "sim", "td-quote", "--state", str(tmp_path), "--launch-module-svn", "4", "--out", str(out)
    )  # fmt: skip
    assert code == 2 and "td15" in text


def test_debug_td(tmp_path: Path) -> None:
    assert _run("sim", "init", "--state", str(tmp_path))[0] == 0
    out = tmp_path / "q.bin"
    assert _run("sim", "td-quote", "--state", str(tmp_path), "--debug", "--out", str(out))[0] == 0
    body = parse_quote(out.read_bytes()).body
    assert isinstance(body, TdReportBody) and body.td_debug


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rtmr", "4=" + "00" * 48], "INDEX 0-3"),
        (["--rtmr", "00" * 48], "INDEX=HEX"),
        (["--rtmr", "0=abcd"], "--rtmr 0 is 2 bytes"),
        (["--mr-td", "zz"], "--mr-td"),
        (["--report-data", "00" * 65], "at most 64"),
    ],
)
def test_bad_values_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    assert _run("sim", "init", "--state", str(tmp_path))[0] == 0
    code, out = _run(
        "sim", "td-quote", "--state", str(tmp_path), *args, "--out", str(tmp_path / "q")
    )
    assert code == 2 and message in out, out


def test_td_quote_needs_a_platform(tmp_path: Path) -> None:
    code, out = _run(
        "sim", "td-quote", "--state", str(tmp_path / "none"), "--out", str(tmp_path / "q")
    )
    assert code == 3 and "sim init" in out


# -- the simulated PCCS serves TDX collateral ---------------------------------------------


@pytest.fixture(scope="module")
def tdx_pccs(
    sim_at: datetime, serve_app: Callable[..., AbstractContextManager[str]]
) -> Iterator[tuple[str, SimPlatform]]:
    from confnode.pccs.server import create_app

    platform = SimPlatform(seed="tdx pccs", tcb="ConfigurationNeeded")
    with serve_app(create_app(platform, clock=lambda: sim_at)) as url:
        yield url, platform


def test_pccs_tdx_routes_serve_the_tdx_collateral(
    tdx_pccs: tuple[str, SimPlatform], sim_at: datetime
) -> None:
    url, platform = tdx_pccs
    tdx = SimTdxPlatform(platform)
    expected = tdx.pcs_responses(sim_at)
    r = httpx.get(
        f"{url}/tdx/certification/v4/tcb", params={"fmspc": tdx.fmspc.hex()}, trust_env=False
    )
    assert r.status_code == 200 and r.text == expected.tcb_info
    assert '"id":"TDX"' in r.text and r.headers["TCB-Info-Issuer-Chain"]
    r = httpx.get(f"{url}/tdx/certification/v4/qe/identity", trust_env=False)
    assert r.status_code == 200 and r.text == expected.qe_identity and '"TD_QE"' in r.text
    # The SGX routes still serve SGX collateral, and the TDX FMSPC is not an SGX one.
    r = httpx.get(
        f"{url}/sgx/certification/v4/tcb", params={"fmspc": tdx.fmspc.hex()}, trust_env=False
    )
    assert r.status_code == 404
    r = httpx.get(f"{url}/sgx/certification/v4/qe/identity", trust_env=False)
    assert '"id":"QE"' in r.text


async def test_dcap_qvl_fetches_tdx_collateral_and_verifies_a_td(
    tdx_pccs: tuple[str, SimPlatform], sim_at: datetime
) -> None:
    url, platform = tdx_pccs
    tdx = SimTdxPlatform(platform)
    quote = tdx.quote(tdx.td_report(b"fetched"))
    fetched = await dcap_qvl.get_collateral(url, quote)
    report = dcap_qvl.verify_with_root_ca(
        quote, fetched, tdx.root_certificate(), int(sim_at.timestamp())
    )
    assert report.status == "ConfigurationNeeded"
