"""CRL, PEM-chain and signature decoders: every accepted encoding, precise errors, fuzzing."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode import InvalidCollateral
from confnode.collateral import (
    clear_parse_caches,
    parse_crl,
    parse_pem_chain,
    parse_signature_der,
    parse_signature_hex,
    signature_to_der,
)


@pytest.fixture(scope="module")
def root_crl_der(fortanix_dir: Path) -> bytes:
    return (fortanix_dir / "IntelSGXRootCA.der").read_bytes()


@pytest.fixture(scope="module")
def chain_pem(oasis_dir: Path) -> str:
    return (oasis_dir / "tcb_info_v3_fmspc_00606A000000_certs.pem").read_text()


# ------------------------------------------------------------------------------------- CRLs


def test_root_ca_crl_same_in_all_three_encodings(fortanix_dir: Path, root_crl_der: bytes) -> None:
    pem = (fortanix_dir / "IntelSGXRootCA.crl").read_text()
    from_der = parse_crl(root_crl_der)
    from_pem = parse_crl(pem)
    from_hex = parse_crl(root_crl_der.hex())
    from_hex_upper_bytes = parse_crl(root_crl_der.hex().upper().encode() + b"\n")
    assert from_der == from_pem == from_hex == from_hex_upper_bytes
    assert from_der.public_bytes(Encoding.DER) == root_crl_der
    assert "Intel SGX Root CA" in from_der.issuer.rfc4514_string()


def test_dcap_qvl_hex_crls_decode_to_the_same_der(dcap_qvl_dir: Path) -> None:
    bundle = json.loads((dcap_qvl_dir / "sgx_quote_collateral.json").read_text())
    for key in ("root_ca_crl", "pck_crl"):
        der = bytes.fromhex(bundle[key])
        crl = parse_crl(bundle[key])
        assert crl.public_bytes(Encoding.DER) == der
        assert parse_crl(der) == crl == parse_crl(crl.public_bytes(Encoding.PEM))


def test_processor_crl_pem_from_fortanix_wrapper(fortanix_dir: Path) -> None:
    wrapper = json.loads((fortanix_dir / "processor.crl").read_text())
    crl = parse_crl(wrapper["crl"].replace("\n", "\r\n") + "\r\n")
    assert "PCK Processor CA" in crl.issuer.rfc4514_string()
    assert crl.last_update_utc.isoformat() == "2020-05-18T17:49:21+00:00"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "expected DER"),
        ("", "expected DER"),
        ("hello", "expected DER"),
        ("3082zz", "expected DER"),
        ("308", "odd number of digits"),
        ("3082", "hex DER is not a valid X.509 CRL"),
        (b"\x30\x03\x02\x01\x01", "DER is not a valid X.509 CRL"),
        ("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----", "expected PEM label"),
        ("-----BEGIN X509 CRL-----\n!!!\n-----END X509 CRL-----", "not valid base64"),
        ("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----", "PEM is not a valid X.509 CRL"),
        ("-----BEGIN X509 CRL-----\nMAA=\n", "unexpected text"),
        ("crl: 3082", "expected DER"),
        ("30é", "non-ASCII"),
    ],
)
def test_parse_crl_rejects_with_precise_message(data: bytes | str, message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        parse_crl(data, what="PCK CRL")


def test_parse_crl_names_the_item(root_crl_der: bytes) -> None:
    with pytest.raises(InvalidCollateral, match=r"^Root CA CRL: DER"):
        parse_crl(root_crl_der + b"\x00", what="Root CA CRL")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_crl_on_arbitrary_input_only_raises_invalid_collateral(data: bytes | str) -> None:
    try:
        crl = parse_crl(data)
    except InvalidCollateral:
        return
    assert isinstance(crl, x509.CertificateRevocationList)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_real_crl_parses_or_is_rejected_cleanly(
    root_crl_der: bytes, data: st.DataObject
) -> None:
    der = bytearray(root_crl_der)
    if data.draw(st.booleans()):
        bit = data.draw(st.integers(0, 8 * len(der) - 1))
        der[bit // 8] ^= 1 << (bit % 8)
    else:
        del der[data.draw(st.integers(0, len(der) - 1)) :]
    encoding = data.draw(st.sampled_from(["der", "hex", "pem"]))
    blob: bytes | str = bytes(der)
    if encoding == "hex":
        blob = bytes(der).hex()
    elif encoding == "pem":
        blob = (
            "-----BEGIN X509 CRL-----\n"
            + base64.b64encode(der).decode()
            + "\n-----END X509 CRL-----\n"
        )
    try:
        parse_crl(blob)
    except InvalidCollateral:
        pass


# ----------------------------------------------------------------------------------- chains


def test_pem_chain_plain_percent_encoded_and_nul_terminated(chain_pem: str) -> None:
    plain = parse_pem_chain(chain_pem)
    assert len(plain) == 2
    assert "SGX TCB Signing" in plain[0].subject.rfc4514_string()
    assert "SGX Root CA" in plain[1].subject.rfc4514_string()
    header = urllib.parse.quote(chain_pem, safe="")
    assert "-----BEGIN" in header and "\n" not in header
    assert parse_pem_chain(header) == plain
    assert parse_pem_chain(urllib.parse.quote(chain_pem, safe="-").encode()) == plain
    assert parse_pem_chain(chain_pem.encode() + b"\x00\x00") == plain
    assert parse_pem_chain(header + "%00") == plain


def test_pem_chain_from_dcap_qvl_bundle(dcap_qvl_dir: Path) -> None:
    bundle = json.loads((dcap_qvl_dir / "tdx_quote_collateral.json").read_text())
    chain = parse_pem_chain(bundle["pck_crl_issuer_chain"])
    assert [c.subject.rfc4514_string().split(",")[-1] for c in chain] == [
        "CN=Intel SGX PCK Platform CA",
        "CN=Intel SGX Root CA",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "found none"),
        ("   \n", "found none"),
        ("not a certificate", "unexpected text after PEM block 0"),
        ("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----", "block 1 is 'X509 CRL'"),
        (
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----",
            "certificate 1: not a valid",
        ),
        ("-----BEGIN CERTIFICATE-----\nM A%\n-----END CERTIFICATE-----", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nMAA=\n-----END X509 CRL-----", "ends 'X509 CRL'"),
        (b"\xff\xfe", "non-UTF-8 byte at offset 0"),
        ("%FF%FE", "percent-encoding decodes to invalid UTF-8"),
    ],
)
def test_parse_pem_chain_rejects_with_precise_message(text: str | bytes, message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        parse_pem_chain(text, what="TCB Info issuer chain")


def test_parse_pem_chain_rejects_stray_text_between_certificates(chain_pem: str) -> None:
    first_end = chain_pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    broken = chain_pem[:first_end] + "\ngarbage\n" + chain_pem[first_end:]
    with pytest.raises(InvalidCollateral, match="unexpected text before PEM block 2"):
        parse_pem_chain(broken)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_pem_chain_on_arbitrary_input_only_raises_invalid_collateral(
    data: bytes | str,
) -> None:
    try:
        parse_pem_chain(data)
    except InvalidCollateral:
        pass


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_mutated_real_chain_parses_or_is_rejected_cleanly(
    chain_pem: str, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(chain_pem) - 1))
    replacement = data.draw(st.text(max_size=3))
    try:
        parse_pem_chain(chain_pem[:index] + replacement + chain_pem[index + 1 :])
    except InvalidCollateral:
        pass


# ------------------------------------------------------------------------------- signatures


def test_fortanix_der_signature_converts_to_raw_and_back(fortanix_dir: Path) -> None:
    wrapper = json.loads((fortanix_dir / "qe3_identity.id").read_text())
    der = bytes(wrapper["signature"])
    raw = parse_signature_der(wrapper["signature"])
    r, s = decode_dss_signature(der)
    assert raw == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert signature_to_der(raw) == der
    assert parse_signature_der(der) == raw


def test_hex_signature(dcap_qvl_dir: Path) -> None:
    text = json.loads((dcap_qvl_dir / "sgx_quote_collateral.json").read_text())[
        "tcb_info_signature"
    ]
    assert parse_signature_hex(text) == bytes.fromhex(text)
    assert parse_signature_hex(text.upper().encode() + b"\n") == bytes.fromhex(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "found 0 characters"), ("ab" * 63, "found 126"), ("zz" * 64, "expected 128 hex digits")],
)
def test_parse_signature_hex_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        parse_signature_hex(text)


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"", "not a DER ECDSA signature"),
        (encode_dss_signature(1, 1) + b"\x00", "not a DER ECDSA signature"),
        (encode_dss_signature(0, 1), "positive 256-bit"),
        (encode_dss_signature(1 << 256, 1), "257-bit r"),
        ([256, 1], "list of byte values"),
    ],
)
def test_parse_signature_der_rejects(der: bytes | list[int], message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        parse_signature_der(der)


def test_signature_to_der_requires_64_bytes() -> None:
    with pytest.raises(InvalidCollateral, match="found 63"):
        signature_to_der(bytes(63))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, (1 << 256) - 1), st.integers(1, (1 << 256) - 1))
def test_signature_der_raw_round_trip(r: int, s: int) -> None:
    raw = parse_signature_der(encode_dss_signature(r, s))
    assert raw == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert parse_signature_der(signature_to_der(raw)) == raw
    assert parse_signature_hex(raw.hex()) == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_signature_decoders_on_arbitrary_input_only_raise_invalid_collateral(data: bytes) -> None:
    for decode in (parse_signature_der, parse_signature_hex):
        try:
            assert len(decode(data)) == 64
        except InvalidCollateral:
            pass


def test_certificate_with_negative_serial_is_malformed(chain_pem: str) -> None:
    root = parse_pem_chain(chain_pem)[1]
    der = bytearray(root.public_bytes(Encoding.DER))
    serial = root.serial_number.to_bytes(20, "big")
    at = der.index(b"\x02\x14" + serial) + 2
    der[at] |= 0x80
    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        + base64.b64encode(der).decode()
        + "\n-----END CERTIFICATE-----"
    )
    with pytest.raises(InvalidCollateral, match=r"certificate 1: not a valid X\.509 certificate"):
        parse_pem_chain(pem)


def test_parsed_certificates_are_shared_until_caches_are_cleared(chain_pem: str) -> None:
    first = parse_pem_chain(chain_pem)
    again = parse_pem_chain(urllib.parse.quote(chain_pem))
    assert all(a is b for a, b in zip(first, again, strict=True))
    clear_parse_caches()
    fresh = parse_pem_chain(chain_pem)
    assert fresh == first
    assert all(a is not b for a, b in zip(first, fresh, strict=True))
