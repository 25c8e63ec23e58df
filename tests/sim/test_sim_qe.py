"""The simulated QE and enclaves follow SGX rules: MACed REPORTs, QE report binding, seal keys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.collateral import signature_to_der
from confnode.errors import InvalidInput
from confnode.sgx import INTEL_QE_VENDOR_ID, QeReportInfo, Report, TargetInfo, parse_quote
from confnode.sim import (
    AESM_INVALID_REPORT,
    AESM_PARAMETER_ERROR,
    SIM_QE_MRSIGNER,
    InvalidReportError,
    QuoteParameterError,
    QuotingError,
    SimPlatform,
)
from confnode.sim.tcb import QE_ATTRIBUTES, QE_ATTRIBUTES_MASK, platform_tcb


def _verify(key: object, signature: bytes, data: bytes) -> None:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature_to_der(signature), data, ec.ECDSA(hashes.SHA256()))


def test_quote_is_intel_shaped_and_bound(make_platform: Callable[..., SimPlatform]) -> None:
    platform = make_platform(tcb="SWHardeningNeeded")
    qe = platform.quoting_enclave
    enclave = platform.enclave(b"\x11" * 32, b"\x22" * 32, isv_prod_id=7, isv_svn=3)
    raw = platform.quote(enclave.report(qe.target_info(), b"data"))
    quote = parse_quote(raw)
    assert quote.to_bytes() == raw and len(raw) == qe.quote_size()
    header, body, sig = quote.header, quote.body, quote.signature_data
    assert (header.version, header.att_key_type, header.tee_type) == (3, 2, 0)
    assert header.vendor_id == INTEL_QE_VENDOR_ID
    assert header.qe_svn == qe.identity.isv_svn
    assert header.pce_svn == platform_tcb("SWHardeningNeeded")[1]
    assert header.user_data[:16] == platform.qe_id
    assert body.mr_enclave == b"\x11" * 32 and body.mr_signer == b"\x22" * 32
    assert (body.isv_prod_id, body.isv_svn) == (7, 3)
    assert body.report_data == b"data".ljust(64, b"\0")
    assert not body.attributes.debug
    # Attestation key signs header ‖ body; PCK key signs the QE report.
    attest = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + sig.attest_pub_key
    )
    _verify(attest, sig.signature, quote.signed_region)
    _verify(
        platform.pck_certificate.public_key(), sig.qe_report_signature, sig.qe_report.to_bytes()
    )
    binding = hashlib.sha256(sig.attest_pub_key + sig.qe_auth_data).digest()
    assert sig.qe_report.report_data == binding + bytes(32)
    assert qe.pub_key_id == binding
    assert sig.qe_auth_data == bytes(range(32))
    # The QE identity matches the QE Identity JSON (attributes under Intel's mask).
    assert sig.qe_report.mr_signer == SIM_QE_MRSIGNER
    masked = bytes(
        a & m
        for a, m in zip(
            sig.qe_report.attributes.to_bytes(), bytes.fromhex(QE_ATTRIBUTES_MASK), strict=True
        )
    )
    assert masked == bytes.fromhex(QE_ATTRIBUTES)
    cert = sig.certification
    assert cert.type == 5 and cert.data.endswith(b"-----END CERTIFICATE-----\n\0")
    chain = cert.pck_certificates()
    assert [c.public_bytes(Encoding.DER) for c in chain] == [
        c.public_bytes(Encoding.DER)
        for c in x509.load_pem_x509_certificates(platform.pck_chain_pem.encode())
    ]


def test_debug_enclave_quote_carries_debug(make_platform: Callable[..., SimPlatform]) -> None:
    platform = make_platform()
    enclave = platform.enclave(debug=True)
    assert enclave.identity.debug
    quote = parse_quote(platform.quote(enclave.report(platform.quoting_enclave.target_info())))
    assert quote.body.attributes.debug


def test_report_with_bad_mac_gets_no_quote(make_platform: Callable[..., SimPlatform]) -> None:
    platform = make_platform()
    qe = platform.quoting_enclave
    report = bytearray(platform.enclave().report(qe.target_info(), b"x"))
    report[320] ^= 1  # tamper with report_data after the MAC was computed
    with pytest.raises(InvalidReportError) as info:
        qe.quote(bytes(report))
    assert info.value.aesm_code == AESM_INVALID_REPORT == 47
    assert isinstance(info.value, QuotingError) and isinstance(info.value, InvalidInput)


def test_report_for_another_target_or_platform_is_refused(
    make_platform: Callable[..., SimPlatform],
) -> None:
    platform = make_platform()
    other = make_platform(seed="a different machine")
    app = platform.enclave()
    # Made for the app enclave itself, not for the QE.
    with pytest.raises(InvalidReportError):
        platform.quote(app.report(app.target_info(), b"x"))
    # Made for the QE's target info but on another platform (different CPU secret).
    foreign = other.enclave().report(other.quoting_enclave.target_info(), b"x")
    with pytest.raises(InvalidReportError):
        platform.quote(foreign)
    forged = Report(body=Report.parse(foreign).body).to_bytes()  # zero key id and MAC
    with pytest.raises(InvalidReportError):
        platform.quote(forged)


@pytest.mark.parametrize("size", [0, 431, 433])
def test_wrong_sizes_are_parameter_errors(
    make_platform: Callable[..., SimPlatform], size: int
) -> None:
    qe = make_platform().quoting_enclave
    with pytest.raises(QuoteParameterError) as info:
        qe.quote(bytes(size))
    assert info.value.aesm_code == AESM_PARAMETER_ERROR
    report = make_platform().enclave().report(qe.target_info())
    with pytest.raises(QuoteParameterError):
        qe.quote(report, bytes(size))


def test_qe_report_info_lets_the_app_enclave_trust_the_quote(
    make_platform: Callable[..., SimPlatform],
) -> None:
    platform = make_platform()
    qe = platform.quoting_enclave
    app = platform.enclave()
    nonce = bytes(range(16))
    request = QeReportInfo(nonce=nonce, app_enclave_target_info=TargetInfo.parse(app.target_info()))
    quote, filled = qe.quote(app.report(qe.target_info(), b"x"), request.to_bytes())
    assert filled is not None and len(filled) == 960
    info = QeReportInfo.parse(filled)
    assert info.nonce == nonce and info.app_enclave_target_info == request.app_enclave_target_info
    qe_report = app.verify_report(info.qe_report.to_bytes())  # MAC verifies for the app enclave
    assert qe_report.body.report_data == hashlib.sha256(nonce + quote).digest() + bytes(32)
    assert qe_report.body.mr_signer == SIM_QE_MRSIGNER
    # Another enclave cannot verify a QE report targeted at the app enclave.
    with pytest.raises(InvalidInput):
        platform.enclave(b"\x33" * 32).verify_report(info.qe_report.to_bytes())
    assert qe.quote(app.report(qe.target_info(), b"x"))[1] is None


def test_target_info_and_report_layout(make_platform: Callable[..., SimPlatform]) -> None:
    platform = make_platform()
    enclave = platform.enclave(config_id=b"\x05" * 64, config_svn=9, misc_select=1)
    target = TargetInfo.parse(enclave.target_info())
    assert target.mr_enclave == enclave.identity.mr_enclave
    assert (target.config_id, target.config_svn, target.misc_select) == (b"\x05" * 64, 9, 1)
    report = Report.parse(enclave.report(platform.quoting_enclave.target_info(), b"r"))
    assert report.body.config_svn == 9 and report.body.cpu_svn == platform.pck_extension.tcb.cpusvn
    with pytest.raises(InvalidInput):
        enclave.report(platform.quoting_enclave.target_info(), bytes(65))


def test_seal_keys_follow_policy_and_svn_rules(make_platform: Callable[..., SimPlatform]) -> None:
    platform = make_platform()
    signer = b"\x44" * 32
    v1 = platform.enclave(b"\x01" * 32, signer, isv_svn=1)
    v2 = platform.enclave(b"\x02" * 32, signer, isv_svn=2)
    other_signer = platform.enclave(b"\x01" * 32, b"\x55" * 32, isv_svn=1)
    assert len(v1.seal_key("mrsigner")) == 16
    assert v1.seal_key("mrenclave") != v2.seal_key("mrenclave", isv_svn=1)
    assert v1.seal_key("mrsigner") == v2.seal_key("mrsigner", isv_svn=1)  # upgrade can unseal
    assert v1.seal_key("mrsigner") != other_signer.seal_key("mrsigner")
    assert v1.seal_key("mrsigner") != make_platform(seed="elsewhere").enclave(
        b"\x01" * 32, signer, isv_svn=1
    ).seal_key("mrsigner")
    with pytest.raises(InvalidInput, match="above"):
        v1.seal_key("mrsigner", isv_svn=2)  # cannot derive a future version's key
    with pytest.raises(InvalidInput):
        v1.seal_key("mrsigner", cpu_svn=b"\xff" * 16)
    with pytest.raises(InvalidInput):
        v1.seal_key("nonsense")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    report_data=st.binary(max_size=64),
    isv_svn=st.integers(0, 0xFFFF),
    debug=st.booleans(),
    flip=st.integers(0, 431),
)
def test_reports_round_trip_and_any_bit_flip_is_refused(
    make_platform: Callable[..., SimPlatform],
    report_data: bytes,
    isv_svn: int,
    debug: bool,
    flip: int,
) -> None:
    platform = make_platform()
    qe = platform.quoting_enclave
    enclave = platform.enclave(isv_svn=isv_svn, debug=debug)
    report = enclave.report(qe.target_info(), report_data)
    quote = parse_quote(qe.quote(report)[0])
    assert quote.body.to_bytes() == report[:384]
    assert quote.body.isv_svn == isv_svn and quote.body.attributes.debug == debug
    tampered = bytearray(report)
    tampered[flip] ^= 0x80
    with pytest.raises(InvalidReportError):
        qe.quote(bytes(tampered))
