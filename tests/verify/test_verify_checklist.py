"""Each checklist step fails with its own error, and the verdict logic follows Intel QVL.

Scenarios are minted by :mod:`verify_testpki` (a test root pinned through ``trusted_root``), so a
single field can be wrong while every signature is still valid.
"""

from __future__ import annotations

import dataclasses
import gc
import pickle
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from verify_testpki import (
    CA_SERIAL,
    LEAF_SERIAL,
    LOW_SVNS,
    NOW,
    ONE_SECOND,
    PCK_PCESVN,
    PCK_SVNS,
    TCB_SERIAL,
    Scenario,
    crl,
    key,
    qe_level,
    tcb_level,
)

from confnode.cli._vectors import VectorSet
from confnode.collateral import Collateral, TcbStatus
from confnode.errors import VerificationError
from confnode.sgx import CertificationData, parse_quote
from confnode.verify import (
    CollateralExpired,
    CollateralMismatch,
    CollateralSignatureInvalid,
    CollateralVersionUnsupported,
    CrlInvalid,
    PckChainInvalid,
    PckExtensionInvalid,
    QeIdentityMismatch,
    QeReportDataMismatch,
    QeReportSignatureInvalid,
    QeTcbLevelNotFound,
    QuoteFormatUnsupported,
    QuoteRevoked,
    QuoteSignatureInvalid,
    SigningChainInvalid,
    TcbLevelNotFound,
    UntrustedRoot,
    VerifiedQuote,
    verify_quote,
)
from confnode.verify import _collateral as collateral_module
from confnode.verify import _errors as errors_module


def run(pki: Scenario, **kw: object) -> VerifiedQuote:
    quote, collateral, root = pki.build()
    return verify_quote(quote, collateral, at=NOW, trusted_root=root, **kw)  # type: ignore[arg-type]


def test_baseline_scenario_verifies() -> None:
    result = run(Scenario())
    assert result.status is TcbStatus.UP_TO_DATE
    assert result.qe_status is TcbStatus.UP_TO_DATE
    assert result.crl_checked is True
    assert result.trusted_root_is_intel is False
    assert result.revocation is None


# ------------------------------------------------------------------ one error per step


def test_step1_vendor_id(dcapqvl: VectorSet) -> None:
    quote = bytearray(dcapqvl.quote)
    quote[12] ^= 0xFF
    with pytest.raises(
        QuoteFormatUnsupported, match=r"QE vendor id 6c9a7233.*expected Intel's 939a7233"
    ):
        verify_quote(bytes(quote), dcapqvl.collateral(), at=dcapqvl.midpoint)


def test_step5_root_must_be_pinned_key() -> None:
    quote, collateral, _ = Scenario().build()
    with pytest.raises(UntrustedRoot, match="is not the pinned Intel SGX Root CA key") as info:
        verify_quote(quote, collateral, at=NOW)
    assert info.value.step == "root-ca"


@pytest.mark.parametrize(
    ("chain", "leaf_cn", "message"),
    [
        ("leaf,root", "Test SGX PCK Certificate", "2 certificates; expected exactly 3"),
        ("leaf,ca,root,root", "Test SGX PCK Certificate", "4 certificates; expected exactly 3"),
        ("leaf,ca,root", "Test SGX Leaf", "leaf CN is 'Test SGX Leaf'; expected a CN containing"),
        ("ca,leaf,root", "Test SGX PCK Certificate", "intermediate CN is 'Test SGX PCK Cert"),
    ],
)
def test_step4_6_pck_chain_shape(chain: str, leaf_cn: str, message: str) -> None:
    with pytest.raises(PckChainInvalid, match=message) as info:
        run(Scenario(chain=chain, leaf_cn=leaf_cn))
    assert info.value.step == "pck-chain"


def test_step4_pck_chain_der_garbage(dcapqvl: VectorSet) -> None:
    quote = bytearray(dcapqvl.quote)
    start = quote.index(b"-----BEGIN CERTIFICATE-----") + 300
    quote[start] = ord("A") if quote[start] != ord("A") else ord("B")
    with pytest.raises(PckChainInvalid, match="does not decode as PEM certificates"):
        verify_quote(bytes(quote), dcapqvl.collateral(), at=dcapqvl.midpoint)


def test_step6_undecodable_leaf_subject_is_named(dcapqvl: VectorSet) -> None:
    parsed = parse_quote(dcapqvl.quote)
    pem = parsed.signature_data.certification.pck_chain_pem
    assert pem is not None
    certs = x509.load_pem_x509_certificates(pem)
    der = bytearray(certs[0].public_bytes(Encoding.DER))
    der[der.index(b"Intel SGX PCK Certificate")] = 0xFF  # invalid UTF-8 in the CN
    blocks = [x509.load_der_x509_certificate(bytes(der)), *certs[1:]]
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in blocks)
    signature_data = dataclasses.replace(
        parsed.signature_data, certification=CertificationData(5, chain)
    )
    quote = dataclasses.replace(parsed, signature_data=signature_data)
    with pytest.raises(PckChainInvalid, match="leaf subject does not decode"):
        verify_quote(quote, dcapqvl.collateral(), at=dcapqvl.midpoint)


def test_step6_leaf_signature() -> None:
    with pytest.raises(PckChainInvalid, match="leaf certificate signature does not verify"):
        run(Scenario(leaf_signer=77))


def test_step8_pck_extension_missing() -> None:
    with pytest.raises(PckExtensionInvalid, match="no SGX extension"):
        run(Scenario(leaf_extension=False))


def test_step9_pck_crl_from_the_other_ca() -> None:
    with pytest.raises(CrlInvalid, match=r"PCK CRL issuer .*Platform CA.*Processor-CA CRL"):
        run(Scenario(platform_crl=True))


def test_step9_root_crl_signature() -> None:
    quote, collateral, root = Scenario().build()
    forged = crl("Test SGX Root CA", key(99))
    bad = dataclasses.replace(collateral, root_ca_crl=forged)
    with pytest.raises(CrlInvalid, match="Root CA CRL: signature does not verify"):
        verify_quote(quote, bad, at=NOW, trusted_root=root)


def test_step9_root_crl_issuer_must_be_the_root() -> None:
    """Signed by the root key is not enough: the issuer must name the root (QVL UNKNOWN_ISSUER)."""
    quote, collateral, root = Scenario().build()
    renamed = crl("Test SGX Other Root CA", key(11))
    bad = dataclasses.replace(collateral, root_ca_crl=renamed)
    with pytest.raises(CrlInvalid, match=r"Root CA CRL issuer .*Other Root CA.*; expected the"):
        verify_quote(quote, bad, at=NOW, trusted_root=root)


def test_step12_pck_crl_issuer_chain_required() -> None:
    quote, collateral, root = Scenario().build()
    bad = dataclasses.replace(collateral, pck_crl_issuer_chain=())
    with pytest.raises(
        CrlInvalid, match="PCK CRL issuer chain: 0 certificates; expected exactly 2"
    ):
        verify_quote(quote, bad, at=NOW, trusted_root=root)


def test_step13_signing_chain() -> None:
    quote, collateral, root = Scenario().build()
    bad = dataclasses.replace(
        collateral, tcb_info_issuer_chain=collateral.tcb_info_issuer_chain[1:]
    )
    with pytest.raises(SigningChainInvalid, match="TCB Info issuer chain: 1 certificates"):
        verify_quote(quote, bad, at=NOW, trusted_root=root)
    wrong_leaf = dataclasses.replace(
        collateral, qe_identity_issuer_chain=collateral.pck_crl_issuer_chain
    )
    with pytest.raises(SigningChainInvalid, match="leaf CN is 'Test SGX PCK Processor CA'"):
        verify_quote(quote, wrong_leaf, at=NOW, trusted_root=root)


def test_step14_collateral_signature() -> None:
    with pytest.raises(CollateralSignatureInvalid, match="TCB Info signature does not verify"):
        run(Scenario(tamper_tcb_signature=True))


def test_step15_tcb_type_must_be_zero() -> None:
    with pytest.raises(CollateralVersionUnsupported, match="TCB Info tcbType 1; expected 0"):
        run(Scenario(tcb_type=1))


def test_step15_qe_identity_id() -> None:
    with pytest.raises(CollateralVersionUnsupported, match="QE Identity id 'QVE'"):
        run(Scenario(qe_id="QVE"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tcb_fmspc": bytes.fromhex("00906EA10000")}, "TCB Info is for FMSPC 00906EA10000"),
        (
            {"tcb_pce_id": b"\x00\x01"},
            "PCE-ID 0000; TCB Info is for FMSPC 00A067110000 PCE-ID 0001",
        ),
    ],
)
def test_step17_fmspc_pceid(change: dict[str, object], message: str) -> None:
    with pytest.raises(CollateralMismatch, match=message):
        run(Scenario(**change))  # type: ignore[arg-type]


def test_step18_qe_report_signature() -> None:
    with pytest.raises(QeReportSignatureInvalid, match="PCK certificate key"):
        run(Scenario(tamper_qe_signature=True))


def test_step18_memo_does_not_leak_between_signatures() -> None:
    run(Scenario())  # caches the good QE report signature
    with pytest.raises(QeReportSignatureInvalid):
        run(Scenario(tamper_qe_signature=True))


def test_step19_report_data_zero_tail() -> None:
    with pytest.raises(QeReportDataMismatch, match="followed by 32 zero bytes"):
        run(Scenario(report_data_tail=b"\x01" + bytes(31)))


def test_step19_any_auth_data_length_accepted() -> None:
    assert run(Scenario(auth_data=bytes(16))).status is TcbStatus.UP_TO_DATE
    assert run(Scenario(auth_data=b"")).status is TcbStatus.UP_TO_DATE


def test_step20_miscselect_is_little_endian() -> None:
    ok = Scenario(qe_misc_select=1, miscselect="01000000")
    assert run(ok).qe_status is TcbStatus.UP_TO_DATE
    with pytest.raises(QeIdentityMismatch, match=r"miscselect 0x00000001 .*expected 0x01000000"):
        run(ok.replace(miscselect="00000001"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qe_flags": 0x17}, "QE attributes 1700.* are 1300.*; expected 1100"),
        ({"qe_flags": 0x15 | 0x04}, None),  # MODE64BIT is masked out: still fine
        ({"qe_mrsigner": bytes(32)}, "QE MRSIGNER 8c4f.*; expected 0000"),
        ({"qe_isvprodid": 2}, "QE ISVPRODID 1; expected 2"),
    ],
)
def test_step20_qe_identity(change: dict[str, object], message: str | None) -> None:
    pki = Scenario(**change)  # type: ignore[arg-type]
    if message is None:
        assert run(pki).qe_status is TcbStatus.UP_TO_DATE
        return
    with pytest.raises(QeIdentityMismatch, match=message):
        run(pki)


def test_step20_qe_tcb_level_not_found() -> None:
    with pytest.raises(QeTcbLevelNotFound, match=r"QE ISVSVN 5 is below .*at least 6"):
        run(Scenario(qe_isv_svn=5))


def test_step20_qe_tcb_level_is_judged_after_the_signatures_and_platform_level() -> None:
    """QVL defers "QE ISVSVN not supported" to checkTcbLevel, after the quote signature and
    after the platform level is selected."""
    with pytest.raises(QuoteSignatureInvalid):
        run(Scenario(qe_isv_svn=5, tamper_quote_signature=True))
    with pytest.raises(TcbLevelNotFound) as info:
        run(Scenario(qe_isv_svn=5, pck_svns=(0,) * 16))
    assert info.value.step == "tcb-level"


def test_step21_quote_signature() -> None:
    with pytest.raises(QuoteSignatureInvalid, match="attestation key"):
        run(Scenario(tamper_quote_signature=True))


def test_step22_no_matching_tcb_level() -> None:
    with pytest.raises(TcbLevelNotFound, match=r"below every TCB level.*0xE066") as info:
        run(Scenario(pck_svns=(0,) * 16))
    assert info.value.step == "tcb-level"


def test_step22_pcesvn_is_compared() -> None:
    result = run(Scenario(pck_pcesvn=PCK_PCESVN - 1))
    assert result.platform_status is TcbStatus.OUT_OF_DATE
    assert result.advisory_ids == ("INTEL-SA-00001",)


def test_step22_levels_sorted_not_json_order() -> None:
    ascending = (
        tcb_level(LOW_SVNS, 5, "OutOfDate", "2018-01-04"),
        tcb_level(PCK_SVNS, PCK_PCESVN, "SWHardeningNeeded", "2024-03-13", ("INTEL-SA-00615",)),
    )
    result = run(Scenario(levels=ascending))
    assert result.status is TcbStatus.SW_HARDENING_NEEDED
    assert result.tcb_date.year == 2024


def test_every_error_names_its_step() -> None:
    def walk(cls: type[VerificationError]) -> list[type[VerificationError]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *walk(sub))]

    ours = [c for c in walk(VerificationError) if c.__module__ == "confnode.verify._errors"]
    assert {c.__name__ for c in ours} == set(errors_module.__all__)
    assert len({c.step for c in ours}) == len(ours)
    assert issubclass(QeTcbLevelNotFound, TcbLevelNotFound)


# ------------------------------------------------------------------ verdicts


QE_OUT_OF_DATE = {"qe_isv_svn": 6}
QE_REVOKED = {"qe_levels": (qe_level(8, "UpToDate"), qe_level(6, "Revoked"))}


@pytest.mark.parametrize(
    ("platform", "qe", "expected"),
    [
        ("UpToDate", {}, "UpToDate"),
        ("UpToDate", QE_OUT_OF_DATE, "OutOfDate"),
        ("SWHardeningNeeded", QE_OUT_OF_DATE, "OutOfDate"),
        ("ConfigurationNeeded", QE_OUT_OF_DATE, "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", QE_OUT_OF_DATE, "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", {}, "ConfigurationAndSWHardeningNeeded"),
        ("OutOfDate", QE_OUT_OF_DATE, "OutOfDate"),
        ("OutOfDateConfigurationNeeded", QE_OUT_OF_DATE, "OutOfDateConfigurationNeeded"),
        ("UpToDate", {**QE_OUT_OF_DATE, **QE_REVOKED}, "Revoked"),
        ("Revoked", {}, "Revoked"),
    ],
)
def test_step23_convergence_table(platform: str, qe: dict[str, object], expected: str) -> None:
    levels = (tcb_level(PCK_SVNS, PCK_PCESVN, platform, advisories=("INTEL-SA-00289",)),)
    result = run(Scenario(levels=levels, **qe), allow_revoked=True)  # type: ignore[arg-type]
    assert result.status.value == expected
    assert result.platform_status.value == platform


def test_step23_advisories_are_the_platform_levels_only() -> None:
    """QvE reports the platform TCB level's advisory IDs, never the QE level's."""
    levels = (tcb_level(PCK_SVNS, PCK_PCESVN, "SWHardeningNeeded", advisories=("A-1", "A-2")),)
    qe_levels = (qe_level(8, "UpToDate"), qe_level(6, "OutOfDate", ("A-2", "Q-1")))
    result = run(Scenario(levels=levels, qe_levels=qe_levels, qe_isv_svn=6))
    assert result.advisory_ids == ("A-1", "A-2")
    assert result.qe_status is TcbStatus.OUT_OF_DATE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"pck_revoked": (LEAF_SERIAL,)}, "PCK certificate .* PCK CRL"),
        ({"root_revoked": (CA_SERIAL,)}, "intermediate CA .* Root CA CRL"),
        ({"root_revoked": (TCB_SERIAL,)}, "signing certificate .* Root CA CRL"),
    ],
)
def test_step10_revocation_is_a_verdict_on_request(change: dict[str, object], reason: str) -> None:
    with pytest.raises(QuoteRevoked, match=reason) as raised:
        run(Scenario(**change))  # type: ignore[arg-type]
    assert raised.value.step == "revoked"
    assert raised.value.result.status is TcbStatus.REVOKED
    copied = pickle.loads(pickle.dumps(raised.value))  # e.g. across a process pool
    assert (copied.message, copied.result) == (raised.value.message, raised.value.result)
    result = run(Scenario(**change), allow_revoked=True)  # type: ignore[arg-type]
    assert result.status is TcbStatus.REVOKED
    assert result.revoked
    assert result.revocation is not None
    import re

    assert re.search(reason, result.revocation)
    assert result.to_json_dict()["status"] == "Revoked"


@pytest.mark.parametrize(
    "item",
    [
        "root",
        "ca",
        "leaf",
        "tcb",
        "qe_tcb",
        "crl_ca",
        "tcb_info",
        "qe_identity",
        "root_ca_crl",
        "pck_crl",
    ],
)
def test_step24_every_item_counts_towards_expiry(item: str) -> None:
    """QvE's earliest expiration covers every certificate of every chain, both CRLs and both
    signed documents; each item alone, expiring first, decides it."""
    soon = NOW + timedelta(days=2)
    quote, collateral, root = Scenario(expires=((item, soon),)).build()
    result = verify_quote(quote, collateral, at=NOW, trusted_root=root)
    assert result.earliest_expiration == soon
    assert result.collateral_expired is False
    assert not verify_quote(quote, collateral, at=soon - ONE_SECOND, trusted_root=root).revoked
    for at in (soon, soon + ONE_SECOND):
        with pytest.raises(CollateralExpired, match="earliest expiration 2025-01-17T00:00:00Z"):
            verify_quote(quote, collateral, at=at, trusted_root=root)
        late = run_with(quote, collateral, root, at=at, allow_expired_collateral=True)
        assert late.collateral_expired is True


@pytest.mark.parametrize("item", ["root_ca_crl", "pck_crl"])
@pytest.mark.parametrize(
    ("omit", "found"),
    [
        ("next_update", "no nextUpdate; expected one"),
        ("crl_number", "no CRL Number extension"),
        ("aki", "no Authority Key Identifier extension"),
    ],
)
def test_step9_crls_follow_intels_profile(item: str, omit: str, found: str) -> None:
    """QVL's CrlStore requires nextUpdate (else the CRL never expires), CRL Number and AKI."""
    label = {"root_ca_crl": "Root CA CRL", "pck_crl": "PCK CRL"}[item]
    with pytest.raises(CrlInvalid, match=f"{label}: {found}"):
        run(Scenario(crl_omits=((item, omit),)))
    # The hand-assembled CRL with every member is accepted: only the omission fails.
    assert run(Scenario(crl_omits=((item, ""),))).status is TcbStatus.UP_TO_DATE


def test_skip_crl_skips_only_missing_crls() -> None:
    """``insecure_skip_crl`` tolerates an absent CRL; a supplied one is still fully checked."""
    quote, collateral, root = Scenario(root_revoked=(CA_SERIAL,)).build()
    no_pck_crl = dataclasses.replace(collateral, pck_crl=None)
    result = run_with(quote, no_pck_crl, root, insecure_skip_crl=True, allow_revoked=True)
    assert (result.status, result.crl_checked) == (TcbStatus.REVOKED, False)
    quote, collateral, root = Scenario(pck_revoked=(LEAF_SERIAL,)).build()
    no_root_crl = dataclasses.replace(collateral, root_ca_crl=None)
    result = run_with(quote, no_root_crl, root, insecure_skip_crl=True, allow_revoked=True)
    assert (result.status, result.crl_checked) == (TcbStatus.REVOKED, False)
    forged = dataclasses.replace(no_root_crl, pck_crl=crl("Test SGX PCK Processor CA", key(98)))
    with pytest.raises(CrlInvalid, match="PCK CRL: signature does not verify"):
        run_with(quote, forged, root, insecure_skip_crl=True)


def run_with(
    quote: bytes, collateral: Collateral, root: bytes, *, at: datetime = NOW, **kw: object
) -> VerifiedQuote:
    return verify_quote(quote, collateral, at=at, trusted_root=root, **kw)  # type: ignore[arg-type]


def test_debug_enclave_is_reported_not_rejected() -> None:
    result = run(Scenario(debug=True))
    assert result.enclave.debug is True
    assert result.status is TcbStatus.UP_TO_DATE


# ------------------------------------------------------------------ reuse


def test_collateral_prepared_once_per_object(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = collateral_module._prepare

    def counting(collateral: Collateral, root_key: bytes):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(collateral, root_key)

    monkeypatch.setattr(collateral_module, "_prepare", counting)
    quote, collateral, root = Scenario().build()
    for _ in range(3):
        verify_quote(quote, collateral, at=NOW, trusted_root=root)
    assert len(calls) == 1
    copy = Collateral.from_json(collateral.to_json())
    verify_quote(quote, copy, at=NOW, trusted_root=root)
    assert len(calls) == 2
    # A different root key is a different preparation (and here: a failure).
    with pytest.raises(UntrustedRoot):
        verify_quote(quote, collateral, at=NOW)
    # Entries die with their bundle.
    ident = id(copy)
    assert ident in collateral_module._PREPARED
    del copy
    gc.collect()
    assert ident not in collateral_module._PREPARED
