"""Fixed-size SGX structures: layouts, round trips, constants, malformed sizes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.errors import InvalidQuote
from confnode.sgx import (
    DEFAULT_ECDSA_P256_ATT_KEY_ID,
    INTEL_QE3_MRSIGNER,
    AttKeyId,
    Attributes,
    EnclaveReportBody,
    QeReportInfo,
    Report,
    TargetInfo,
)

STRUCTS = (
    (EnclaveReportBody, 384),
    (Report, 432),
    (TargetInfo, 512),
    (QeReportInfo, 960),
    (AttKeyId, 256),
    (Attributes, 16),
)


@pytest.mark.parametrize(("cls", "size"), STRUCTS, ids=lambda x: getattr(x, "__name__", str(x)))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_parse_to_bytes_round_trips_any_bytes(cls: type, size: int, data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=size, max_size=size))
    assert cls.parse(raw).to_bytes() == raw  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cls", "size"), STRUCTS, ids=lambda x: getattr(x, "__name__", str(x)))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_wrong_size_is_invalid_quote(cls: type, size: int, data: st.DataObject) -> None:
    raw = data.draw(st.binary(max_size=size + 8).filter(lambda b: len(b) != size))
    with pytest.raises(InvalidQuote, match=f"expected exactly {size}"):
        cls.parse(raw)  # type: ignore[attr-defined]


def test_defaults_serialise_to_zeros() -> None:
    for cls, size in STRUCTS:
        if cls is AttKeyId:
            continue
        assert cls().to_bytes() == bytes(size)


def test_report_body_layout() -> None:
    body = EnclaveReportBody(
        cpu_svn=bytes(range(16)),
        misc_select=0x11223344,
        isv_ext_prod_id=b"\xe1" * 16,
        attributes=Attributes(flags=0x07, xfrm=0xE7),
        mr_enclave=b"\xaa" * 32,
        mr_signer=b"\xbb" * 32,
        config_id=b"\xcc" * 64,
        isv_prod_id=0x0102,
        isv_svn=0x0304,
        config_svn=0x0506,
        isv_family_id=b"\xf1" * 16,
        report_data=b"\xdd" * 64,
    )
    raw = body.to_bytes()
    assert len(raw) == 384
    assert raw[0:16] == bytes(range(16))
    assert raw[16:20] == bytes.fromhex("44332211")
    assert raw[32:48] == b"\xe1" * 16
    assert raw[48:56] == (7).to_bytes(8, "little") and raw[56:64] == (0xE7).to_bytes(8, "little")
    assert raw[64:96] == b"\xaa" * 32 and raw[128:160] == b"\xbb" * 32
    assert raw[192:256] == b"\xcc" * 64
    assert raw[256:262] == bytes.fromhex("020104030605")
    assert raw[304:320] == b"\xf1" * 16 and raw[320:384] == b"\xdd" * 64
    assert raw[20:32] + raw[96:128] + raw[160:192] + raw[262:304] == bytes(12 + 32 + 32 + 42)
    assert EnclaveReportBody.parse(raw) == body


def test_reserved_bytes_are_kept() -> None:
    raw = bytearray(384)
    raw[100] = 0x5A  # reserved2
    raw[300] = 0xA5  # reserved4
    body = EnclaveReportBody.parse(bytes(raw))
    assert body.reserved2[4] == 0x5A and body.reserved4[38] == 0xA5
    assert body.to_bytes() == bytes(raw)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (0x01, {"init"}),
        (0x02, {"debug"}),
        (0x04, {"mode64bit"}),
        (0x10, {"provision_key"}),
        (0x20, {"einittoken_key"}),
        (0x80, {"kss"}),
        (0x400, {"aex_notify"}),
        (0x08 | 0x40, set()),
    ],
)
def test_attribute_bits(flags: int, expected: set[str]) -> None:
    names = ("init", "debug", "mode64bit", "provision_key", "einittoken_key", "kss", "aex_notify")
    attrs = Attributes(flags=flags)
    assert {n for n in names if getattr(attrs, n)} == expected
    assert len(attrs.flag_names()) == len(expected)


def test_report_layout_and_mac_input() -> None:
    body = EnclaveReportBody(report_data=b"\x01" * 64)
    report = Report(body=body, key_id=b"\x02" * 32, mac=b"\x03" * 16)
    raw = report.to_bytes()
    assert raw[320:384] == b"\x01" * 64
    assert raw[384:416] == b"\x02" * 32 and raw[416:432] == b"\x03" * 16
    assert report.mac_input == raw[:384]
    assert Report.parse(raw) == report


def test_target_info_layout() -> None:
    ti = TargetInfo(
        mr_enclave=b"\x01" * 32,
        attributes=Attributes(0x05, 0x03),
        config_svn=0x0A0B,
        misc_select=0x01020304,
        config_id=b"\x09" * 64,
    )
    raw = ti.to_bytes()
    assert raw[0:32] == b"\x01" * 32
    assert raw[32:48] == Attributes(0x05, 0x03).to_bytes()
    assert raw[50:52] == bytes.fromhex("0b0a") and raw[52:56] == bytes.fromhex("04030201")
    assert raw[64:128] == b"\x09" * 64 and raw[128:] == bytes(384)


def test_qe_report_info_layout() -> None:
    info = QeReportInfo(
        nonce=b"\x07" * 16,
        app_enclave_target_info=TargetInfo(mr_enclave=b"\x08" * 32),
        qe_report=Report(mac=b"\x09" * 16),
    )
    raw = info.to_bytes()
    assert raw[:16] == b"\x07" * 16
    assert raw[16:48] == b"\x08" * 32
    assert raw[944:960] == b"\x09" * 16
    assert QeReportInfo.parse(raw) == info


def test_default_ecdsa_att_key_id() -> None:
    """node-and-aesm.md §1.9, byte for byte."""
    raw = DEFAULT_ECDSA_P256_ATT_KEY_ID
    assert len(raw) == 256
    assert raw[0:6] == bytes.fromhex("000000002000")
    assert raw[6:38] == INTEL_QE3_MRSIGNER and raw[38:54] == bytes(16)
    assert raw[54:58] == bytes.fromhex("01000000")
    assert raw[58:154] == bytes(96)
    assert raw[154:158] == bytes.fromhex("02000000")
    assert raw[158:] == bytes(98)
    key_id = AttKeyId.parse(raw)
    assert (key_id.mrsigner_length, key_id.prod_id, key_id.algorithm_id) == (32, 1, 2)
    assert key_id.base == raw[:158]


def test_constructor_rejects_bad_fields() -> None:
    with pytest.raises(InvalidQuote) as info:
        EnclaveReportBody(mr_enclave=b"\x00" * 31)
    assert info.value.field == "report_body.mr_enclave"
    with pytest.raises(InvalidQuote):
        Attributes(flags=1 << 64)
    with pytest.raises(InvalidQuote):
        Attributes(flags=True)
    with pytest.raises(InvalidQuote):
        TargetInfo(misc_select=-1)
    with pytest.raises(InvalidQuote):
        Report(body=b"\x00" * 384)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuote):
        AttKeyId(mrsigner=INTEL_QE3_MRSIGNER)  # 32 bytes; the field is 48


def test_nested_parse_errors_name_the_field() -> None:
    with pytest.raises(InvalidQuote) as info:
        QeReportInfo.parse(bytes(959))
    assert info.value.field == "qe_report_info"
    with pytest.raises(InvalidQuote) as info:
        EnclaveReportBody.parse(bytes(10), field="signature_data.qe_report", offset=564)
    assert (info.value.field, info.value.offset) == ("signature_data.qe_report", 564)
