"""Property tests for the quote codec: only InvalidQuote on bad input, lossless build/parse."""

from __future__ import annotations

import base64

import dcap_qvl
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.errors import InvalidQuote
from confnode.sgx import (
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
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


def _parse_or_invalid(data: bytes) -> Quote | None:
    """The contract under test: a Quote that reproduces the input, or InvalidQuote."""
    try:
        quote = parse_quote(data)
    except InvalidQuote as error:
        assert error.field, f"error without a field: {error}"
        return None
    assert quote.to_bytes() == data
    return quote


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    _parse_or_invalid(data)


_HEADERS = st.sampled_from(
    [
        bytes.fromhex("03000200") + bytes(4),
        bytes.fromhex("04000200") + (0x81).to_bytes(4, "little"),
        bytes.fromhex("04000200") + bytes(4),
        bytes.fromhex("05000200") + (0x81).to_bytes(4, "little"),
        bytes.fromhex("05000200") + bytes(4),
    ]
)


@settings(max_examples=300, deadline=None)
@given(prefix=_HEADERS, rest=st.binary(max_size=1600))
def test_valid_header_then_arbitrary_bytes(prefix: bytes, rest: bytes) -> None:
    _parse_or_invalid(prefix + rest)


# Offsets of length and type fields in v3/v4/v5 quotes, where mutations reach deep code paths.
_HOT = [0, 2, 4, 48, 50, 432, 632, 636, 686, 764, 766, 1012, 1046, 1048, 1218, 1252, 1254]


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_mutated_real_quotes(data: st.DataObject, real_quotes: tuple[bytes, ...]) -> None:
    quote = bytearray(data.draw(st.sampled_from(real_quotes)))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "set", "hot", "cut", "insert", "delete"]))
        if not quote:
            break
        at = data.draw(st.integers(0, len(quote) - 1))
        if op == "flip":
            quote[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            quote[at] = data.draw(st.integers(0, 255))
        elif op == "hot":
            hot = data.draw(st.sampled_from(_HOT)) + data.draw(st.integers(0, 3))
            if hot < len(quote):
                quote[hot] = data.draw(st.sampled_from([0, 1, 2, 3, 5, 6, 0x7F, 0x80, 0xFF]))
        elif op == "cut":
            del quote[at:]
        elif op == "insert":
            quote[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del quote[at : at + data.draw(st.integers(1, 8))]
    ours = _parse_or_invalid(bytes(quote))
    if ours is not None:
        # Never looser than the independent parser: what we accept, dcap-qvl reads the same way.
        # (We are stricter: PEM text, att_key_type, exact consumption, certification types.)
        theirs = dcap_qvl.parse_quote(bytes(quote))
        assert theirs.header.version == ours.version
        assert theirs.header.tee_type == ours.header.tee_type
        assert theirs.report.report_data == ours.body.report_data


# ------------------------------------------------------------------------------ build → parse


def _b(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


_enclave_bodies = st.builds(EnclaveReportBody.parse, _b(384))
_td_bodies = st.builds(TdReportBody.parse, _b(584)) | st.builds(TdReportBody.parse, _b(648))


@st.composite
def _pem_chains(draw: st.DrawFn) -> bytes:
    blocks = []
    for der in draw(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3)):
        text = base64.encodebytes(der)
        blocks.append(b"-----BEGIN CERTIFICATE-----\n" + text + b"-----END CERTIFICATE-----\n")
    return b"".join(blocks) + b"\x00" * draw(st.integers(0, 2))


_certifications = (
    st.builds(CertificationData, st.just(5), _pem_chains())
    | st.builds(CertificationData, st.just(3), _b(404))
    | st.builds(CertificationData, st.sampled_from([1, 2, 4]), st.binary(max_size=300))
)
_auth = st.binary(max_size=100)


def _headers(version: int, tee: int) -> st.SearchStrategy[QuoteHeader]:
    return st.builds(
        QuoteHeader,
        version=st.just(version),
        tee_type=st.just(tee),
        qe_svn=st.integers(0, 0xFFFF),
        pce_svn=st.integers(0, 0xFFFF),
        vendor_id=_b(16),
        user_data=_b(20),
    )


_v3_sig = st.builds(EcdsaSigData, _b(64), _b(64), _enclave_bodies, _b(64), _auth, _certifications)
_v4_sig = st.builds(
    EcdsaSigDataV4,
    _b(64),
    _b(64),
    st.builds(QeReportCertificationData, _enclave_bodies, _b(64), _auth, _certifications),
)


@st.composite
def quotes(draw: st.DrawFn) -> Quote:
    version = draw(st.sampled_from([3, 4, 5]))
    tee = TEE_TYPE_SGX if version == 3 else draw(st.sampled_from([TEE_TYPE_SGX, TEE_TYPE_TDX]))
    header = draw(_headers(version, tee))
    if tee == TEE_TYPE_SGX:
        body: EnclaveReportBody | TdReportBody = draw(_enclave_bodies)
    elif version == 4:
        body = draw(st.builds(TdReportBody.parse, _b(584)))
    else:
        body = draw(_td_bodies)
    sig: EcdsaSigData | EcdsaSigDataV4 = draw(_v3_sig) if version == 3 else draw(_v4_sig)
    return Quote(header, body, sig, trailing=draw(st.binary(max_size=80)))


@settings(max_examples=200, deadline=None)
@given(quote=quotes())
def test_build_to_bytes_parse_round_trip(quote: Quote) -> None:
    raw = quote.to_bytes()
    assert quote.raw == raw
    parsed = parse_quote(raw)
    assert parsed == quote
    assert parsed.to_bytes() == raw
    assert parsed.signed_region == quote_signed_region(quote.header, quote.body)
    assert raw.startswith(parsed.signed_region)
    sig_len = int.from_bytes(raw[len(parsed.signed_region) :][:4], "little")
    assert len(raw) == len(parsed.signed_region) + 4 + sig_len + len(quote.trailing)
    # Built quotes are readable by the independent parser too (the simulator relies on this).
    theirs = dcap_qvl.parse_quote(raw)
    h = quote.header
    assert (theirs.header.version, theirs.header.tee_type) == (h.version, h.tee_type)
    assert (theirs.header.qe_svn, theirs.header.pce_svn) == (h.qe_svn, h.pce_svn)
    assert theirs.header.user_data == h.user_data
    assert theirs.report.report_data == quote.body.report_data
