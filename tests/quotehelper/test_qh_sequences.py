"""Real clients' call sequences and the worked frames of node-and-aesm.md §1.11/§1.13.

Everything on the wire here is built and parsed by ``qh_independent`` (its own protoc run and
framing); the quotes that come back must satisfy dcap-qvl with the simulated root.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest
from qh_harness import RunningHelper
from qh_independent import DEFAULT_KEY_ID, AesmProto, call, frame, transact_raw

from confnode.sim import SimPlatform


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _real_length(quote: bytes) -> int:
    return 436 + struct.unpack_from("<I", quote, 432)[0]


def _verify_with_dcap_qvl(platform: SimPlatform, quote: bytes) -> str:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json())
    report = dcap_qvl.verify_with_root_ca(
        quote, collateral, platform.root_certificate(), int(time.time())
    )
    return str(report.status)


def _verify_with_confnode_cli(platform: SimPlatform, quote: bytes, tmp_path: Path) -> str:
    """``confnode quote verify`` on the quote, the platform's collateral and its root."""
    from click.testing import CliRunner

    from confnode.cli import main_group

    (tmp_path / "quote.bin").write_bytes(quote)
    (tmp_path / "collateral.json").write_text(platform.collateral_json())
    (tmp_path / "root.der").write_bytes(platform.root_certificate())
    result = CliRunner().invoke(
        main_group,
        [
            "quote", "verify", str(tmp_path / "quote.bin"),
            "--collateral", str(tmp_path / "collateral.json"),
            "--trust-root", str(tmp_path / "root.der"), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return str(json.loads(result.output)["status"])


def _init(
    aesm: AesmProto,
    path: Any,
    *,
    b_pub_key_id: bool,
    buf_size: int | None,
    key_id: bytes = DEFAULT_KEY_ID,
) -> Any:
    req = aesm.Request()
    req.initQuoteExReq.att_key_id = key_id
    req.initQuoteExReq.b_pub_key_id = b_pub_key_id
    if buf_size is not None:
        req.initQuoteExReq.buf_size = buf_size
    req.initQuoteExReq.timeout = 15000
    res = call(aesm, path, req)
    assert [f.name for f, _ in res.ListFields()] == ["initQuoteExRes"]
    return res.initQuoteExRes


def _get_quote(
    aesm: AesmProto,
    path: Any,
    report: bytes,
    buf_size: int,
    key_id: bytes = DEFAULT_KEY_ID,
    qe_report_info: bytes | None = None,
) -> Any:
    req = aesm.Request()
    sub = req.getQuoteExReq
    sub.report = report
    sub.att_key_id = key_id
    if qe_report_info is not None:
        sub.qe_report_info = qe_report_info
    sub.buf_size = buf_size
    sub.timeout = 15000
    res = call(aesm, path, req)
    assert [f.name for f, _ in res.ListFields()] == ["getQuoteExRes"]
    return res.getQuoteExRes


def _quote_size(aesm: AesmProto, path: Any, key_id: bytes = DEFAULT_KEY_ID) -> int:
    req = aesm.Request()
    req.getQuoteSizeExReq.att_key_id = key_id
    req.getQuoteSizeExReq.timeout = 15000
    res = call(aesm, path, req).getQuoteSizeExRes
    assert res.HasField("errorCode") and res.errorCode == 0
    return int(res.quote_size)


def _check_init_reply(res: Any, caller_buf_size: int, expect_key: bool) -> bytes:
    """libsgx_quote_ex's acceptance checks (§1.10) plus DCAP's pub_key_id_size == 32."""
    assert res.HasField("errorCode") and res.errorCode == 0
    assert len(res.target_info) == 512
    assert res.HasField("pub_key_id_size") and res.pub_key_id_size == 32
    assert res.HasField("pub_key_id") is expect_key
    if expect_key:
        assert len(res.pub_key_id) == res.pub_key_id_size <= caller_buf_size
    return bytes(res.target_info)


@pytest.mark.parametrize("uninitialised", [0, 1, 0x7FFF_FFFF, 2**63 + 12345, 2**64 - 1])
def test_dcap_out_of_proc_sequence(
    aesm: AesmProto,
    helper: RunningHelper,
    platform: SimPlatform,
    uninitialised: int,
    tmp_path: Path,
) -> None:
    path = helper.socket_path
    # 1: sgx_qe_get_target_info's first call passes an uninitialised size_t as buf_size.
    target_info = _check_init_reply(
        _init(aesm, path, b_pub_key_id=False, buf_size=uninitialised), uninitialised, False
    )
    # 2: the same call again, now asking for the 32-byte key id.
    second = _init(aesm, path, b_pub_key_id=True, buf_size=32)
    assert _check_init_reply(second, 32, True) == target_info
    assert bytes(second.pub_key_id) == platform.quoting_enclave.pub_key_id
    # 3, 4: size, then the quote with exactly that buffer and no qe_report_info.
    size = _quote_size(aesm, path)
    report = platform.enclave().report(target_info, b"dcap-sequence")
    res = _get_quote(aesm, path, report, size)
    assert res.errorCode == 0 and not res.HasField("qe_report_info")
    assert len(res.quote) <= size
    quote = bytes(res.quote)[: _real_length(res.quote)]
    assert quote[368 : 368 + 13] == b"dcap-sequence"  # report_data in the quote's report body
    assert _verify_with_dcap_qvl(platform, quote) == "UpToDate"
    if uninitialised == 0:
        assert _verify_with_confnode_cli(platform, quote, tmp_path) == "UpToDate"


def test_open_enclave_sequence(
    aesm: AesmProto, helper: RunningHelper, platform: SimPlatform, tmp_path: Path
) -> None:
    path = helper.socket_path
    req = aesm.Request()
    req.getSupportedAttKeyIDNumReq.timeout = 15000
    num = call(aesm, path, req).getSupportedAttKeyIDNumRes
    assert num.errorCode == 0 and num.att_key_id_num >= 1
    req = aesm.Request()
    req.getSupportedAttKeyIDsReq.buf_size = num.att_key_id_num * 256
    ids = call(aesm, path, req).getSupportedAttKeyIDsRes
    assert ids.errorCode == 0 and len(ids.att_key_ids) == num.att_key_id_num * 256
    entries = [bytes(ids.att_key_ids)[i : i + 256] for i in range(0, len(ids.att_key_ids), 256)]
    ecdsa = [e for e in entries if struct.unpack_from("<I", e, 154)[0] == 2]
    assert ecdsa, "OE needs an ECDSA (algorithm_id 2) entry"
    key_id = ecdsa[0]
    target_info = _check_init_reply(
        _init(aesm, path, b_pub_key_id=False, buf_size=None, key_id=key_id), 0, False
    )
    _check_init_reply(_init(aesm, path, b_pub_key_id=True, buf_size=32, key_id=key_id), 32, True)
    size = _quote_size(aesm, path, key_id)
    report = platform.enclave(isv_svn=3).report(target_info, b"open-enclave")
    res = _get_quote(aesm, path, report, size, key_id)
    assert res.errorCode == 0
    quote = bytes(res.quote)[: _real_length(res.quote)]
    assert _verify_with_dcap_qvl(platform, quote) == "UpToDate"
    assert _verify_with_confnode_cli(platform, quote, tmp_path) == "UpToDate"


def test_gramine_sequence(
    aesm: AesmProto, helper: RunningHelper, platform: SimPlatform, tmp_path: Path
) -> None:
    path = helper.socket_path
    res = _init(aesm, path, b_pub_key_id=True, buf_size=32)
    assert res.errorCode == 0 and len(res.target_info) == 512
    report = platform.enclave().report(bytes(res.target_info), b"gramine")
    # No GetQuoteSizeEx: Gramine always offers SGX_QUOTE_MAX_SIZE.
    got = _get_quote(aesm, path, report, 8192)
    assert got.errorCode == 0
    assert len(got.quote) <= 8192
    length = _real_length(got.quote)
    assert length <= 8192
    assert bytes(got.quote)[length:] == bytes(len(got.quote) - length), "padding must be zeros"
    quote = bytes(got.quote)[:length]
    assert _verify_with_dcap_qvl(platform, quote) == "UpToDate"
    assert _verify_with_confnode_cli(platform, quote, tmp_path) == "UpToDate"


def test_select_att_key_id_returns_callers_entry(aesm: AesmProto, helper: RunningHelper) -> None:
    foreign = bytearray(DEFAULT_KEY_ID)
    foreign[6] ^= 0xFF  # another MRSIGNER: not offered
    own_tail = bytearray(DEFAULT_KEY_ID)
    own_tail[200] = 0x5A  # reserved tail differs: still the same key (base matches)
    listing = struct.pack("<HHI", 0, 0, 2) + bytes(foreign) + bytes(own_tail)
    req = aesm.Request()
    req.selectAttKeyIDReq.att_key_id_list = listing
    res = call(aesm, helper.socket_path, req).selectAttKeyIDRes
    assert res.errorCode == 0
    assert bytes(res.selected_att_key_id) == bytes(own_tail)
    req = aesm.Request()
    req.selectAttKeyIDReq.att_key_id_list = struct.pack("<HHI", 0, 0, 1) + bytes(foreign)
    assert call(aesm, helper.socket_path, req).selectAttKeyIDRes.errorCode == 38


def test_qe_report_info_binds_nonce_and_quote(
    aesm: AesmProto, helper: RunningHelper, platform: SimPlatform
) -> None:
    path = helper.socket_path
    target_info = bytes(_init(aesm, path, b_pub_key_id=False, buf_size=None).target_info)
    app = platform.enclave()
    nonce = bytes(range(100, 116))
    info = nonce + app.target_info() + bytes(432)
    res = _get_quote(aesm, path, app.report(target_info, b"n"), 8192, qe_report_info=info)
    assert res.errorCode == 0 and len(res.qe_report_info) == 960
    quote = bytes(res.quote)[: _real_length(res.quote)]
    echoed = bytes(res.qe_report_info)
    assert echoed[:528] == info[:528]
    qe_report = echoed[528:]
    assert qe_report[320:384] == hashlib.sha256(nonce + quote).digest() + bytes(32)
    app.verify_report(qe_report)  # MACed for the app enclave by the QE on this platform


def test_report_for_another_enclave_gets_invalid_report(
    aesm: AesmProto, helper: RunningHelper, platform: SimPlatform
) -> None:
    wrong_target = platform.enclave(mr_enclave=bytes([7]) * 32).target_info()
    report = platform.enclave().report(wrong_target, b"x")
    res = _get_quote(aesm, helper.socket_path, report, 8192)
    assert res.errorCode == 47 and not res.HasField("quote")


# --- §1.13 worked frames, byte for byte -------------------------------------------------------


def test_worked_request_frames_match_reference(aesm: AesmProto) -> None:
    key = DEFAULT_KEY_ID
    req = aesm.Request()
    req.getQuoteSizeExReq.att_key_id = key
    req.getQuoteSizeExReq.timeout = 15000
    assert frame(req.SerializeToString()) == (
        bytes.fromhex("0a010000 82018602 0a8002") + key + bytes.fromhex("489875")
    )
    req = aesm.Request()
    sub = req.initQuoteExReq
    sub.att_key_id, sub.b_pub_key_id, sub.buf_size, sub.timeout = key, True, 32, 15000
    assert frame(req.SerializeToString()) == (
        bytes.fromhex("0d010000 7a8a02 0a8002") + key + bytes.fromhex("1801 2020 489875")
    )
    req = aesm.Request()
    g = req.getQuoteExReq
    g.report, g.att_key_id, g.buf_size, g.timeout = bytes(432), key, 5000, 15000
    assert frame(req.SerializeToString()) == (
        bytes.fromhex("c0020000 8a01bc05 0ab003")
        + bytes(432)
        + bytes.fromhex("128002")
        + key
        + bytes.fromhex("208827 489875")
    )


def test_worked_reply_frames_from_daemon(
    aesm: AesmProto, helper: RunningHelper, platform: SimPlatform
) -> None:
    path = helper.socket_path
    qe = platform.quoting_enclave
    key = DEFAULT_KEY_ID

    # GetSupportedAttKeyIDNum request / reply.
    assert transact_raw(path, bytes.fromhex("06000000 aa0103 489875")) == bytes.fromhex(
        "07000000 aa0104 0800 1001"
    )
    # GetSupportedAttKeyIDs request (buf_size 256) / reply.
    assert transact_raw(path, bytes.fromhex("09000000 b20106 088002 489875")) == (
        bytes.fromhex("09010000 b2018502 0800 128002") + key
    )
    # InitQuoteEx with pub_key_id (second DCAP call).
    init_true = bytes.fromhex("0d010000 7a8a02 0a8002") + key + bytes.fromhex("1801 2020 489875")
    assert transact_raw(path, init_true) == (
        bytes.fromhex("2c020000 7aa904 0800 128004")
        + qe.target_info()
        + bytes.fromhex("1820 2220")
        + qe.pub_key_id
    )
    # InitQuoteEx as Gramine builds it (no timeout) gets the same reply.
    gramine = bytes.fromhex("0a010000 7a8702 0a8002") + key + bytes.fromhex("1801 2020")
    assert transact_raw(path, gramine) == transact_raw(path, init_true)
    # InitQuoteEx without pub_key_id.
    init_false = bytes.fromhex("0a010000 7a8702 0a8002") + key + bytes.fromhex("1800 2020")
    assert transact_raw(path, init_false) == (
        bytes.fromhex("0a020000 7a8704 0800 128004") + qe.target_info() + bytes.fromhex("1820")
    )
    # GetQuoteSizeEx success: errorCode 0 on the wire, then quote_size.
    size_req = bytes.fromhex("0a010000 82018602 0a8002") + key + bytes.fromhex("489875")
    inner = bytes.fromhex("0800 10") + _varint(qe.quote_size())
    assert transact_raw(path, size_req) == (
        struct.pack("<I", 3 + len(inner)) + bytes.fromhex("8201") + bytes([len(inner)]) + inner
    )
    # GetQuoteEx error 38: a key id whose base is not offered.
    other_key = bytes([1]) + key[1:]
    bad = bytes.fromhex("c0020000 8a01bc05 0ab003") + bytes(432) + bytes.fromhex("128002")
    bad += other_key + bytes.fromhex("208827 489875")
    assert transact_raw(path, bad) == bytes.fromhex("05000000 8a0102 0826")
    # InitQuoteEx error 1: b_pub_key_id (required) missing.
    missing = bytes.fromhex("08010000 7a8502 0a8002") + key + bytes.fromhex("2020")
    assert len(missing) - 4 == 0x108
    assert transact_raw(path, missing) == bytes.fromhex("04000000 7a02 0801")
