"""Simulated TD quotes and TDX collateral verify with dcap-qvl to each configured status."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import dcap_qvl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confnode.collateral import Collateral
from confnode.errors import InvalidInput
from confnode.sgx import TEE_TYPE_TDX, parse_pck_extension, parse_quote
from confnode.sim import SimPlatform
from confnode.sim.tdx import (
    DEFAULT_TDX_FMSPC,
    TDX_MODULE_LEVELS,
    TDX_TCB_LEVELS,
    SimModuleLevel,
    SimTdxPlatform,
    SimTdxTcbLevel,
)
from confnode.verify import QuoteRevoked, TcbLevelNotFound, VerifiedTdQuote, verify_quote


@pytest.fixture(scope="module")
def make_tdx(make_platform: Callable[..., SimPlatform]) -> Callable[..., SimTdxPlatform]:
    cache: dict[tuple[object, ...], SimTdxPlatform] = {}

    def make(tcb: str = "UpToDate", **kwargs: object) -> SimTdxPlatform:
        key = (tcb, *sorted(kwargs.items()))
        if key not in cache:
            cache[key] = SimTdxPlatform(make_platform(tcb=tcb), **kwargs)  # type: ignore[arg-type]
        return cache[key]

    return make


def _dcap_qvl(tdx: SimTdxPlatform, quote: bytes, at: datetime) -> dcap_qvl.VerifiedReport:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(tdx.collateral_json(at))
    return dcap_qvl.verify_with_root_ca(
        quote, collateral, tdx.root_certificate(), int(at.timestamp())
    )


# dcap-qvl treats a Revoked TCB level as an error, not a status; that is tested separately.
ACCEPTED = [lvl for lvl in TDX_TCB_LEVELS if lvl.status != "Revoked"]


@pytest.mark.parametrize("td15", [False, True], ids=["v4-td10", "v5-td15"])
@pytest.mark.parametrize("level", ACCEPTED, ids=[lvl.status for lvl in ACCEPTED])
def test_dcap_qvl_reports_the_configured_status(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime, level: SimTdxTcbLevel, td15: bool
) -> None:
    tdx = make_tdx(level.status)
    quote = tdx.quote(tdx.td_report(b"nonce", td15=td15))
    report = _dcap_qvl(tdx, quote, sim_at)
    assert report.status == level.status
    assert report.advisory_ids == list(level.advisory_ids)
    assert parse_quote(quote).version == (5 if td15 else 4)


def test_tdx_components_take_part_in_matching(make_tdx: Callable[..., SimTdxPlatform]) -> None:
    # UpToDate and OutOfDate share the SGX TCB and differ only by TEE_TCB_SVN[2] (late microcode),
    # so dcap-qvl telling them apart (above) means it compared TDX components.
    up, old = make_tdx("UpToDate"), make_tdx("OutOfDate")
    assert (
        parse_pck_extension(up.pck_certificate).tcb == parse_pck_extension(old.pck_certificate).tcb
    )
    assert up.tee_tcb_svn[:2] == old.tee_tcb_svn[:2]
    assert up.tee_tcb_svn[2] > old.tee_tcb_svn[2]


def test_dcap_qvl_refuses_a_revoked_tcb_level(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx("Revoked")
    with pytest.raises(ValueError, match="Revoked"):
        _dcap_qvl(tdx, tdx.quote(tdx.td_report()), sim_at)


def test_dcap_qvl_finds_no_level_below_the_table(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx("TcbLevelNotFound")
    with pytest.raises(ValueError, match="No matching TCB level"):
        _dcap_qvl(tdx, tdx.quote(tdx.td_report()), sim_at)


def test_dcap_qvl_refuses_a_revoked_pck(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx(revoked_pck=True)
    with pytest.raises(ValueError, match="CertRevoked"):
        _dcap_qvl(tdx, tdx.quote(tdx.td_report()), sim_at)
    # The SGX PCK under the same CA is not revoked with it.
    assert _dcap_qvl(make_tdx(), make_tdx().quote(make_tdx().td_report()), sim_at).status == (
        "UpToDate"
    )


@pytest.mark.parametrize("level", TDX_MODULE_LEVELS[:2], ids=lambda lvl: f"svn{lvl.isvsvn}")
def test_module_svn_selects_a_module_identity_level(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime, level: SimModuleLevel
) -> None:
    tdx = make_tdx(module_svn=level.isvsvn)
    report = _dcap_qvl(tdx, tdx.quote(tdx.td_report()), sim_at)
    assert report.status == level.status
    assert report.advisory_ids == list(level.advisory_ids)


def test_a_revoked_module_is_refused(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx(module_svn=TDX_MODULE_LEVELS[-1].isvsvn)
    with pytest.raises(ValueError, match="Revoked"):
        _dcap_qvl(tdx, tdx.quote(tdx.td_report()), sim_at)


def test_an_old_td_qe_makes_the_quote_out_of_date(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx(qe_svn=3)
    assert _dcap_qvl(tdx, tdx.quote(tdx.td_report()), sim_at).status == "OutOfDate"


def test_dcap_qvl_refuses_a_debug_td(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx()
    quote = tdx.quote(tdx.td_report(debug=True))
    assert parse_quote(quote).body.td_debug  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"(?i)debug"):
        _dcap_qvl(tdx, quote, sim_at)


def test_sgx_collateral_does_not_verify_a_td_quote(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx()
    sgx_bundle = dcap_qvl.QuoteCollateralV3.from_json(tdx.platform.collateral_json(sim_at))
    with pytest.raises(ValueError):
        dcap_qvl.verify_with_root_ca(
            tdx.quote(tdx.td_report()),
            sgx_bundle,
            tdx.root_certificate(),
            int(sim_at.timestamp()),
        )


def test_the_simulated_root_is_not_intel(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx()
    collateral = dcap_qvl.QuoteCollateralV3.from_json(tdx.collateral_json(sim_at))
    with pytest.raises(ValueError):
        dcap_qvl.verify(tdx.quote(tdx.td_report()), collateral, int(sim_at.timestamp()))


_MR48 = st.binary(min_size=48, max_size=48)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    report_data=st.binary(max_size=64),
    mr_td=_MR48,
    rtmrs=st.tuples(_MR48, _MR48, _MR48, _MR48),
    mr_config_id=_MR48,
    td15=st.booleans(),
)
def test_td_fields_reach_dcap_qvl_and_confnodes_parser(
    make_tdx: Callable[..., SimTdxPlatform],
    sim_at: datetime,
    report_data: bytes,
    mr_td: bytes,
    rtmrs: tuple[bytes, bytes, bytes, bytes],
    mr_config_id: bytes,
    td15: bool,
) -> None:
    tdx = make_tdx()
    quote = tdx.quote(
        tdx.td_report(report_data, mr_td=mr_td, rtmrs=rtmrs, mr_config_id=mr_config_id, td15=td15)
    )
    parsed = parse_quote(quote)
    assert parsed.raw == quote and parsed.header.tee_type == TEE_TYPE_TDX
    assert parsed.header.qe_id == tdx.qe_id
    body = parsed.body
    assert body.mr_td == mr_td and body.rt_mr == rtmrs  # type: ignore[union-attr]
    assert body.report_data == report_data.ljust(64, b"\0")
    assert body.tee_tcb_svn == tdx.tee_tcb_svn  # type: ignore[union-attr]
    theirs = dcap_qvl.parse_quote(quote).report
    assert (theirs.mr_td, theirs.report_data, theirs.mr_config_id) == (
        mr_td,
        report_data.ljust(64, b"\0"),
        mr_config_id,
    )
    assert (theirs.rt_mr0, theirs.rt_mr1, theirs.rt_mr2, theirs.rt_mr3) == rtmrs
    assert _dcap_qvl(tdx, quote, sim_at).status == "UpToDate"


def test_collateral_is_tdx_shaped_and_signed_over_its_exact_bytes(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime
) -> None:
    tdx = make_tdx()
    bundle = json.loads(tdx.collateral_json(sim_at))
    info = json.loads(bundle["tcb_info"])
    assert (info["id"], info["version"], info["fmspc"]) == ("TDX", 3, DEFAULT_TDX_FMSPC)
    assert {"tdxModule", "tdxModuleIdentities"} <= set(info)
    assert all(len(lvl["tcb"]["tdxtcbcomponents"]) == 16 for lvl in info["tcbLevels"])
    qe = json.loads(bundle["qe_identity"])
    assert (qe["id"], qe["isvprodid"]) == ("TD_QE", 2)
    parsed = Collateral.from_json(tdx.collateral_json(sim_at))
    assert parsed.tcb_info.body == bundle["tcb_info"].encode()
    # One flipped byte in the signed TCB Info and dcap-qvl refuses it.
    bundle["tcb_info"] = bundle["tcb_info"].replace('"pcesvn":13', '"pcesvn":12', 1)
    with pytest.raises(ValueError, match=r"(?i)signature"):
        dcap_qvl.verify_with_root_ca(
            tdx.quote(tdx.td_report()),
            dcap_qvl.QuoteCollateralV3.from_json(json.dumps(bundle)),
            tdx.root_certificate(),
            int(sim_at.timestamp()),
        )


def test_same_platform_same_bytes(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    a = SimTdxPlatform(make_platform(seed="tdx-determinism"))
    b = SimTdxPlatform(SimPlatform(seed="tdx-determinism"))
    assert a.quote(a.td_report(b"x")) == b.quote(b.td_report(b"x"))
    assert a.collateral_json(sim_at) == b.collateral_json(sim_at)
    other = SimTdxPlatform(make_platform(seed="tdx-other"))
    assert other.pck_chain_pem != a.pck_chain_pem


def test_shares_the_sgx_platforms_root_but_not_its_pck(
    make_tdx: Callable[..., SimTdxPlatform],
) -> None:
    tdx = make_tdx()
    assert tdx.root_certificate() == tdx.platform.root_certificate()
    assert tdx.pck_certificate.serial_number != tdx.platform.pck_certificate.serial_number
    assert tdx.fmspc != tdx.platform.fmspc


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tcb": "Sideways"}, "unknown simulated TDX TCB status"),
        ({"module_svn": 256}, "module_svn"),
        ({"qe_svn": -1}, "qe_svn"),
        ({"fmspc": "abc"}, "fmspc"),
    ],
)
def test_bad_options_are_invalid_input(
    make_platform: Callable[..., SimPlatform], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        SimTdxPlatform(make_platform(), **kwargs)  # type: ignore[arg-type]


def test_a_td15_report_needs_a_v5_quote(make_tdx: Callable[..., SimTdxPlatform]) -> None:
    tdx = make_tdx()
    with pytest.raises(InvalidInput, match="v4"):
        tdx.quote(tdx.td_report(td15=True), version=4)
    assert parse_quote(tdx.quote(tdx.td_report(), version=5)).version == 5
    with pytest.raises(InvalidInput, match="64 bytes"):
        tdx.td_report(bytes(65))
    with pytest.raises(InvalidInput, match="mr_td"):
        tdx.td_report(mr_td=bytes(32))


@pytest.mark.parametrize(
    ("tcb", "expected"),
    [
        ("UpToDate", "TDRelaunchAdvised"),
        ("ConfigurationNeeded", "TDRelaunchAdvisedConfigurationNeeded"),
        ("OutOfDate", "OutOfDate"),  # relaunching would not help: the TDX microcode is old too
    ],
)
def test_a_td_launched_under_an_old_module_is_advised_to_relaunch(
    make_tdx: Callable[..., SimTdxPlatform], sim_at: datetime, tcb: str, expected: str
) -> None:
    tdx = make_tdx(tcb)
    old_module = TDX_MODULE_LEVELS[1]
    body = tdx.td_report(b"td", td15=True, launch_module_svn=old_module.isvsvn)
    assert body.tee_tcb_svn[0] == old_module.isvsvn
    assert body.tee_tcb_svn2 == tdx.tee_tcb_svn
    report = _dcap_qvl(tdx, tdx.quote(body), sim_at)
    assert report.status == expected
    assert set(old_module.advisory_ids) <= set(report.advisory_ids)


def test_relaunch_needs_a_td15_report(make_tdx: Callable[..., SimTdxPlatform]) -> None:
    with pytest.raises(InvalidInput, match="td15"):
        make_tdx().td_report(launch_module_svn=4)


_CASES = [
    (level.status, td15, launch)
    for level in ACCEPTED
    for td15, launch in ((False, None), (True, None), (True, TDX_MODULE_LEVELS[1].isvsvn))
]


@pytest.mark.parametrize(
    ("tcb", "td15", "launch"), _CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in _CASES]
)
def test_confnodes_verifier_agrees_with_dcap_qvl(
    make_tdx: Callable[..., SimTdxPlatform],
    sim_at: datetime,
    tcb: str,
    td15: bool,
    launch: int | None,
) -> None:
    tdx = make_tdx(tcb)
    quote = tdx.quote(tdx.td_report(b"both", td15=td15, launch_module_svn=launch))
    theirs = _dcap_qvl(tdx, quote, sim_at)
    ours = verify_quote(
        quote, tdx.collateral(sim_at), at=sim_at, trusted_root=tdx.root_certificate()
    )
    assert isinstance(ours, VerifiedTdQuote)
    assert ours.status.value == theirs.status
    assert set(ours.advisory_ids) == set(theirs.advisory_ids)
    assert ours.td.mr_td == tdx.td_report().mr_td and not ours.trusted_root_is_intel


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tcb": "Revoked"}, QuoteRevoked),
        ({"tcb": "TcbLevelNotFound"}, TcbLevelNotFound),
        ({"module_svn": TDX_MODULE_LEVELS[-1].isvsvn}, QuoteRevoked),
        ({"revoked_pck": True}, QuoteRevoked),
    ],
)
def test_confnodes_verifier_refuses_what_dcap_qvl_refuses(
    make_tdx: Callable[..., SimTdxPlatform],
    sim_at: datetime,
    kwargs: dict[str, object],
    error: type[Exception],
) -> None:
    tdx = make_tdx(**kwargs)
    quote = tdx.quote(tdx.td_report())
    with pytest.raises(ValueError):
        _dcap_qvl(tdx, quote, sim_at)
    with pytest.raises(error):
        verify_quote(quote, tdx.collateral(sim_at), at=sim_at, trusted_root=tdx.root_certificate())
