"""Every real SGX vector verifies with the result dcap-vectors/README.txt expects, in its window.

The TDX vectors: ``test_verify_tdx.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from confnode.cli._vectors import VectorSet, oasis_collateral, utc
from confnode.collateral import TcbStatus
from confnode.errors import InvalidInput
from confnode.sgx import parse_quote
from confnode.verify import (
    CertificationDataUnsupported,
    CollateralExpired,
    CollateralNotYetValid,
    CrlMissing,
    SigningChainInvalid,
    UntrustedRoot,
    VerifiedQuote,
    verify_quote,
)

SECOND = timedelta(seconds=1)


def test_dcapqvl_sample_at_midpoint(dcapqvl: VectorSet) -> None:
    result = verify_quote(dcapqvl.quote, dcapqvl.collateral(), at=dcapqvl.midpoint)
    assert result.status is TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
    assert result.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert result.qe_status is TcbStatus.UP_TO_DATE
    assert result.fmspc == "00A067110000"
    assert result.pce_id == "0000"
    assert result.sgx_type == 0
    assert result.crl_checked is True
    assert result.collateral_expired is False
    assert result.trusted_root_is_intel is True
    assert result.revocation is None
    assert result.enclave.debug is False
    assert result.enclave.mr_enclave.hex().startswith("33d8736d")
    assert result.enclave.mr_signer.hex().startswith("815f42f1")
    assert result.report_data.rstrip(b"\0") == b"Hello, world!"


def test_oasis_quote_without_crls(oasis: VectorSet) -> None:
    result = verify_quote(
        oasis.quote, oasis.collateral(), at=oasis.midpoint, insecure_skip_crl=True
    )
    assert result.status is TcbStatus.SW_HARDENING_NEEDED
    assert result.advisory_ids == ("INTEL-SA-00615", "INTEL-SA-00657")
    assert result.qe_status is TcbStatus.UP_TO_DATE
    assert result.quote.signature_data.qe_report.isv_svn == 9
    assert result.fmspc == "00606A000000"
    assert result.sgx_type == 1  # Scalable (Ice Lake-SP, Platform CA)
    assert result.crl_checked is False


def test_oasis_own_test_time(oasis: VectorSet) -> None:
    at = utc("2022-12-20T00:50:04Z")  # 1671497404, oasis-core's test time
    result = verify_quote(oasis.quote, oasis.collateral(), at=at, insecure_skip_crl=True)
    assert result.status is TcbStatus.SW_HARDENING_NEEDED


def test_fortanix_tcb_info_v2_debug_enclave(fortanix: VectorSet) -> None:
    result = verify_quote(
        fortanix.quote, fortanix.collateral(), at=fortanix.midpoint, insecure_skip_crl=True
    )
    assert result.status is TcbStatus.SW_HARDENING_NEEDED
    assert result.tcb_date == utc("2019-12-11T00:00:00Z")
    assert result.qe_status is TcbStatus.UP_TO_DATE
    assert result.quote.signature_data.qe_report.isv_svn == 5
    assert result.fmspc == "00906EA10000"
    # Reported, not judged: rejecting debug enclaves is the relying party's policy.
    assert result.enclave.debug is True
    assert result.to_json_dict()["enclave"]["debug"] is True
    # Only the Root CA CRL is missing; the processor CRL was checked.
    assert result.crl_checked is False


def test_missing_crls_fail_unless_skipped(oasis: VectorSet, fortanix: VectorSet) -> None:
    with pytest.raises(CrlMissing, match="Root CA CRL and PCK CRL not supplied"):
        verify_quote(oasis.quote, oasis.collateral(), at=oasis.midpoint)
    with pytest.raises(CrlMissing, match=r"^Root CA CRL not supplied"):
        verify_quote(fortanix.quote, fortanix.collateral(), at=fortanix.midpoint)


@pytest.mark.parametrize("name", ["dcapqvl", "oasis", "fortanix"])
def test_window_edges(name: str, request: pytest.FixtureRequest) -> None:
    vs: VectorSet = request.getfixturevalue(name)
    collateral = vs.collateral()
    start, end = vs.window

    def run(at, **kw) -> VerifiedQuote:  # type: ignore[no-untyped-def]
        return verify_quote(vs.quote, collateral, at=at, insecure_skip_crl=True, **kw)

    assert run(start).collateral_expired is False
    assert run(start + SECOND).collateral_expired is False
    assert run(end - SECOND).collateral_expired is False
    assert run(end - SECOND).earliest_expiration == end
    with pytest.raises(CollateralNotYetValid, match="after the verification time"):
        run(start - SECOND)
    # QvE: expired when the earliest expiration is <= the verification time.
    for at in (end, end + SECOND, end + timedelta(days=400)):
        with pytest.raises(CollateralExpired, match="earliest expiration"):
            run(at)
        result = run(at, allow_expired_collateral=True)
        assert result.collateral_expired is True
        assert result.to_json_dict()["collateral_expired"] is True


def test_wrong_tcb_info_chain_fails(oasis: VectorSet, oasis_dir) -> None:  # type: ignore[no-untyped-def]
    from confnode.collateral import Collateral

    bad = Collateral.from_json(
        oasis_collateral(oasis_dir, "tcb_info_v3_fmspc_00606A000000_certs_bad.pem")
    )
    with pytest.raises((SigningChainInvalid, UntrustedRoot)) as info:
        verify_quote(oasis.quote, bad, at=oasis.midpoint, insecure_skip_crl=True)
    assert info.value.step in {"signing-chain", "root-ca"}


def test_type3_quote_needs_pck_certificate(oasis: VectorSet, oasis_dir) -> None:  # type: ignore[no-untyped-def]
    quote = (oasis_dir / "quote_v3_ecdsa_p256_eppid.bin").read_bytes()
    with pytest.raises(
        CertificationDataUnsupported, match=r"type 3 .*PCESVN 12.*must be supplied.*/pckcert"
    ) as info:
        verify_quote(quote, oasis.collateral(), at=oasis.midpoint, insecure_skip_crl=True)
    assert info.value.step == "certification-data"
    assert info.value.hint is not None


def test_parsed_quote_and_bytes_agree(dcapqvl: VectorSet) -> None:
    collateral = dcapqvl.collateral()
    from_bytes = verify_quote(dcapqvl.quote, collateral, at=dcapqvl.midpoint)
    from_quote = verify_quote(parse_quote(dcapqvl.quote), collateral, at=dcapqvl.midpoint)
    assert from_bytes.to_json_dict() == from_quote.to_json_dict()


def test_json_shape(dcapqvl: VectorSet) -> None:
    doc = verify_quote(dcapqvl.quote, dcapqvl.collateral(), at=dcapqvl.midpoint).to_json_dict()
    assert list(doc) == [
        "status",
        "advisory_ids",
        "tcb_date",
        "fmspc",
        "qe_status",
        "collateral_expired",
        "crl_checked",
        "enclave",
        "report_data",
    ]
    assert list(doc["enclave"]) == [
        "mr_enclave",
        "mr_signer",
        "isv_prod_id",
        "isv_svn",
        "debug",
        "attributes",
    ]
    assert doc["tcb_date"] == "2024-03-13T00:00:00Z"
    assert doc["enclave"]["attributes"] == "0500000000000000e700000000000000"


def test_intel_root_certificate_as_trusted_root(dcapqvl: VectorSet, dcapqvl_root: bytes) -> None:
    result = verify_quote(
        dcapqvl.quote, dcapqvl.collateral(), at=dcapqvl.midpoint, trusted_root=dcapqvl_root
    )
    assert result.trusted_root_is_intel is True


def test_naive_time_rejected(dcapqvl: VectorSet) -> None:
    with pytest.raises(InvalidInput, match="no timezone"):
        verify_quote(dcapqvl.quote, dcapqvl.collateral(), at=dcapqvl.midpoint.replace(tzinfo=None))


def test_collateral_reuse_sees_each_quote(dcapqvl: VectorSet) -> None:
    """The per-bundle cache must not let a bad quote ride on a good one's verification."""
    from confnode.verify import QuoteSignatureInvalid

    collateral = dcapqvl.collateral()
    assert verify_quote(dcapqvl.quote, collateral, at=dcapqvl.midpoint)
    tampered = bytearray(dcapqvl.quote)
    tampered[400] ^= 1  # report_data of the ISV enclave
    with pytest.raises(QuoteSignatureInvalid):
        verify_quote(bytes(tampered), collateral, at=dcapqvl.midpoint)
    # and `at` is re-evaluated on every call
    with pytest.raises(CollateralExpired):
        verify_quote(dcapqvl.quote, collateral, at=dcapqvl.window[1] + SECOND)
