"""TDX quotes (v4 TD 1.0, v5 TD 1.5): real vectors and the TDX steps of the checklist.

The real quotes verify to the results dcap-vectors/README.txt and oasis-core's own tests
document; minted scenarios (``verify_testpki.TDX``) drive every TDX step: TCB Info / QE
Identity for the wrong TEE, the TDX module identity (T1), the TDX TCB level (T2), the module's
TCB level (T3) and the status merge with ``TDRelaunchAdvised`` (T4), as Intel's QVL does.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from verify_testpki import (
    LOW_SVNS,
    NOW,
    PCK_PCESVN,
    PCK_SVNS,
    TDX,
    TDX_LOW,
    TDX_MODULE,
    TDX_RELAUNCH,
    TDX_UP,
    TEE_TCB_SVN,
    Scenario,
    module_identity,
    qe_level,
    tcb_level,
)

from confnode.cli._vectors import oasis_collateral, oasis_dir, utc
from confnode.collateral import Collateral, TcbStatus
from confnode.sgx import TdReportBody, parse_quote
from confnode.verify import (
    CollateralMismatch,
    QeIdentityMismatch,
    QuoteRevoked,
    TcbLevelNotFound,
    TdxModuleMismatch,
    TdxModuleTcbLevelNotFound,
    TdxTcbLevelNotFound,
    VerifiedQuote,
    VerifiedTdQuote,
    verify_quote,
)

PHALA = "Phala-Network_dcap-qvl/sample"


def tdx_run(scenario: Scenario, **kw: object) -> VerifiedTdQuote:
    quote, collateral, root = scenario.build()
    result = verify_quote(quote, collateral, at=NOW, trusted_root=root, **kw)  # type: ignore[arg-type]
    assert isinstance(result, VerifiedTdQuote)
    return result


def svn(module_svn: int, version: int, microcode: int) -> bytes:
    return bytes([module_svn, version, microcode]) + bytes(13)


# ------------------------------------------------------------------ real vectors


def _phala(vectors: Path, name: str) -> tuple[bytes, Collateral]:
    base = vectors / PHALA
    return (base / name).read_bytes(), Collateral.from_json(
        (base / f"{name}_collateral.json").read_text()
    )


def _oasis(vectors: Path, quote: str, tcb_info: str, qe_identity: str) -> tuple[bytes, Collateral]:
    base = oasis_dir(vectors)
    bundle = oasis_collateral(base, tcb_info=tcb_info, qe_identity=qe_identity)
    return (base / quote).read_bytes(), Collateral.from_json(bundle)


def test_phala_tdx_quote_is_up_to_date(vectors: Path) -> None:
    quote, collateral = _phala(vectors, "tdx_quote")
    result = verify_quote(quote, collateral, at=utc("2025-07-04T00:00:00Z"))
    assert isinstance(result, VerifiedTdQuote)
    assert result.status is TcbStatus.UP_TO_DATE
    assert result.advisory_ids == ()
    assert (result.platform_status, result.tdx_status, result.qe_status) == (
        TcbStatus.UP_TO_DATE,
        TcbStatus.UP_TO_DATE,
        TcbStatus.UP_TO_DATE,
    )
    assert result.fmspc == "B0C06F000000"
    assert result.crl_checked and result.trusted_root_is_intel
    assert not result.collateral_expired and not result.relaunch_advised
    assert result.tdx_module.identity_id == "TDX_01"
    assert (result.tdx_module.version, result.tdx_module.status) == (1, TcbStatus.UP_TO_DATE)
    body = parse_quote(quote).body
    assert isinstance(body, TdReportBody)
    td = result.td
    assert (td.mr_td, td.report_data, td.mr_seam) == (body.mr_td, body.report_data, body.mr_seam)
    assert (td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3) == body.rt_mr
    assert td.tee_tcb_svn == body.tee_tcb_svn and td.tee_tcb_svn[1] == result.tdx_module.version
    assert td.mr_servicetd is None and td.tee_tcb_svn2 is None
    assert result.report_data == body.report_data
    assert result.quote.trailing == bytes(70)


def test_phala_tdx_quote_matches_dcap_qvl_report(vectors: Path) -> None:
    dcap_qvl = pytest.importorskip("dcap_qvl")
    quote, collateral = _phala(vectors, "tdx_quote")
    at = utc("2025-07-04T00:00:00Z")
    ours = verify_quote(quote, collateral, at=at)
    assert isinstance(ours, VerifiedTdQuote)
    report = dcap_qvl.verify(
        quote, dcap_qvl.QuoteCollateralV3.from_json(collateral.to_json()), int(at.timestamp())
    )
    assert (ours.status.value, list(ours.advisory_ids)) == (report.status, report.advisory_ids)
    theirs = json.loads(report.to_json())["report"]["TD10"]
    ours_td = ours.td.to_json_dict()
    assert ours_td.pop("debug") is False
    assert {key: theirs[key.replace("rtmr", "rt_mr")] for key in ours_td} == ours_td
    assert theirs["report_data"] == ours.td.report_data.hex()


def test_phala_tdx_quote_outdated_has_no_matching_level(vectors: Path) -> None:
    """README: no TCB level matches the PCK TCB: Intel TCB_NOT_SUPPORTED (dcap-qvl: error)."""
    quote, collateral = _phala(vectors, "tdx_quote_outdated")
    parsed = parse_quote(quote)
    assert parsed.version == 5 and isinstance(parsed.body, TdReportBody) and parsed.body.is_td15
    with pytest.raises(TcbLevelNotFound, match="below every TCB level of FMSPC 90C06F000000"):
        verify_quote(quote, collateral, at=utc("2026-03-01T00:00:00Z"))


@pytest.mark.parametrize(
    ("quote", "at"),
    [
        ("quote_v4_tdx_ecdsa_p256.bin", "2024-09-02T07:43:52Z"),  # oasis-core's test time
        ("quote_v4_tdx_ecdsa_p256_trailing.bin", "2024-09-25T00:00:00Z"),
    ],
)
def test_oasis_tdx_quotes_verify(vectors: Path, quote: str, at: str) -> None:
    raw, collateral = _oasis(
        vectors, quote, "tcb_info_v3_tdx_fmspc_C0806F000000.json", "qe_identity_v2_tdx2.json"
    )
    result = verify_quote(raw, collateral, at=utc(at), insecure_skip_crl=True)
    assert isinstance(result, VerifiedTdQuote)
    assert result.status is TcbStatus.UP_TO_DATE
    assert result.fmspc == "C0806F000000"
    assert result.tdx_module.identity_id == "TDX_01"
    assert result.td.mr_signer_seam == bytes(48)
    assert result.crl_checked is False


def test_oasis_out_of_date_tdx_quote(vectors: Path) -> None:
    """oasis-core expects TCBOutOfDate: the PCK TCB is below every level (Intel: not supported)."""
    raw, collateral = _oasis(
        vectors,
        "quote_v4_tdx_ecdsa_p256_out_of_date.bin",
        "tcb_info_v3_tdx_fmspc_50806F000000.json",
        "qe_identity_v2_tdx.json",
    )
    with pytest.raises(TcbLevelNotFound, match="50806F000000"):
        verify_quote(raw, collateral, at=utc("2023-06-18T12:36:16Z"), insecure_skip_crl=True)


def test_collateral_for_the_other_tee_is_refused(vectors: Path) -> None:
    tdx_quote, tdx_collateral = _phala(vectors, "tdx_quote")
    sgx_quote, sgx_collateral = _phala(vectors, "sgx_quote")
    at = utc("2025-07-04T00:00:00Z")
    sgx_info = dataclasses.replace(tdx_collateral, tcb_info=sgx_collateral.tcb_info)
    with pytest.raises(CollateralMismatch, match=r"TCB Info id 'SGX' .* for an TDX quote"):
        verify_quote(tdx_quote, sgx_info, at=at)
    tdx_info = dataclasses.replace(sgx_collateral, tcb_info=tdx_collateral.tcb_info)
    with pytest.raises(CollateralMismatch, match=r"TCB Info id 'TDX' .* for an SGX quote"):
        verify_quote(sgx_quote, tdx_info, at=at)
    assert isinstance(verify_quote(sgx_quote, sgx_collateral, at=at), VerifiedQuote)


# ------------------------------------------------------------------ minted: steps 17, 20, T1


def test_baseline_td_quote() -> None:
    result = tdx_run(TDX)
    assert result.status is TcbStatus.UP_TO_DATE
    assert result.td.mr_td == bytes([0x4D]) * 48
    assert result.td.rtmr2 == bytes([2]) * 48
    assert result.td.debug is False
    assert result.tdx_module.identity_id == "TDX_01"
    assert result.to_json_dict()["td"]["mr_td"] == "4d" * 48


def test_step17_tcb_info_must_be_tdx() -> None:
    sgx_levels = (tcb_level(PCK_SVNS, PCK_PCESVN, "UpToDate"),)
    scenario = TDX.replace(
        tcb_id="SGX", levels=sgx_levels, tdx_module=None, tdx_module_identities=None
    )
    with pytest.raises(CollateralMismatch, match="TCB Info id 'SGX'") as info:
        tdx_run(scenario)
    assert info.value.step == "tcb-info-mismatch"


@pytest.mark.parametrize(
    ("scenario", "found"),
    [
        (TDX.replace(qe_id="QE"), "QE Identity id 'QE' for an TDX quote; expected 'TD_QE'"),
        (Scenario(qe_id="TD_QE"), "QE Identity id 'TD_QE' for an SGX quote; expected 'QE'"),
    ],
)
def test_step20_qe_identity_must_be_for_the_tee(scenario: Scenario, found: str) -> None:
    quote, collateral, root = scenario.build()
    with pytest.raises(QeIdentityMismatch, match=found):
        verify_quote(quote, collateral, at=NOW, trusted_root=root)


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"mr_signer_seam": b"\x01" * 48}, "MRSIGNERSEAM 0101.*\\(TDX_01\\)"),
        ({"seam_attributes": b"\x00" * 7 + b"\x01"}, "SEAMATTRIBUTES 0000000000000001"),
        ({"tee_tcb_svn": svn(5, 2, 7)}, "no module identity 'TDX_02' \\(found TDX_03, TDX_01\\)"),
        (
            {"tee_tcb_svn": svn(5, 0, 7), "tdx_module": {**TDX_MODULE, "mrsigner": "11" * 48}},
            "MRSIGNERSEAM 0000.*expected 1111.*\\(tdxModule\\)",
        ),
    ],
)
def test_stepT1_tdx_module_identity(change: dict[str, object], found: str) -> None:
    with pytest.raises(TdxModuleMismatch, match=found) as info:
        tdx_run(TDX.replace(**change))
    assert info.value.step == "tdx-module"


def test_stepT1_seam_attributes_unmasked_as_qvl() -> None:
    """QVL requires SEAMATTRIBUTES zero and equal to the expected value, ignoring the mask."""
    identities = (
        module_identity("TDX_01", qe_level(4, "UpToDate")) | {"attributes": "0000000000000001"},
    )
    with pytest.raises(TdxModuleMismatch, match="SEAMATTRIBUTES 0000000000000000"):
        tdx_run(TDX.replace(tdx_module_identities=identities))


def test_stepT1_version_0_uses_tdx_module_not_identities() -> None:
    other = (module_identity("TDX_01", qe_level(4, "UpToDate"), mrsigner="22" * 48),)
    result = tdx_run(TDX.replace(tee_tcb_svn=svn(5, 0, 7), tdx_module_identities=other))
    assert result.tdx_module.identity_id is None
    assert result.tdx_module.status is None
    assert result.status is TcbStatus.UP_TO_DATE


# ------------------------------------------------------------------ minted: T2, T3


def test_stepT2_tdx_components_select_the_level() -> None:
    result = tdx_run(TDX.replace(tee_tcb_svn=svn(5, 1, 6)))  # microcode 6 < 7: second level
    assert result.platform_status is TcbStatus.UP_TO_DATE  # the SGX level
    assert result.tdx_status is TcbStatus.OUT_OF_DATE
    assert result.status is TcbStatus.OUT_OF_DATE
    assert result.advisory_ids == ("INTEL-SA-00837",)
    assert result.tcb_date.year == 2023


def test_stepT2_no_tdx_level() -> None:
    with pytest.raises(TdxTcbLevelNotFound, match="TEE TCB SVN 050104") as info:
        tdx_run(TDX.replace(tee_tcb_svn=svn(5, 1, 4)))
    assert info.value.step == "tdx-tcb-level"
    assert isinstance(info.value, TcbLevelNotFound)


def test_stepT2_module_components_skipped_only_for_versions_above_0() -> None:
    """Components 0-1 are the module's SVN and version: matched by the module identity when
    the version is > 0 (QVL ``isTdxTcbHigherOrEqual``), by the TCB level otherwise."""
    low_module = tdx_run(
        TDX.replace(
            tee_tcb_svn=svn(4, 1, 7),
            tdx_module_identities=(module_identity("TDX_01", qe_level(4, "UpToDate")),),
        )
    )
    assert low_module.tdx_status is TcbStatus.UP_TO_DATE  # component 0 (4 < 5) not compared
    version_0 = tdx_run(TDX.replace(tee_tcb_svn=svn(4, 0, 7)))
    assert version_0.tdx_status is TcbStatus.OUT_OF_DATE  # component 0 compared: 4 < 5


def test_stepT2_levels_tie_break_on_tdx_components() -> None:
    """QVL orders TDX levels with equal SGX SVNs and PCESVN by their TDX components."""
    levels = (
        tcb_level(PCK_SVNS, PCK_PCESVN, "OutOfDate", "2023-08-09", tdx=TDX_LOW),
        tcb_level(PCK_SVNS, PCK_PCESVN, "UpToDate", "2024-03-13", tdx=TDX_UP),
    )
    assert tdx_run(TDX.replace(levels=levels)).status is TcbStatus.UP_TO_DATE


def test_stepT3_module_below_every_level() -> None:
    with pytest.raises(TdxModuleTcbLevelNotFound, match=r"ISVSVN 1 .* at least 2") as info:
        tdx_run(TDX.replace(tee_tcb_svn=svn(1, 1, 7)))
    assert info.value.step == "tdx-module-tcb-level"


# ------------------------------------------------------------------ minted: T4, 23, 25

MODULE_OUT_OF_DATE = svn(3, 1, 7)  # TDX_01 level isvsvn 2: OutOfDate, INTEL-SA-01036


@pytest.mark.parametrize(
    ("tdx_level", "expected"),
    [
        ("UpToDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "OutOfDate"),
    ],
)
def test_stepT4_module_out_of_date_converges(tdx_level: str, expected: str) -> None:
    levels = (tcb_level(PCK_SVNS, PCK_PCESVN, tdx_level, tdx=TDX_UP, advisories=("P-1",)),)
    result = tdx_run(TDX.replace(levels=levels, tee_tcb_svn=MODULE_OUT_OF_DATE))
    assert result.status.value == expected
    assert result.tdx_module.status is TcbStatus.OUT_OF_DATE
    assert result.advisory_ids == ("P-1", "INTEL-SA-01036")


def test_stepT4_module_revoked() -> None:
    identities = (module_identity("TDX_01", qe_level(4, "UpToDate"), qe_level(2, "Revoked")),)
    scenario = TDX.replace(tdx_module_identities=identities, tee_tcb_svn=MODULE_OUT_OF_DATE)
    with pytest.raises(QuoteRevoked, match="TCB level is Revoked") as info:
        tdx_run(scenario)
    assert isinstance(info.value.result, VerifiedTdQuote)
    assert tdx_run(scenario, allow_revoked=True).status is TcbStatus.REVOKED


RELAUNCH = TDX_RELAUNCH


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (RELAUNCH, "TDRelaunchAdvised"),
        (
            RELAUNCH.replace(
                levels=(
                    tcb_level(PCK_SVNS, PCK_PCESVN, "ConfigurationNeeded", tdx=TDX_UP),
                    tcb_level(LOW_SVNS, 5, "OutOfDate", tdx=TDX_LOW),
                )
            ),
            "TDRelaunchAdvisedConfigurationNeeded",
        ),
        # The module running now (tee_tcb_svn2) is not the newest one: no advice.
        (RELAUNCH.replace(tee_tcb_svn2=svn(3, 1, 7)), "OutOfDate"),
        (RELAUNCH.replace(tee_tcb_svn2=svn(5, 1, 6)), "OutOfDate"),
        # QE out of date: QVL gives no relaunch advice.
        (RELAUNCH.replace(qe_isv_svn=6), "OutOfDate"),
        # TD 1.0 has no tee_tcb_svn2: never advised.
        (RELAUNCH.replace(td15=False), "OutOfDate"),
        # Module up to date at launch: nothing to relaunch for.
        (RELAUNCH.replace(tee_tcb_svn=TEE_TCB_SVN), "UpToDate"),
    ],
)
def test_stepT4_relaunch_advised(scenario: Scenario, expected: str) -> None:
    result = tdx_run(scenario)
    assert result.status.value == expected
    assert result.relaunch_advised is expected.startswith("TDRelaunch")


def test_stepT4_relaunch_with_version_0_uses_the_newest_tcb_level() -> None:
    """tee_tcb_svn2[1] == 0: the newest TCB level's module component decides (QVL)."""
    td15 = RELAUNCH.replace(tee_tcb_svn2=svn(5, 0, 7))
    assert tdx_run(td15).status is TcbStatus.TD_RELAUNCH_ADVISED
    assert tdx_run(td15.replace(tee_tcb_svn2=svn(4, 0, 7))).status is TcbStatus.OUT_OF_DATE


def test_step23_qe_advisories_are_not_reported_for_tdx() -> None:
    qe_levels = (qe_level(8, "UpToDate"), qe_level(6, "OutOfDate", ("Q-1",)))
    result = tdx_run(TDX.replace(qe_levels=qe_levels, qe_isv_svn=6))
    assert result.status is TcbStatus.OUT_OF_DATE
    assert result.advisory_ids == ()


def test_td15_fields_are_reported() -> None:
    result = tdx_run(RELAUNCH.replace(mr_servicetd=b"\x5d" * 48))
    assert result.td.mr_servicetd == b"\x5d" * 48
    assert result.td.tee_tcb_svn2 == TEE_TCB_SVN
    assert result.to_json_dict()["td"]["mr_servicetd"] == "5d" * 48


def test_debug_td_is_reported_not_rejected() -> None:
    result = tdx_run(TDX.replace(td_attributes=bytes.fromhex("0100001000000000")))
    assert result.td.debug is True
    assert result.status is TcbStatus.UP_TO_DATE
