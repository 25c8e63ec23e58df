"""AESM request rules (node-and-aesm.md §1.10/§1.12) on the handler alone, without sockets."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from qh_independent import DEFAULT_KEY_ID

from confnode._proto.aesm import messages_pb2 as pb
from confnode.errors import InvalidInput
from confnode.quotehelper import AesmHandler, BackendError, SimBackend, parse_request
from confnode.sgx import DEFAULT_ECDSA_P256_ATT_KEY_ID
from confnode.sim import SimPlatform


@pytest.fixture(scope="module")
def handler(platform: SimPlatform) -> AesmHandler:
    return AesmHandler(SimBackend(platform.quoting_enclave))


def _run(handler: AesmHandler, request: pb.Request) -> tuple[int, Any]:
    parsed = parse_request(request.SerializePartialToString())
    assert parsed is not None
    reply = handler.execute(parsed)
    response = pb.Response()
    response.ParseFromString(reply.body)
    (field, sub), *rest = response.ListFields()
    assert not rest and field.number == parsed.number
    assert sub.HasField("errorCode") and sub.errorCode == reply.code
    return reply.code, sub


def _quote_req(
    report: bytes,
    buf_size: int = 8192,
    key: bytes | None = DEFAULT_KEY_ID,
    info: bytes | None = None,
) -> pb.Request:
    req = pb.Request()
    sub = req.getQuoteExReq
    sub.report = report
    if key is not None:
        sub.att_key_id = key
    if info is not None:
        sub.qe_report_info = info
    sub.buf_size = buf_size
    return req


def test_default_key_id_matches_reference_bytes() -> None:
    assert DEFAULT_ECDSA_P256_ATT_KEY_ID == DEFAULT_KEY_ID


def test_key_id_rules(handler: AesmHandler) -> None:
    def init(key: bytes | None) -> int:
        req = pb.Request()
        if key is not None:
            req.initQuoteExReq.att_key_id = key
        req.initQuoteExReq.b_pub_key_id = False
        return _run(handler, req)[0]

    assert init(None) == 3
    assert init(DEFAULT_KEY_ID[:255]) == 3
    assert init(DEFAULT_KEY_ID) == 0
    assert init(DEFAULT_KEY_ID + b"extra") == 0  # longer is fine: AESM reads 256
    tail = bytearray(DEFAULT_KEY_ID)
    tail[158:256] = bytes([0xAB]) * 98
    assert init(bytes(tail)) == 0  # spid/att_key_type/reserved are not compared
    for at in (0, 4, 6, 53, 54, 100, 157):
        changed = bytearray(DEFAULT_KEY_ID)
        changed[at] ^= 1
        assert init(bytes(changed)) == 38, at


@pytest.mark.parametrize(
    ("b_pub_key_id", "buf_size", "code", "key_len"),
    [
        (False, None, 0, None),
        (False, 2**64 - 1, 0, None),
        (False, 3, 0, None),
        (True, None, 0, None),
        (True, 0, 0, None),
        (True, 32, 0, 32),
        (True, 4096, 0, 32),
        (True, 2**64 - 1, 0, 32),
        (True, 16, 3, None),
    ],
)
def test_init_quote_ex_pub_key_id_rules(
    handler: AesmHandler,
    platform: SimPlatform,
    b_pub_key_id: bool,
    buf_size: int | None,
    code: int,
    key_len: int | None,
) -> None:
    req = pb.Request()
    req.initQuoteExReq.att_key_id = DEFAULT_KEY_ID
    req.initQuoteExReq.b_pub_key_id = b_pub_key_id
    if buf_size is not None:
        req.initQuoteExReq.buf_size = buf_size
    got, sub = _run(handler, req)
    assert got == code
    if code:
        assert not sub.HasField("target_info")
        return
    assert sub.target_info == platform.quoting_enclave.target_info()
    assert sub.HasField("pub_key_id_size") and sub.pub_key_id_size == 32
    if key_len is None:
        assert not sub.HasField("pub_key_id")
    else:
        assert sub.pub_key_id == platform.quoting_enclave.pub_key_id


def test_get_quote_ex_length_rules(handler: AesmHandler, platform: SimPlatform) -> None:
    qe = platform.quoting_enclave
    report = platform.enclave().report(qe.target_info(), b"r")
    assert _run(handler, _quote_req(report[:431]))[0] == 3
    assert _run(handler, _quote_req(report + b"\0"))[0] == 3
    assert _run(handler, _quote_req(report, key=None))[0] == 3
    assert _run(handler, _quote_req(report, info=bytes(959)))[0] == 3
    assert _run(handler, _quote_req(report, buf_size=qe.quote_size() - 1))[0] == 3
    code, sub = _run(handler, _quote_req(report, buf_size=qe.quote_size()))
    assert code == 0 and len(sub.quote) == qe.quote_size()
    # A present but empty qe_report_info counts as absent (AESM goes by its size).
    code, sub = _run(handler, _quote_req(report, info=b""))
    assert code == 0 and not sub.HasField("qe_report_info")


def test_quote_padding(handler: AesmHandler, platform: SimPlatform) -> None:
    qe = platform.quoting_enclave
    report = platform.enclave().report(qe.target_info(), b"pad")
    code, sub = _run(handler, _quote_req(report, buf_size=8192))
    assert code == 0 and len(sub.quote) == 8192
    real = 436 + struct.unpack_from("<I", sub.quote, 432)[0]
    assert sub.quote[real:] == bytes(8192 - real)
    # Beyond the padding cap the quote goes out unpadded (still <= buf_size).
    code, sub = _run(handler, _quote_req(report, buf_size=2**32 - 1))
    assert code == 0 and len(sub.quote) == real


def test_qe_report_info_echo(handler: AesmHandler, platform: SimPlatform) -> None:
    qe = platform.quoting_enclave
    app = platform.enclave(mr_enclave=bytes([9]) * 32)
    nonce = b"0123456789abcdef"
    info = nonce + app.target_info() + bytes(432)
    code, sub = _run(handler, _quote_req(app.report(qe.target_info()), buf_size=8192, info=info))
    assert code == 0
    quote = sub.quote[: 436 + struct.unpack_from("<I", sub.quote, 432)[0]]
    report = app.verify_report(sub.qe_report_info[528:])
    assert report.body.report_data == hashlib.sha256(nonce + quote).digest() + bytes(32)
    assert report.body.mr_enclave == qe.identity.mr_enclave


def test_required_field_missing_is_unexpected_error(handler: AesmHandler) -> None:
    req = pb.Request()
    req.getQuoteExReq.buf_size = 100  # report missing
    assert _run(handler, req)[0] == 1
    req = pb.Request()
    req.initQuoteExReq.att_key_id = DEFAULT_KEY_ID  # b_pub_key_id missing
    assert _run(handler, req)[0] == 1
    req = pb.Request()
    req.getSupportedAttKeyIDsReq.timeout = 5  # buf_size missing
    assert _run(handler, req)[0] == 1
    req = pb.Request()
    req.getQuoteReq.buf_size = 5  # legacy, incomplete: the IsInitialized check comes first
    assert _run(handler, req)[0] == 1


_LEGACY: dict[str, dict[str, object]] = {
    "initQuoteReq": {"timeout": 1},
    "getQuoteReq": {"report": b"r", "quote_type": 0, "spid": b"s", "buf_size": 10},
    "getLicTokenReq": {"mr_enclave": b"e", "mr_signer": b"s", "se_attributes": b"a"},
    "reportErrReq": {"platform_info": b"p", "attestation_error_code": 1, "update_info_size": 0},
    "getWhiteListSizeReq": {},
    "getWhiteListReq": {"white_list_size": 10},
    "sgxGetExtendedEpidGroupIdReq": {},
    "sgxSwitchExtendedEpidGroupReq": {"x_group_id": 0},
    "sgxRegisterReq": {"buf": b"b", "data_type": 0},
    "checkUpdateStatusReq": {"update_info_size": 0, "config": 0},
}


@pytest.mark.parametrize("field", sorted(_LEGACY))
def test_legacy_requests_get_service_unavailable(handler: AesmHandler, field: str) -> None:
    req = pb.Request()
    sub = getattr(req, field)
    sub.SetInParent()
    for name, value in _LEGACY[field].items():
        setattr(sub, name, value)
    assert _run(handler, req)[0] == 30


def test_unknown_or_empty_body_gets_no_reply() -> None:
    assert parse_request(b"") is None
    assert parse_request(bytes.fromhex("a20100")) is None  # field 20 is response-only
    assert parse_request(bytes.fromhex("2a00")) is None  # field 5: removed PSE request
    assert parse_request(b"\xff\xff") is None  # not protobuf


def test_several_sub_messages_served_by_lowest_number(handler: AesmHandler) -> None:
    req = pb.Request()
    req.getSupportedAttKeyIDsReq.buf_size = 256
    req.getSupportedAttKeyIDNumReq.timeout = 1
    parsed = parse_request(req.SerializeToString())
    assert parsed is not None and parsed.number == 21


def test_select_att_key_id_rules(handler: AesmHandler) -> None:
    def select(listing: bytes | None) -> tuple[int, Any]:
        req = pb.Request()
        req.selectAttKeyIDReq.SetInParent()
        if listing is not None:
            req.selectAttKeyIDReq.att_key_id_list = listing
        return _run(handler, req)

    code, sub = select(None)
    assert code == 0 and sub.selected_att_key_id == DEFAULT_KEY_ID
    header = struct.pack("<HHI", 0, 0, 1)
    assert select(header + DEFAULT_KEY_ID)[0] == 0
    assert select(header + DEFAULT_KEY_ID[:255])[0] == 3  # shorter than 264
    assert select(header + DEFAULT_KEY_ID + b"\0")[0] == 3  # not 8 + n*256
    assert select(struct.pack("<HHI", 1, 0, 1) + DEFAULT_KEY_ID)[0] == 3
    assert select(struct.pack("<HHI", 0, 1, 1) + DEFAULT_KEY_ID)[0] == 3
    assert select(struct.pack("<HHI", 0, 0, 11) + DEFAULT_KEY_ID * 11)[0] == 3
    assert select(struct.pack("<HHI", 0, 0, 10) + DEFAULT_KEY_ID * 10)[0] == 0
    epid = bytearray(DEFAULT_KEY_ID)
    epid[154:158] = (0).to_bytes(4, "little")
    assert select(header + bytes(epid))[0] == 38


def test_supported_att_key_ids_buf_size(handler: AesmHandler) -> None:
    for buf_size, code in ((256, 0), (0, 3), (255, 3), (512, 3)):
        req = pb.Request()
        req.getSupportedAttKeyIDsReq.buf_size = buf_size
        got, sub = _run(handler, req)
        assert got == code
        assert (sub.att_key_ids == DEFAULT_KEY_ID) if code == 0 else not sub.HasField("att_key_ids")


def test_get_quote_size_error_still_sets_quote_size(handler: AesmHandler) -> None:
    req = pb.Request()
    req.getQuoteSizeExReq.att_key_id = bytes(256)
    code, sub = _run(handler, req)
    assert code == 38 and sub.HasField("quote_size") and sub.quote_size == 0


class _Failing(SimBackend):
    def __init__(self, platform: SimPlatform, error: Exception) -> None:
        super().__init__(platform.quoting_enclave)
        self.error = error

    def target_info(self) -> bytes:
        raise self.error


class _NoKeyId(SimBackend):
    def pub_key_id(self) -> bytes | None:  # type: ignore[override]
        return None


def test_backend_errors_become_codes(platform: SimPlatform) -> None:
    req = pb.Request()
    req.initQuoteExReq.att_key_id = DEFAULT_KEY_ID
    req.initQuoteExReq.b_pub_key_id = False
    failing = AesmHandler(_Failing(platform, BackendError("no PCK cert", aesm_code=44)))
    assert _run(failing, req)[0] == 44
    crashing = AesmHandler(_Failing(platform, KeyError("bug")))
    assert _run(crashing, req)[0] == 1


def test_unknown_pub_key_id_is_omitted(platform: SimPlatform) -> None:
    req = pb.Request()
    req.initQuoteExReq.att_key_id = DEFAULT_KEY_ID
    req.initQuoteExReq.b_pub_key_id = True
    req.initQuoteExReq.buf_size = 32
    code, sub = _run(AesmHandler(_NoKeyId(platform.quoting_enclave)), req)
    assert code == 0 and sub.pub_key_id_size == 32 and not sub.HasField("pub_key_id")


def test_handler_key_id_configuration(platform: SimPlatform) -> None:
    backend = SimBackend(platform.quoting_enclave)
    with pytest.raises(InvalidInput, match="256-byte"):
        AesmHandler(backend, att_key_ids=[bytes(10)])
    with pytest.raises(InvalidInput):
        AesmHandler(backend, att_key_ids=[])
    debug_signer = bytearray(DEFAULT_KEY_ID)
    debug_signer[6:38] = bytes.fromhex(
        "e4bd9fc2129835ba1dcca1939d57d08e88561b34740d59405972d4ba25a7e5f7"
    )
    both = AesmHandler(backend, att_key_ids=[DEFAULT_KEY_ID, bytes(debug_signer)])
    req = pb.Request()
    req.getSupportedAttKeyIDNumReq.SetInParent()
    assert _run(both, req)[1].att_key_id_num == 2
    req = pb.Request()
    req.getQuoteSizeExReq.att_key_id = bytes(debug_signer)
    assert _run(both, req)[0] == 0
    assert _run(AesmHandler(backend), req)[0] == 38
