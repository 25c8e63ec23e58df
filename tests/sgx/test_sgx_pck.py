"""PCK certificate SGX extension: real certificates, dcap-qvl agreement, encode/parse, bad DER."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.errors import InvalidQuote
from confnode.sgx import (
    PCK_EXTENSION_OID,
    PckExtension,
    PckTcb,
    PlatformConfiguration,
    encode_pck_extension,
    parse_pck_extension,
    parse_pck_extension_der,
    parse_quote,
)


def _leaf(data: bytes) -> tuple[x509.Certificate, bytes]:
    cert = parse_quote(data).signature_data.certification
    pem = cert.pck_chain_pem
    assert pem is not None
    return cert.pck_certificates()[0], pem


def _extension_der(cert: x509.Certificate) -> bytes:
    value = cert.extensions.get_extension_for_oid(PCK_EXTENSION_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def _assert_same_as_dcap_qvl(ours: PckExtension, theirs: dcap_qvl.PckExtension) -> None:
    assert ours.ppid == theirs.ppid
    assert ours.tcb.cpusvn == theirs.cpu_svn
    assert ours.tcb.pcesvn == theirs.pce_svn
    assert ours.pce_id == theirs.pce_id
    assert ours.fmspc == theirs.fmspc
    assert ours.sgx_type == theirs.sgx_type
    assert ours.platform_instance_id == theirs.platform_instance_id
    for i, svn in enumerate(ours.tcb.comp_svns, start=1):
        raw = theirs.get_value(f"{PCK_EXTENSION_OID.dotted_string}.2.{i}")
        assert raw is not None and int.from_bytes(raw, "big") == svn


def test_real_pck_extensions(vector_quote: tuple[Any, bytes]) -> None:
    vector, data = vector_quote
    if parse_quote(data).signature_data.certification.type != 5:
        pytest.skip("no PCK chain in this quote (type 3)")
    leaf, pem = _leaf(data)
    ext = parse_pck_extension(leaf)
    _assert_same_as_dcap_qvl(ext, dcap_qvl.parse_pck_extension_from_pem(pem))
    assert encode_pck_extension(ext) == _extension_der(leaf)
    expected_fmspc = vector.fmspc
    if expected_fmspc is not None:
        assert ext.fmspc.hex().upper() == expected_fmspc
    # Platform-CA certificates carry the PlatformInstanceID and Configuration, Processor-CA not.
    platform_ca = "Platform CA" in leaf.issuer.rfc4514_string()
    assert (ext.platform_instance_id is not None) == platform_ca
    assert (ext.configuration is not None) == platform_ca


def test_worked_example_tcbm(sgx_quote_bytes: bytes) -> None:
    """sgx-dcap.md §2.4: the certificate's TCB differs from the report body's raw cpu_svn."""
    ext = parse_pck_extension(_leaf(sgx_quote_bytes)[0])
    assert ext.tcb.cpusvn.hex() == "0b0b0202ff0100000000000000000000"
    assert ext.tcb.comp_svns == (11, 11, 2, 2, 255, 1) + (0,) * 10
    assert ext.tcb.pcesvn == 13
    assert (ext.pce_id, ext.sgx_type, ext.sgx_type_name) == (b"\0\0", 0, "Standard")


def test_constructor_checks() -> None:
    with pytest.raises(InvalidQuote) as info:
        PlatformConfiguration(smt_enabled=1)  # type: ignore[arg-type]
    assert info.value.field == "pck_extension.configuration.smt_enabled"
    with pytest.raises(InvalidQuote) as info:
        PckTcb(comp_svns=(0,) * 15, pcesvn=0, cpusvn=bytes(16))
    assert info.value.field == "pck_extension.tcb.comp_svns"
    with pytest.raises(InvalidQuote) as info:
        PckTcb(comp_svns=(0,) * 15 + (256,), pcesvn=0, cpusvn=bytes(16))
    assert info.value.field == "pck_extension.tcb.comp16"


def test_certificate_without_extension() -> None:
    cert = _mint(None)
    with pytest.raises(InvalidQuote, match="not a PCK certificate") as info:
        parse_pck_extension(cert)
    assert info.value.field == "pck_extension"


# ------------------------------------------------------------------------------- generated values


@cache
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _mint(der: bytes | None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX PCK Certificate")])
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_key().public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if der is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(PCK_EXTENSION_OID, der), False)
    return builder.sign(_key(), hashes.SHA256())


_flags = st.none() | st.booleans()
extensions = st.builds(
    PckExtension,
    ppid=st.binary(min_size=16, max_size=16),
    tcb=st.builds(
        PckTcb,
        comp_svns=st.tuples(*[st.integers(0, 255)] * 16),
        pcesvn=st.integers(0, 0xFFFF),
        cpusvn=st.binary(min_size=16, max_size=16),
    ),
    pce_id=st.binary(min_size=2, max_size=2),
    fmspc=st.binary(min_size=6, max_size=6),
    sgx_type=st.integers(0, 2),
    platform_instance_id=st.none() | st.binary(min_size=16, max_size=16),
    configuration=st.none() | st.builds(PlatformConfiguration, _flags, _flags, _flags),
)


@settings(max_examples=150, deadline=None)
@given(ext=extensions)
def test_encode_parse_round_trip(ext: PckExtension) -> None:
    der = encode_pck_extension(ext)
    assert parse_pck_extension_der(der) == ext
    assert encode_pck_extension(parse_pck_extension_der(der)) == der


# dcap-qvl 0.7 rejects a PCESVN >= 0x8000 ("PceSvn length mismatch": it expects at most two
# INTEGER content bytes); real PCESVNs are small, so the agreement check stays below that.
@settings(max_examples=25, deadline=None)
@given(ext=extensions.filter(lambda e: e.tcb.pcesvn < 0x8000))
def test_minted_certificates_are_read_by_dcap_qvl(ext: PckExtension) -> None:
    cert = _mint(encode_pck_extension(ext))
    assert parse_pck_extension(cert) == ext
    pem = cert.public_bytes(serialization.Encoding.PEM)
    _assert_same_as_dcap_qvl(ext, dcap_qvl.parse_pck_extension_from_pem(pem))


# ---------------------------------------------------------------------------------- malformed DER


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_invalid_quote(data: bytes) -> None:
    try:
        ext = parse_pck_extension_der(data)
    except InvalidQuote as error:
        assert error.field is not None and error.field.startswith("pck_extension")
    else:
        assert isinstance(ext, PckExtension)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_real_extension_raises_only_invalid_quote(
    data: st.DataObject, sgx_quote_bytes: bytes
) -> None:
    der = bytearray(_extension_der(_leaf(sgx_quote_bytes)[0]))
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(der)))
    try:
        parse_pck_extension_der(bytes(der[:cut]))
    except InvalidQuote as error:
        assert error.offset is None or 0 <= error.offset <= cut


# An independent little DER writer for hand-made extensions (not the code under test).
def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes((tag, len(body))) + body
    size = len(body).to_bytes(2, "big")
    return bytes((tag, 0x82)) + size + body


def _oid(suffix: str) -> bytes:
    # 1.2.840.113741.1.13.1 = 2a 86 48 86 f8 4d 01 0d 01, then small arcs
    return _tlv(
        0x06, bytes.fromhex("2a864886f84d010d01") + bytes(int(a) for a in suffix.split("."))
    )


def _entry(suffix: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(suffix) + value)


def _hand_made(
    *,
    fmspc: bytes = _tlv(0x04, bytes(6)),
    comp01: bytes = _tlv(0x02, b"\x05"),
    sgx_type: bytes | None = _tlv(0x0A, b"\x00"),
    extra: bytes = b"",
) -> bytes:
    tcb = _entry("2.1", comp01)
    tcb += b"".join(_entry(f"2.{i}", _tlv(0x02, b"\x00")) for i in range(2, 17))
    tcb += _entry("2.17", _tlv(0x02, b"\x0d")) + _entry("2.18", _tlv(0x04, bytes(16)))
    body = _entry("1", _tlv(0x04, bytes(16))) + _entry("2", _tlv(0x30, tcb))
    body += _entry("3", _tlv(0x04, bytes(2))) + _entry("4", fmspc)
    if sgx_type is not None:
        body += _entry("5", sgx_type)
    return _tlv(0x30, body + extra)


def test_hand_made_extension_parses() -> None:
    ext = parse_pck_extension_der(_hand_made())
    assert ext.tcb.comp_svns[0] == 5 and ext.tcb.pcesvn == 13
    assert encode_pck_extension(ext) == _hand_made()
    unknown = _entry("9", _tlv(0x05, b""))  # an OID Intel might add later is ignored
    assert parse_pck_extension_der(_hand_made(extra=unknown)) == ext


_CONFIG_BAD_BOOL = _entry("7", _tlv(0x30, _entry("7.1", _tlv(0x01, b"\x01"))))
_CONFIG_TWICE = _entry("7", _tlv(0x30, _entry("7.3", _tlv(0x01, b"\xff")) * 2))


def test_partial_configuration() -> None:
    config = _entry("7", _tlv(0x30, _entry("7.3", _tlv(0x01, b"\xff"))))
    ext = parse_pck_extension_der(_hand_made(extra=config))
    assert ext.configuration == PlatformConfiguration(smt_enabled=True)
    assert parse_pck_extension_der(encode_pck_extension(ext)) == ext


@pytest.mark.parametrize(
    ("der", "field", "match"),
    [
        (_hand_made(fmspc=_tlv(0x04, bytes(5))), "pck_extension.fmspc", "5 bytes, expected 6"),
        (_hand_made(fmspc=_tlv(0x02, b"\x01")), "pck_extension.fmspc", "DER tag 0x02"),
        (_hand_made(sgx_type=None), "pck_extension.sgx_type", "required entry missing"),
        (_hand_made(extra=_entry("1", _tlv(0x04, bytes(16)))), "pck_extension.ppid", "duplicate"),
        (_hand_made(comp01=_tlv(0x02, b"\x01\x00")), "pck_extension.tcb.comp01", "value 256"),
        (_hand_made(comp01=_tlv(0x02, b"\xff")), "pck_extension.tcb.comp01", "value -1"),
        (_hand_made(comp01=_tlv(0x02, b"\x00\x05")), "pck_extension.tcb.comp01", "non-minimal"),
        (_hand_made(comp01=_tlv(0x02, b"")), "pck_extension.tcb.comp01", "empty INTEGER"),
        (
            _hand_made(extra=_CONFIG_BAD_BOOL),
            "pck_extension.configuration.dynamic_platform",
            "00 or ff",
        ),
        (_hand_made(extra=_CONFIG_TWICE), "pck_extension.configuration.smt_enabled", "duplicate"),
        (_hand_made() + b"\x00", "pck_extension", "1 bytes after"),
        (b"\x30\x81\x05" + bytes(5), "pck_extension", "non-minimal DER length"),
        (b"\x30\x80\x00\x00", "pck_extension", "length form 0x80"),
        (b"\x1f\x01\x00", "pck_extension", "multi-byte DER tag"),
        (b"\x30", "pck_extension", "truncated"),
        (_tlv(0x30, _tlv(0x30, _oid("1"))), "pck_extension", "1 elements"),
    ],
)
def test_malformed_extension_names_the_field(der: bytes, field: str, match: str) -> None:
    with pytest.raises(InvalidQuote, match=match) as info:
        parse_pck_extension_der(der)
    assert info.value.field == field
    assert info.value.offset is not None and 0 <= info.value.offset < len(der)
