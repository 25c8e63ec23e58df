"""Simulated quotes verify with independent verifiers to the status each platform is set at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import dcap_qvl
import pytest

from confnode.collateral import TcbStatus
from confnode.errors import VerificationError
from confnode.sim import TCB_LEVELS, SimPlatform
from confnode.sim.tcb import SimTcbLevel
from confnode.verify import verify_quote


def _quote(platform: SimPlatform, report_data: bytes = b"nonce") -> bytes:
    enclave = platform.enclave()
    return platform.quote(enclave.report(platform.quoting_enclave.target_info(), report_data))


def _dcap_qvl(platform: SimPlatform, quote: bytes, at: datetime) -> dcap_qvl.VerifiedReport:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json(at))
    return dcap_qvl.verify_with_root_ca(
        quote, collateral, platform.root_certificate(), int(at.timestamp())
    )


# dcap-qvl treats a Revoked TCB level as an error, not a status; those are tested separately.
ACCEPTED = [lvl for lvl in TCB_LEVELS if lvl.status != "Revoked"]


@pytest.mark.parametrize("ca", ["processor", "platform"])
@pytest.mark.parametrize("level", ACCEPTED, ids=[lvl.status for lvl in ACCEPTED])
def test_dcap_qvl_reports_the_configured_status(
    make_platform: Callable[..., SimPlatform], sim_at: datetime, level: SimTcbLevel, ca: str
) -> None:
    platform = make_platform(tcb=level.status, ca=ca)
    report = _dcap_qvl(platform, _quote(platform), sim_at)
    assert report.status == level.status
    assert report.advisory_ids == list(level.advisory_ids)


def test_dcap_qvl_refuses_revoked_tcb_level(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform(tcb="Revoked")
    with pytest.raises(ValueError, match="Revoked"):
        _dcap_qvl(platform, _quote(platform), sim_at)


def test_dcap_qvl_refuses_revoked_pck(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform(revoked_pck=True)
    with pytest.raises(ValueError, match="CertRevoked"):
        _dcap_qvl(platform, _quote(platform), sim_at)


def test_dcap_qvl_finds_no_level_below_the_table(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform(tcb="TcbLevelNotFound")
    with pytest.raises(ValueError, match="No matching TCB level"):
        _dcap_qvl(platform, _quote(platform), sim_at)


def test_dcap_qvl_sees_an_out_of_date_qe(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform(qe_svn=6)
    assert _dcap_qvl(platform, _quote(platform), sim_at).status == "OutOfDate"


def test_dcap_qvl_rejects_the_simulated_root_when_intel_is_expected(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform()
    collateral = dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json(sim_at))
    with pytest.raises(ValueError):
        dcap_qvl.verify(_quote(platform), collateral, int(sim_at.timestamp()))


def test_dcap_qvl_sees_the_report_data(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform()
    quote = _quote(platform, b"bound public key hash")
    claims = _dcap_qvl(platform, quote, sim_at)
    assert claims.status == "UpToDate"
    assert dcap_qvl.parse_quote(quote).report.report_data == b"bound public key hash".ljust(
        64, b"\0"
    )


@pytest.mark.parametrize("status", [lvl.status for lvl in TCB_LEVELS])
def test_confnode_verifier_reports_the_configured_status(
    make_platform: Callable[..., SimPlatform], sim_at: datetime, status: str
) -> None:
    platform = make_platform(tcb=TcbStatus(status))  # the enum works as well as its name
    verified = verify_quote(
        _quote(platform),
        platform.collateral(sim_at),
        at=sim_at,
        trusted_root=platform.root_certificate(),
        allow_revoked=True,
    )
    assert verified.status == TcbStatus(status)
    assert not verified.trusted_root_is_intel


def test_confnode_verifier_reports_revoked_pck_as_revoked(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform(revoked_pck=True, ca="platform")
    verified = verify_quote(
        _quote(platform),
        platform.collateral(sim_at),
        at=sim_at,
        trusted_root=platform.root_certificate(),
        allow_revoked=True,
    )
    assert verified.status == TcbStatus.REVOKED


def test_confnode_verifier_refuses_simulated_quotes_without_the_simulated_root(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform()
    with pytest.raises(VerificationError):
        verify_quote(_quote(platform), platform.collateral(sim_at), at=sim_at)


def test_dcap_qvl_refuses_a_debug_enclave(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform()
    enclave = platform.enclave(debug=True)
    quote = platform.quote(enclave.report(platform.quoting_enclave.target_info(), b"dbg"))
    with pytest.raises(ValueError, match=r"(?i)debug"):
        _dcap_qvl(platform, quote, sim_at)
    verified = verify_quote(
        quote, platform.collateral(sim_at), at=sim_at, trusted_root=platform.root_certificate()
    )
    assert verified.enclave.debug  # Intel's QVL leaves the DEBUG policy to the relying party
