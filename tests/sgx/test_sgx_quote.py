"""Quote codec on real quotes: parse, byte-exact round trip, field values, malformed input."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from confnode.errors import InvalidQuote
from confnode.sgx import (
    INTEL_QE3_MRSIGNER,
    INTEL_QE_VENDOR_ID,
    CertificationData,
    EcdsaSigData,
    EcdsaSigDataV4,
    EnclaveReportBody,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    TdReportBody,
    parse_quote,
    quote_signed_region,
)


def test_every_vector_parses_and_round_trips(vector_quote: tuple[Any, bytes]) -> None:
    vector, data = vector_quote
    quote = parse_quote(data)
    assert quote.to_bytes() == data
    assert quote.raw == data
    assert quote.version == vector.version
    assert quote.signature_data.certification.type == vector.cert_type
    assert len(quote.trailing) == vector.trailing
    assert set(quote.trailing) <= {0}
    assert parse_quote(quote.to_bytes()) == quote


def test_every_vector_matches_dcap_qvl(vector_quote: tuple[Any, bytes]) -> None:
    _, data = vector_quote
    ours, theirs = parse_quote(data), dcap_qvl.parse_quote(data)
    h, th = ours.header, theirs.header
    assert (h.version, h.att_key_type, h.tee_type, h.qe_svn, h.pce_svn) == (
        th.version,
        th.attestation_key_type,
        th.tee_type,
        th.qe_svn,
        th.pce_svn,
    )
    assert (h.vendor_id, h.user_data) == (th.qe_vendor_id, th.user_data)
    assert (ours.is_sgx, ours.is_tdx) == (theirs.is_sgx(), theirs.is_tdx())
    report = theirs.report
    if isinstance(ours.body, EnclaveReportBody):
        body = ours.body
        assert body.cpu_svn == report.cpu_svn
        assert body.attributes.to_bytes() == report.attributes
        assert (body.mr_enclave, body.mr_signer) == (report.mr_enclave, report.mr_signer)
        assert body.report_data == report.report_data
    else:
        td = ours.body
        for name in (
            "tee_tcb_svn",
            "mr_seam",
            "seam_attributes",
            "td_attributes",
            "xfam",
            "mr_td",
            "mr_config_id",
            "mr_owner",
            "mr_owner_config",
            "report_data",
        ):
            assert getattr(td, name) == getattr(report, name), name
        assert td.mrsigner_seam == report.mr_signer_seam
        assert td.rt_mr == (report.rt_mr0, report.rt_mr1, report.rt_mr2, report.rt_mr3)
        assert td.is_td15 == hasattr(report, "mr_service_td")
        if td.is_td15:
            assert td.tee_tcb_svn2 == report.tee_tcb_svn2
            assert td.mr_servicetd == report.mr_service_td
    their_pem = theirs.cert_chain_pem_bytes()
    ours_pem = ours.signature_data.certification.pck_chain_pem
    assert ours_pem == (None if their_pem is None else their_pem.rstrip(b"\x00"))


def test_worked_example_fields(sgx_quote_bytes: bytes) -> None:
    """sgx-dcap.md §1.8."""
    quote = parse_quote(sgx_quote_bytes)
    assert len(sgx_quote_bytes) == 4600
    h = quote.header
    assert (h.version, h.att_key_type, h.qe_svn, h.pce_svn) == (3, 2, 10, 15)
    assert h.vendor_id == INTEL_QE_VENDOR_ID
    body = quote.body
    assert isinstance(body, EnclaveReportBody)
    assert body.attributes.flags == 0x05 and body.attributes.xfrm == 0xE7
    assert body.attributes.init and body.attributes.mode64bit and not body.attributes.debug
    assert body.mr_enclave.hex().startswith("33d8736d")
    assert body.mr_signer.hex().startswith("815f42f1")
    assert body.report_data == b"Hello, world!".ljust(64, b"\x00")
    assert int.from_bytes(sgx_quote_bytes[432:436], "little") == 4164
    sig = quote.signature_data
    assert isinstance(sig, EcdsaSigData)
    assert sig.qe_report.mr_signer == INTEL_QE3_MRSIGNER
    assert (sig.qe_report.isv_prod_id, sig.qe_report.isv_svn) == (1, 10)
    assert sig.qe_report.attributes.flags == 0x15 and sig.qe_report.attributes.provision_key
    assert len(sig.qe_auth_data) == 32
    assert sig.certification.type == 5 and len(sig.certification.data) == 3548
    assert sig.certification.data.endswith(b"-\n\x00")
    assert sig.certification.pck_chain_pem is not None
    assert sig.certification.pck_chain_pem.endswith(b"-----END CERTIFICATE-----\n")
    # QE report binding (§1.6) holds on the parsed fields.
    digest = hashlib.sha256(sig.attest_pub_key + sig.qe_auth_data).digest()
    assert sig.qe_report.report_data == digest + bytes(32)
    assert quote.signed_region == sgx_quote_bytes[:432]


def test_pck_chain_decodes_leaf_first(sgx_quote_bytes: bytes) -> None:
    chain = parse_quote(sgx_quote_bytes).signature_data.certification.pck_certificates()
    names = [c.subject.rfc4514_string() for c in chain]
    assert len(chain) == 3
    assert "SGX PCK Certificate" in names[0]
    assert "SGX PCK Processor CA" in names[1]
    assert "SGX Root CA" in names[2]


def test_v5_td15(tdx_v5_bytes: bytes) -> None:
    quote = parse_quote(tdx_v5_bytes)
    assert quote.is_tdx and quote.version == 5
    assert isinstance(quote.body, TdReportBody) and quote.body.is_td15
    assert isinstance(quote.signature_data, EcdsaSigDataV4)
    assert len(quote.signed_region) == 702  # 48 + 6 + 648, §1.5
    assert tdx_v5_bytes[48:54] == (3).to_bytes(2, "little") + (648).to_bytes(4, "little")


def test_encrypted_ppid(vectors: Path) -> None:
    data = (
        vectors / "oasisprotocol_oasis-core/go/common/sgx/pcs/testdata"
        "/quote_v3_ecdsa_p256_eppid.bin"
    ).read_bytes()
    cert = parse_quote(data).signature_data.certification
    eppid = cert.encrypted_ppid
    assert eppid is not None and cert.pck_chain_pem is None
    assert eppid.cpusvn.hex().startswith("05050c0cffff01")
    assert (eppid.pcesvn, eppid.pceid) == (12, b"\x00\x00")
    assert eppid.to_bytes() == cert.data
    with pytest.raises(InvalidQuote, match=r"type 3 .* expected type 5"):
        cert.pck_certificates()


def test_fortanix_quote_is_debug(vectors: Path) -> None:
    data = (vectors / "fortanix_rust-sgx/intel-sgx/pcs/tests/data/quote.bin").read_bytes()
    body = parse_quote(data).body
    assert isinstance(body, EnclaveReportBody)
    assert body.attributes.flags == 0x07 and body.attributes.debug


# ------------------------------------------------------------------------------ malformed input


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def _raises(data: bytes, field: str, offset: int | None, match: str | None = None) -> InvalidQuote:
    with pytest.raises(InvalidQuote, match=match) as info:
        parse_quote(data)
    assert info.value.field == field
    assert info.value.offset == offset
    assert field in str(info.value)
    return info.value


# v3 signature-data offsets (absolute): sig 436, key 500, QE report 564, QE sig 948,
# auth size 1012, auth data 1014 (32 bytes), cert type 1046, cert size 1048, cert data 1052.
def test_wrong_version(sgx_quote_bytes: bytes) -> None:
    _raises(_patch(sgx_quote_bytes, 0, _u16(2)), "header.version", 0, "version 2, expected 3")


def test_wrong_att_key_type(sgx_quote_bytes: bytes) -> None:
    _raises(_patch(sgx_quote_bytes, 2, _u16(3)), "header.att_key_type", 2, "expected 2")


def test_v3_must_be_sgx(sgx_quote_bytes: bytes) -> None:
    _raises(_patch(sgx_quote_bytes, 4, _u32(0x81)), "header.tee_type", 4, "0x81 in a v3")


def test_unknown_tee_type(tdx_v5_bytes: bytes) -> None:
    _raises(_patch(tdx_v5_bytes, 4, _u32(0x7)), "header.tee_type", 4)


@pytest.mark.parametrize(
    ("cut", "field", "offset"),
    [
        (0, "header.version", 0),
        (1, "header.version", 0),
        (30, "header.user_data", 28),
        (48, "body", 48),
        (431, "body", 48),
        (433, "signature_data_len", 432),
    ],
)
def test_truncated_before_signature_data(
    sgx_quote_bytes: bytes, cut: int, field: str, offset: int
) -> None:
    _raises(sgx_quote_bytes[:cut], field, offset, "truncated")


def test_truncated_signature_data(sgx_quote_bytes: bytes) -> None:
    _raises(sgx_quote_bytes[:-1], "signature_data_len", 432, "declares 4164 bytes but only 4163")


def test_signature_data_len_too_long_for_its_parts(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 432, _u32(4165)) + b"\x00"
    _raises(data, "signature_data_len", 432, "1 bytes left over")


def test_signature_data_len_too_short_for_its_parts(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 432, _u32(4163))
    _raises(data, "signature_data.certification.size", 1048, "declares 3548 bytes but only 3547")


def test_qe_auth_data_overlong(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 1012, _u16(0xFFFF))
    _raises(data, "signature_data.qe_auth_data_size", 1012, "declares 65535 bytes")


def test_qe_auth_data_of_other_length_is_accepted(sgx_quote_bytes: bytes) -> None:
    quote = parse_quote(sgx_quote_bytes)
    sig = quote.signature_data
    assert isinstance(sig, EcdsaSigData)
    built = replace(quote, signature_data=replace(sig, qe_auth_data=b"\x01" * 7))
    reparsed = parse_quote(built.raw)
    assert reparsed.signature_data.qe_auth_data == b"\x01" * 7
    assert reparsed.to_bytes() == built.raw


@pytest.mark.parametrize("cert_type", [0, 6, 7, 0xFFFF])
def test_v3_certification_type_out_of_range(sgx_quote_bytes: bytes, cert_type: int) -> None:
    data = _patch(sgx_quote_bytes, 1046, _u16(cert_type))
    _raises(data, "signature_data.certification.type", 1046, f"type {cert_type}")


def test_v3_other_certification_types_kept_raw(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 1046, _u16(4))
    cert = parse_quote(data).signature_data.certification
    assert cert.type == 4 and cert.data == sgx_quote_bytes[1052:]
    assert cert.pck_chain_pem is None and cert.encrypted_ppid is None


def test_type3_wrong_size(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 1046, _u16(3))
    _raises(data, "signature_data.certification.size", 1048, "expected 404")


def test_garbage_pem_is_rejected_at_its_offset(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 1052 + 100, b"\xff")
    _raises(data, "signature_data.certification.data", 1052 + 100, "byte 0xff where PEM")


def test_non_pem_chain_is_rejected(sgx_quote_bytes: bytes) -> None:
    data = _patch(sgx_quote_bytes, 1052, b"hello")
    _raises(data, "signature_data.certification.data", 1052, "byte 0x68")


def test_unterminated_pem_block(sgx_quote_bytes: bytes) -> None:
    quote = parse_quote(sgx_quote_bytes)
    sig = quote.signature_data
    assert isinstance(sig, EcdsaSigData)
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n"
    built = replace(quote, signature_data=replace(sig, certification=CertificationData(5, pem)))
    _raises(built.to_bytes(), "signature_data.certification.data", 1052 + len(pem), "end of")


def test_empty_chain_is_rejected(sgx_quote_bytes: bytes) -> None:
    quote = parse_quote(sgx_quote_bytes)
    sig = quote.signature_data
    assert isinstance(sig, EcdsaSigData)
    built = replace(quote, signature_data=replace(sig, certification=CertificationData(5, b"\0")))
    _raises(built.to_bytes(), "signature_data.certification.data", 1052, "empty")


def test_undecodable_certificate_is_invalid_quote(sgx_quote_bytes: bytes) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    cert = CertificationData(5, pem)
    with pytest.raises(InvalidQuote) as info:
        cert.pck_certificates()
    assert info.value.field == "certification_data.pck_chain[0]"


def test_certificate_with_undecodable_subject_is_invalid_quote(sgx_quote_bytes: bytes) -> None:
    """Names decode lazily in cryptography; a broken one must still be an InvalidQuote."""
    pem = parse_quote(sgx_quote_bytes).signature_data.certification.pck_chain_pem
    assert pem is not None
    der = bytearray(x509.load_pem_x509_certificates(pem)[0].public_bytes(Encoding.DER))
    der[der.index(b"Intel SGX PCK Certificate")] = 0xFF  # invalid UTF-8 in the subject CN
    block = x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM)
    with pytest.raises(InvalidQuote, match="does not decode") as info:
        CertificationData(5, block).pck_certificates()
    assert info.value.field == "certification_data.pck_chain[0]"


def test_v4_outer_type_must_be_6(vectors: Path) -> None:
    data = (vectors / "Phala-Network_dcap-qvl/sample/tdx_quote").read_bytes()
    # v4: body 48..632, sig len 632, sig 636, key 700, outer cert type 764
    _raises(_patch(data, 764, _u16(5)), "signature_data.certification.type", 764, "expected 6")


def test_v4_inner_type_out_of_range(vectors: Path) -> None:
    data = (vectors / "Phala-Network_dcap-qvl/sample/tdx_quote").read_bytes()
    # inner: QE report 770, QE sig 1154, auth size 1218, auth 1220 (32), inner type 1252
    field = "signature_data.qe_report_certification.certification.type"
    _raises(_patch(data, 1252, _u16(6)), field, 1252, "type 6")


def test_v4_outer_size_not_consumed_exactly(vectors: Path) -> None:
    data = (vectors / "Phala-Network_dcap-qvl/sample/tdx_quote").read_bytes()
    outer = int.from_bytes(data[766:770], "little")
    sig_len = int.from_bytes(data[632:636], "little")
    # grow the outer block by one byte (taken from the trailing zeros) without growing its parts
    patched = _patch(_patch(data, 766, _u32(outer + 1)), 632, _u32(sig_len + 1))
    _raises(patched, "signature_data.certification.size", 766, "1 bytes left over")


def test_v5_unknown_body_type(tdx_v5_bytes: bytes) -> None:
    _raises(_patch(tdx_v5_bytes, 48, _u16(4)), "body_type", 48, "body type 4")


def test_v5_body_size_mismatch(tdx_v5_bytes: bytes) -> None:
    _raises(_patch(tdx_v5_bytes, 50, _u32(584)), "body_size", 50, "expected 648")


def test_v5_body_type_must_match_tee(tdx_v5_bytes: bytes) -> None:
    data = _patch(_patch(tdx_v5_bytes, 48, _u16(1)), 50, _u32(384))
    _raises(data, "body_type", 48, "TEE type 0x81")


def test_non_bytes_input() -> None:
    with pytest.raises(InvalidQuote, match="expected bytes"):
        parse_quote("03000200")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- building


def test_build_v3_from_fields(sgx_quote_bytes: bytes) -> None:
    parsed = parse_quote(sgx_quote_bytes)
    sig = parsed.signature_data
    assert isinstance(sig, EcdsaSigData)
    header = QuoteHeader(
        version=3, qe_svn=10, pce_svn=15, vendor_id=INTEL_QE_VENDOR_ID, user_data=bytes(20)
    )
    body = EnclaveReportBody(mr_enclave=b"\x11" * 32, report_data=b"\x22" * 64)
    built = Quote(header, body, sig)
    assert built.raw == built.to_bytes()
    assert built.signed_region == quote_signed_region(header, body)
    assert built.signed_region == header.to_bytes() + body.to_bytes()
    assert parse_quote(built.raw) == built


def test_build_v5_sgx_body(tdx_v5_bytes: bytes) -> None:
    parsed = parse_quote(tdx_v5_bytes)
    header = replace(parsed.header, tee_type=0)
    body = EnclaveReportBody(isv_svn=3)
    built = Quote(header, body, parsed.signature_data)
    assert built.raw[48:54] == _u16(1) + _u32(384)
    assert len(built.signed_region) == 48 + 6 + 384
    assert parse_quote(built.raw) == built


def test_replace_recomputes_raw(sgx_quote_bytes: bytes) -> None:
    parsed = parse_quote(sgx_quote_bytes)
    assert isinstance(parsed.body, EnclaveReportBody)
    changed = replace(parsed, body=replace(parsed.body, isv_svn=7))
    assert changed.raw == changed.to_bytes() != sgx_quote_bytes
    assert changed.signed_region[48 + 258 : 48 + 260] == b"\x07\x00"


def test_build_rejects_inconsistent_parts(sgx_quote_bytes: bytes, tdx_v5_bytes: bytes) -> None:
    v3, v5 = parse_quote(sgx_quote_bytes), parse_quote(tdx_v5_bytes)
    with pytest.raises(InvalidQuote, match="TdReportBody body in an SGX quote"):
        Quote(v3.header, v5.body, v3.signature_data)
    with pytest.raises(InvalidQuote) as info:
        Quote(v3.header, v3.body, v5.signature_data)
    assert info.value.field == "signature_data"
    assert isinstance(v5.body, TdReportBody)
    with pytest.raises(InvalidQuote, match="needs v5"):
        Quote(replace(v5.header, version=4), v5.body, v5.signature_data)
    with pytest.raises(InvalidQuote, match="version 6"):
        quote_signed_region(replace(v3.header, version=6), v3.body)


def test_build_rejects_bad_field_sizes() -> None:
    with pytest.raises(InvalidQuote) as info:
        QuoteHeader(vendor_id=b"short")
    assert info.value.field == "header.vendor_id"
    with pytest.raises(InvalidQuote):
        TdReportBody(tee_tcb_svn2=bytes(16))  # 1.5 needs mr_servicetd too
    with pytest.raises(InvalidQuote):
        CertificationData(-1, b"")
    with pytest.raises(InvalidQuote):
        QeReportCertificationData(
            EnclaveReportBody(), bytes(64), bytes(70000), CertificationData(5, b"")
        )


def test_v4_sig_data_exposes_v3_names(vectors: Path) -> None:
    data = (vectors / "Phala-Network_dcap-qvl/sample/tdx_quote").read_bytes()
    sig = parse_quote(data).signature_data
    assert isinstance(sig, EcdsaSigDataV4)
    assert sig.qe_report is sig.qe_report_certification.qe_report
    assert sig.certification.type == 5
    digest = hashlib.sha256(sig.attest_pub_key + sig.qe_auth_data).digest()
    assert sig.qe_report.report_data[:32] == digest
